//! Free identifiers for dynamic services (`dyn.select_free_id` of the dynamic data services of
//! Nokia SR OS: `service-id` within the configured service range, `ip-filter-id`,
//! `ipv6-filter-id`, `mac-filter-id`).

use std::ops::RangeInclusive;

use crate::config::ServiceConfig;
use crate::model::{FilterKind, ServiceId};

/// The lowest service id in `range` that no service uses, if any. Walks the used ids from the
/// start of the range up to the first gap, never the whole configuration.
pub fn free_service_id(
    config: &ServiceConfig,
    range: RangeInclusive<ServiceId>,
) -> Option<ServiceId> {
    lowest_gap(config.service_ids_from(*range.start()), range)
}

/// The lowest id of a filter of `kind` in `range` that no filter uses, if any.
pub fn free_filter_id(
    config: &ServiceConfig,
    kind: FilterKind,
    range: RangeInclusive<u32>,
) -> Option<u32> {
    lowest_gap(config.filter_ids_from(kind, *range.start()), range)
}

/// The lowest value of `range` missing from `used` (ascending).
fn lowest_gap(used: impl Iterator<Item = u32>, range: RangeInclusive<u32>) -> Option<u32> {
    let (start, end) = (*range.start(), *range.end());
    if start > end {
        return None;
    }
    let mut candidate = start;
    for id in used.skip_while(|id| *id < start) {
        if id > candidate {
            break;
        }
        if id == end {
            return None;
        }
        candidate = id + 1;
    }
    Some(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_gap_in_the_range() {
        assert_eq!(lowest_gap([].into_iter(), 5..=9), Some(5));
        assert_eq!(lowest_gap([1, 5, 6, 8].into_iter(), 5..=9), Some(7));
        assert_eq!(lowest_gap([5, 6, 7, 8, 9].into_iter(), 5..=9), None);
        assert_eq!(lowest_gap([5, 6, 7, 8, 9, 10].into_iter(), 5..=9), None);
        assert_eq!(lowest_gap([2, 3].into_iter(), 1..=3), Some(1));
        assert_eq!(
            lowest_gap([u32::MAX].into_iter(), u32::MAX..=u32::MAX),
            None
        );
        #[allow(clippy::reversed_empty_ranges)]
        let empty = 9..=5;
        assert_eq!(lowest_gap([].into_iter(), empty), None);
    }
}
