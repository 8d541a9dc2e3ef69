//! Clocks: CLOCK_MONOTONIC nanoseconds (comparable across processes on one host, the
//! same clock as `std::time::Instant` on Linux) and the harness's own CPU time.

/// Nanoseconds on CLOCK_MONOTONIC.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// User plus system CPU time of this whole process, in microseconds (getrusage).
pub fn process_cpu_us() -> u64 {
    // SAFETY: rusage is plain data; zeroed is a valid value and getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer, RUSAGE_SELF always valid.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time of this process's waited-for children, microseconds (getrusage
/// RUSAGE_CHILDREN): the idle scenario's child processes.
pub fn children_cpu_us() -> u64 {
    // SAFETY: rusage is plain data; zeroed is a valid value and getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer, RUSAGE_CHILDREN always valid.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Involuntary context switches of this process so far (getrusage): how often the
/// harness was preempted while it still wanted to run, a sign of CPU contention.
pub fn process_preemptions() -> u64 {
    // SAFETY: as in `process_cpu_us`.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer, RUSAGE_SELF always valid.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_nivcsw as u64
}

/// Shrinks this thread's timer slack from the default 50 us to 1 ns, so that a sleep
/// until the next scheduled send wakes on time instead of up to 50 us late.
pub fn set_fine_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument; failure only leaves the
    // default slack in place.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_matches_instant_progress() {
        let a = mono_ns();
        let i = std::time::Instant::now();
        let mut spin = 0u64;
        while i.elapsed() < std::time::Duration::from_millis(2) {
            spin += 1;
        }
        let b = mono_ns();
        assert!(spin > 0);
        assert!(b - a >= 2_000_000, "elapsed {} ns", b - a);
    }
}
