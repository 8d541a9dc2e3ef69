//! Another process's cost: CPU time (its CPU-time clock, `clock_getcpuclockid`, to the
//! nanosecond; utime + stime from /proc/PID/stat, in 10 ms clock ticks, where that
//! clock cannot be read) and resident memory (VmRSS from /proc/PID/status).

use anyhow::{Context, Result};

/// One sample of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcSample {
    /// User plus system CPU time, microseconds (all threads).
    pub cpu_us: u64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
}

/// Samples process `pid`.
pub fn sample(pid: u32) -> Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let cpu_ticks = parse_stat_cpu_ticks(&stat).context("parse /proc/PID/stat")?;
    let rss_kib = parse_status_rss_kib(&status).context("parse VmRSS in /proc/PID/status")?;
    Ok(ProcSample {
        cpu_us: cpu_clock_us(pid).unwrap_or(cpu_ticks * 1_000_000 / ticks),
        rss_kib,
    })
}

/// The CPU time of every thread of process `pid` so far, microseconds, from its
/// CPU-time clock: the same time /proc/PID/stat counts, without the 10 ms ticks (a
/// connect run's logins cost the server tens of milliseconds in all). `None` if the
/// clock cannot be read.
pub fn cpu_clock_us(pid: u32) -> Option<u64> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: clock_getcpuclockid writes one clockid_t through a valid pointer.
    if unsafe { libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) } != 0 {
        return None;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    Some(ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000)
}

/// utime + stime in clock ticks. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// VmRSS in KiB.
pub fn parse_status_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_names() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1014 0 0 0 125 37 0 0 20 0 3 0 1234 5678 900";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(162));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn parses_vmrss() {
        let status = "Name:\tcorecast\nVmPeak:\t  9000 kB\nVmRSS:\t    5120 kB\nThreads:\t3\n";
        assert_eq!(parse_status_rss_kib(status), Some(5120));
    }

    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_kib > 0);
    }

    #[test]
    fn another_process_cpu_clock_agrees_with_its_ticks() {
        // A child that burns about 150 ms of CPU, then waits to be sampled.
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 5",
            ])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let pid = child.id();
        let precise = cpu_clock_us(pid).expect("the child's CPU clock");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // SAFETY: sysconf has no preconditions.
        let tick_us = 1_000_000 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let ticked = parse_stat_cpu_ticks(&stat).unwrap() * tick_us;
        let _ = child.kill();
        let _ = child.wait();
        assert!(precise > 0);
        // The ticks truncate the same time (allow a tick either way for rounding).
        assert!(
            precise + tick_us >= ticked && precise <= ticked + 2 * tick_us,
            "clock {precise} us, ticks {ticked} us"
        );
    }
}
