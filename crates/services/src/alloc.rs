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

/// The lowest service id in `range` that no service uses and `taken` does not hold (the ids
/// a script run selected already, not yet applied).
pub fn free_service_id_except(
    config: &ServiceConfig,
    range: RangeInclusive<ServiceId>,
    taken: &[ServiceId],
) -> Option<ServiceId> {
    lowest_gap_except(range, taken, |range| free_service_id(config, range))
}

/// The lowest id of a filter of `kind` in `range` that no filter uses and `taken` does not
/// hold.
pub fn free_filter_id_except(
    config: &ServiceConfig,
    kind: FilterKind,
    range: RangeInclusive<u32>,
    taken: &[u32],
) -> Option<u32> {
    lowest_gap_except(range, taken, |range| free_filter_id(config, kind, range))
}

/// The lowest gap `free` finds in `range` that `taken` does not hold: each taken gap found
/// starts the search again just above it.
fn lowest_gap_except(
    range: RangeInclusive<u32>,
    taken: &[u32],
    free: impl Fn(RangeInclusive<u32>) -> Option<u32>,
) -> Option<u32> {
    let (mut start, end) = (*range.start(), *range.end());
    loop {
        let id = free(start..=end)?;
        if !taken.contains(&id) {
            return Some(id);
        }
        start = id.checked_add(1)?;
    }
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

    #[test]
    fn taken_ids_are_skipped() {
        let used = |range: RangeInclusive<u32>| lowest_gap([5, 7].into_iter(), range);
        assert_eq!(lowest_gap_except(5..=9, &[], used), Some(6));
        assert_eq!(lowest_gap_except(5..=9, &[6, 8], used), Some(9));
        assert_eq!(lowest_gap_except(5..=9, &[6, 8, 9], used), None);
        assert_eq!(
            lowest_gap_except(u32::MAX..=u32::MAX, &[u32::MAX], |r| lowest_gap(
                [].into_iter(),
                r
            )),
            None
        );
    }
}
