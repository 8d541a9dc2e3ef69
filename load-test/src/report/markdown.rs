//! Saved reports side by side as a Markdown table (the `table` command).

use std::fmt::Write as _;

use super::Report;

/// Saved reports side by side as a Markdown table (one row per run).
pub fn markdown_table(reports: &[Report]) -> String {
    if reports
        .iter()
        .all(|r| r.run.scenario == "connect" || r.run.scenario == "idle")
    {
        return markdown_connections_table(reports);
    }
    let mut t = String::new();
    let ms = |us: f64| format!("{:.3}", us / 1000.0);
    let _ = writeln!(
        t,
        "| run | offered msgs/s | achieved deliveries/s | p50 ms | p90 ms | p99 ms | p99.9 ms | p99.99 ms | max ms \
         | lost / dup / reordered | server CPU | server CPU us / 1000 deliveries | server RSS / conn | harness CPU |"
    );
    let _ = writeln!(
        t,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in reports {
        let c = &r.checks;
        let (cpu, per_k, rss) = match &r.server {
            Some(s) => (
                format!("{:.0}%", s.cpu_pct),
                format!("{:.0}", s.cpu_us_per_1000_deliveries),
                format!("{:.0} B", s.rss_per_connection_bytes),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let _ = writeln!(
            t,
            "| {} | {:.0} | {:.0} ({:.1}%) | {} | {} | {} | {} | {} | {} | {} / {} / {} | {} | {} | {} | {:.0}% |",
            r.run.label,
            r.offered_msgs_per_s,
            r.achieved_deliveries_per_s,
            r.achieved_ratio() * 100.0,
            ms(r.latency.p50_us),
            ms(r.latency.p90_us),
            ms(r.latency.p99_us),
            ms(r.latency.p999_us),
            ms(r.latency.p9999_us),
            ms(r.latency.max_us),
            c.lost,
            c.duplicates,
            c.sender_reorders + c.seq_reorders,
            cpu,
            per_k,
            rss,
            r.harness_cpu_pct
        );
    }
    t
}

/// The connect and idle scenarios' table: logins and memory instead of deliveries.
fn markdown_connections_table(reports: &[Report]) -> String {
    let mut t = String::new();
    let ms = |us: f64| format!("{:.3}", us / 1000.0);
    let _ = writeln!(
        t,
        "| run | connections | logins/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | failures \
         | server CPU us / 1000 logins | server RSS / conn | harness CPU |"
    );
    let _ = writeln!(
        t,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in reports {
        let (per_k, rss) = match &r.server {
            Some(s) => (
                format!("{:.0}", s.cpu_us_per_1000_deliveries),
                format!("{:.0} B", s.rss_per_connection_bytes),
            ),
            None => ("-".into(), "-".into()),
        };
        let _ = writeln!(
            t,
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0}% |",
            r.run.label,
            r.connections,
            r.connections_per_s,
            ms(r.latency.p50_us),
            ms(r.latency.p90_us),
            ms(r.latency.p99_us),
            ms(r.latency.p999_us),
            ms(r.latency.max_us),
            r.incidents.connect_failures,
            per_k,
            rss,
            r.harness_cpu_pct
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::RunInfo;

    #[test]
    fn markdown_has_a_row_per_report() {
        let a = Report {
            run: RunInfo {
                label: "corecast".into(),
                ..RunInfo::default()
            },
            offered_msgs_per_s: 1000.0,
            ..Report::default()
        };
        let b = Report {
            run: RunInfo {
                label: "redis".into(),
                ..RunInfo::default()
            },
            ..Report::default()
        };
        let md = markdown_table(&[a, b]);
        assert_eq!(md.lines().count(), 4);
        assert!(md
            .lines()
            .nth(2)
            .is_some_and(|l| l.starts_with("| corecast | 1000 |")));
        assert!(md.lines().all(|l| l.matches('|').count() == 15));
    }
}
