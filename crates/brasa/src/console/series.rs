//! Rates for the sparklines: a daemon's counters sampled every few seconds, kept as per-second
//! rates over the last minutes. The ring is fed with `now` by [`spawn_sampler`]'s task; what
//! it stores is decided without reading a clock.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often counters are sampled.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(2);
/// How many samples are kept (five minutes at [`SAMPLE_INTERVAL`]).
pub const CAPACITY: usize = 150;

/// Per-second rates of named counters over the last [`CAPACITY`] samples.
pub struct Series {
    names: Vec<String>,
    ring: Mutex<Ring>,
}

#[derive(Default)]
struct Ring {
    /// Unix seconds of each point.
    times: VecDeque<f64>,
    /// One column of rates per name.
    rates: Vec<VecDeque<f64>>,
    /// The counters last seen and when.
    last: Option<(Instant, Vec<f64>)>,
}

impl Series {
    /// An empty series for counters called `names`.
    pub fn new(names: Vec<String>) -> Self {
        let rates = vec![VecDeque::new(); names.len()];
        Self {
            names,
            ring: Mutex::new(Ring {
                rates,
                ..Ring::default()
            }),
        }
    }

    /// Records counter values seen at `now` (`unix`: the same instant as Unix seconds). The
    /// first sample only sets the baseline; a counter that went down (a restart of what it
    /// counts) gives rate 0, never a negative one.
    pub fn record(&self, now: Instant, unix: f64, counters: &[f64]) {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((then, previous)) = ring.last.take() {
            let elapsed = now.saturating_duration_since(then).as_secs_f64();
            if elapsed > 0.0 {
                if ring.times.len() == CAPACITY {
                    ring.times.pop_front();
                    for column in &mut ring.rates {
                        column.pop_front();
                    }
                }
                ring.times.push_back(unix);
                for (index, column) in ring.rates.iter_mut().enumerate() {
                    let delta = counters.get(index).copied().unwrap_or(0.0)
                        - previous.get(index).copied().unwrap_or(0.0);
                    column.push_back((delta / elapsed).max(0.0));
                }
            }
        }
        ring.last = Some((now, counters.to_vec()));
    }

    /// The name of series `index` and its latest rate.
    pub fn latest(&self, index: usize) -> (&str, f64) {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let value = ring
            .rates
            .get(index)
            .and_then(|column| column.back().copied())
            .unwrap_or(0.0);
        (self.names.get(index).map_or("", String::as_str), value)
    }

    /// How many series there are.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// `{"t": [...], "series": [{"name": ..., "data": [...]}, ...]}` — the arrays uPlot takes.
    pub fn to_json(&self) -> serde_json::Value {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        serde_json::json!({
            "t": ring.times,
            "series": self.names.iter().zip(&ring.rates).map(|(name, data)| {
                serde_json::json!({ "name": name, "data": data })
            }).collect::<Vec<_>>(),
        })
    }
}

/// Samples `read` every [`SAMPLE_INTERVAL`] into `series` for as long as the process runs.
/// `read` answers `None` when the component cannot be asked right now (the sample is skipped).
pub fn spawn_sampler<F, Fut>(series: Arc<Series>, read: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Option<Vec<f64>>> + Send,
{
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(SAMPLE_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Some(counters) = read().await {
                let unix = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                series.record(Instant::now(), unix, &counters);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_deltas_per_second_and_never_negative() {
        let series = Series::new(vec!["requests".into(), "drops".into()]);
        let start = Instant::now();
        series.record(start, 1000.0, &[100.0, 5.0]);
        assert_eq!(
            series.to_json()["t"],
            serde_json::json!([]),
            "baseline only"
        );
        series.record(start + Duration::from_secs(2), 1002.0, &[140.0, 5.0]);
        series.record(start + Duration::from_secs(4), 1004.0, &[10.0, 9.0]);
        let json = series.to_json();
        assert_eq!(json["t"], serde_json::json!([1002.0, 1004.0]));
        assert_eq!(json["series"][0]["data"], serde_json::json!([20.0, 0.0]));
        assert_eq!(json["series"][1]["data"], serde_json::json!([0.0, 2.0]));
        assert_eq!(series.latest(1), ("drops", 2.0));
    }

    #[test]
    fn the_ring_keeps_the_last_samples_only() {
        let series = Series::new(vec!["n".into()]);
        let start = Instant::now();
        for i in 0..=(CAPACITY as u64 + 10) {
            series.record(start + Duration::from_secs(i), i as f64, &[i as f64 * 3.0]);
        }
        let json = series.to_json();
        let times = json["t"].as_array().unwrap();
        assert_eq!(times.len(), CAPACITY);
        assert_eq!(times[0], serde_json::json!(11.0));
        assert_eq!(json["series"][0]["data"][0], serde_json::json!(3.0));
    }
}
