//! Clocks shared by the in-memory benchmarks.

/// The time-stamp counter (0 where there is none): cycles per packet.
pub fn cycles() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no preconditions on x86_64.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// CPU time of this thread, seconds: the figure that does not count the time other processes
/// took the core (the build machine is shared).
pub fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Calls `run_batch(packets so far)`, which runs one batch and returns how many packets it
/// held, for `seconds`; then prints, after `name`, the rate per CPU-second of this thread, the
/// ns and TSC cycles per packet, the wall-clock rate, and `detail`.
#[allow(dead_code)] // pipeline_bench measures its own way
pub fn measure(name: &str, seconds: f64, detail: &str, mut run_batch: impl FnMut(u64) -> u64) {
    let deadline = std::time::Duration::from_secs_f64(seconds);
    let mut packets = 0u64;
    let start = std::time::Instant::now();
    let start_cycles = cycles();
    let start_cpu = thread_cpu_seconds();
    while start.elapsed() < deadline {
        for _ in 0..64 {
            packets += run_batch(packets);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = thread_cpu_seconds() - start_cpu;
    let spent = cycles() - start_cycles;
    // TSC cycles of the thread's own CPU time (wall-clock cycles scaled by its share).
    let own_cycles = spent as f64 * (cpu / elapsed);
    println!(
        "{name:<52} {:>6.2} Mpps per CPU-second ({:>5.1} ns, {:>5.0} cycles/packet); wall clock {:>6.2} Mpps  ({packets} packets, {cpu:.2} s CPU in {elapsed:.2} s{detail})",
        packets as f64 / cpu / 1e6,
        cpu * 1e9 / packets as f64,
        own_cycles / packets as f64,
        packets as f64 / elapsed / 1e6,
    );
}
