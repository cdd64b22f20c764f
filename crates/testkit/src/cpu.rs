//! CPU time the whole process (every thread, live or ended) has used, for benches that print
//! CPU per operation beside wall-clock rates: on a shared, loaded machine the wall clock says
//! as much about the neighbours as about the code.

/// User plus system CPU seconds of this process so far, from `/proc/self/stat` (in the
/// kernel's 100 Hz ticks: 10 ms resolution); 0 where it cannot be read.
pub fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name, in parentheses, may hold spaces: the fields count from after it.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_process_cpu_time_grows_with_work() {
        let before = super::process_cpu_seconds();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut x = 0u64;
        while super::process_cpu_seconds() - before < 0.02 && std::time::Instant::now() < deadline {
            for i in 0..100_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            std::hint::black_box(x);
        }
        assert!(super::process_cpu_seconds() >= before + 0.02);
    }
}
