//! CPU time the whole process (every thread, live or ended) has used, for benches that print
//! CPU per operation beside wall-clock rates: on a shared, loaded machine the wall clock says
//! as much about the neighbours as about the code.

/// User plus system CPU seconds of this process so far, from `/proc/self/stat` (in the
/// kernel's 100 Hz ticks: 10 ms resolution); 0 where it cannot be read.
pub fn process_cpu_seconds() -> f64 {
    stat_cpu_seconds(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

/// User plus system CPU seconds process `pid` has used so far; 0 where it cannot be read.
pub fn pid_cpu_seconds(pid: u32) -> f64 {
    stat_cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

/// User plus system CPU seconds each live thread of process `pid` has used so far, with the
/// thread's name (`/proc/PID/task/TID/comm`); threads that cannot be read are left out.
pub fn threads_cpu_seconds(pid: u32) -> Vec<(String, f64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let name = std::fs::read_to_string(task.path().join("comm")).ok()?;
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            Some((name.trim_end().to_owned(), stat_cpu_seconds(&stat)))
        })
        .collect()
}

/// User plus system CPU seconds in the text of a `/proc/…/stat` file, of a process or of one
/// of its threads (`/proc/PID/task/TID/stat`); 0 for what does not parse.
pub fn stat_cpu_seconds(stat: &str) -> f64 {
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
    // USER_HZ, the unit of /proc's CPU times: 100 on every Linux.
    (ticks(11) + ticks(12)) / 100.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_process_cpu_time_grows_with_work() {
        let threads_total = || -> f64 {
            super::threads_cpu_seconds(std::process::id())
                .iter()
                .map(|(_, seconds)| seconds)
                .sum()
        };
        let threads_before = threads_total();
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
        let by_pid = super::pid_cpu_seconds(std::process::id());
        assert!(by_pid >= before + 0.02, "{by_pid}");
        // The work ran on a live thread of this process (a thread's time is sampled per
        // tick, so it shows at least one), and every thread has its name.
        assert!(threads_total() > threads_before);
        let threads = super::threads_cpu_seconds(std::process::id());
        assert!(
            threads
                .iter()
                .all(|(name, _)| !name.is_empty() && !name.ends_with('\n')),
            "{threads:?}"
        );
    }

    #[test]
    fn a_stat_line_gives_utime_plus_stime_after_a_command_with_spaces() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 7 9 20 0";
        assert_eq!(super::stat_cpu_seconds(stat), 3.0);
        assert_eq!(super::stat_cpu_seconds("garbage"), 0.0);
    }
}
