//! The process's own figures for `/metrics`, under the names of Prometheus's process
//! collector (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...), and
//! `corecast_build_info`. Read from `/proc` at scrape time, never on the message path.

use std::fmt::Write;

/// One reading of `/proc/self`; a figure the system did not give is `None` and is
/// left out of the text.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time.
    pub cpu_seconds: Option<f64>,
    /// Resident set size.
    pub resident_bytes: Option<u64>,
    /// Virtual memory size.
    pub virtual_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft open-file limit.
    pub max_fds: Option<u64>,
    /// Start time, seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
    /// OS threads.
    pub threads: Option<u64>,
}

impl ProcessStats {
    /// Reads `/proc/self/stat`, `/proc/self/fd` and `/proc/stat`. Counting the
    /// descriptors walks one directory entry per connection.
    pub fn read() -> Self {
        // SAFETY: sysconf and getrlimit only read or fill what we pass.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let mut stats = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| {
                let boot = std::fs::read_to_string("/proc/stat").ok();
                parse_stat(&stat, boot.as_deref(), ticks as f64, page as u64)
            })
            .unwrap_or_default();
        stats.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|dir| dir.count() as u64);
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            stats.max_fds = Some(limit.rlim_cur);
        }
        stats
    }
}

/// Parses `/proc/self/stat` (fields after the command name, which may hold spaces and
/// parentheses) and the boot time from `/proc/stat`.
fn parse_stat(stat: &str, proc_stat: Option<&str>, ticks: f64, page: u64) -> Option<ProcessStats> {
    let after_name = &stat[stat.rfind(')')? + 2..];
    // Fields from 3 (state) on; field N is at index N - 3.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let ticks = if ticks > 0.0 { ticks } else { 100.0 };
    let boot = proc_stat.and_then(|text| {
        text.lines()
            .find_map(|line| line.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<u64>().ok())
    });
    Some(ProcessStats {
        cpu_seconds: Some((field(14)? + field(15)?) as f64 / ticks),
        threads: field(20),
        start_time_seconds: boot
            .zip(field(22))
            .map(|(boot, start)| boot as f64 + start as f64 / ticks),
        virtual_bytes: field(23),
        resident_bytes: field(24).map(|pages| pages * page),
        open_fds: None,
        max_fds: None,
    })
}

/// Appends the process's figures and `corecast_build_info` in Prometheus text.
pub fn render(out: &mut String, stats: &ProcessStats) {
    let rows: [(&str, &str, &str, Option<f64>); 7] = [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            stats.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            stats.resident_bytes.map(|v| v as f64),
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            stats.virtual_bytes.map(|v| v as f64),
        ),
        (
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            stats.open_fds.map(|v| v as f64),
        ),
        (
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            stats.max_fds.map(|v| v as f64),
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            stats.start_time_seconds,
        ),
        (
            "process_threads",
            "gauge",
            "Number of OS threads in the process.",
            stats.threads.map(|v| v as f64),
        ),
    ];
    for (name, kind, help, value) in rows {
        if let Some(value) = value {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        }
    }
    let _ = write!(
        out,
        "# HELP corecast_build_info The running build: 1, labelled by version and source revision.\n# TYPE corecast_build_info gauge\ncorecast_build_info{{version=\"{}\",revision=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION"),
        env!("CORECAST_REVISION"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_past_a_command_name_with_spaces_and_parentheses() {
        // Fields 14/15 utime/stime, 20 threads, 22 starttime, 23 vsize, 24 rss (pages).
        let stat = "4242 (core cast) x) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 6 0 1000 \
                    123456789 300 18446744073709551615";
        let stats =
            parse_stat(stat, Some("cpu 1 2 3\nbtime 1700000000\n"), 100.0, 4096).expect("parses");
        assert_eq!(stats.cpu_seconds, Some(3.0));
        assert_eq!(stats.threads, Some(6));
        assert_eq!(stats.start_time_seconds, Some(1_700_000_010.0));
        assert_eq!(stats.virtual_bytes, Some(123_456_789));
        assert_eq!(stats.resident_bytes, Some(300 * 4096));
    }

    #[test]
    fn this_process_reads_and_renders_in_prometheus_names() {
        let stats = ProcessStats::read();
        assert!(stats.resident_bytes.unwrap() > 0);
        assert!(stats.open_fds.unwrap() >= 3);
        assert!(stats.threads.unwrap() >= 1);
        let mut text = String::new();
        render(&mut text, &stats);
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_max_fds ",
            "process_start_time_seconds ",
            "# TYPE process_cpu_seconds_total counter",
            "corecast_build_info{version=\"",
        ] {
            assert!(text.contains(name), "{name} missing:\n{text}");
        }
    }
}
