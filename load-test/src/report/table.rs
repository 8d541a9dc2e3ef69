//! The human-readable table a run prints: a header, then one group of lines per
//! concern, each shown only where the scenario has it.

use std::fmt::Write as _;

use super::Report;

/// Microseconds as milliseconds, three decimals, with the unit.
fn ms(us: f64) -> String {
    format!("{:.3} ms", us / 1000.0)
}

impl Report {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "== {} | {} | {}",
            self.run.label, self.run.scenario, self.run.params
        );
        let _ = writeln!(t, "  connections            {}", self.connections);
        self.write_rates(&mut t);
        self.write_latency(&mut t);
        self.write_checks(&mut t);
        self.write_reconnect(&mut t);
        self.write_incidents(&mut t);
        self.write_harness(&mut t);
        self.write_server(&mut t);
        self.write_find_max(&mut t);
        self.write_loss_alarm(&mut t);
        t
    }

    /// Logins/s and failures (connect), or the window and message and delivery rates
    /// (broadcast); nothing for idle.
    fn write_rates(&self, t: &mut String) {
        if self.run.scenario == "connect" {
            let _ = writeln!(t, "  logins/s               {:.0}", self.connections_per_s);
            let _ = writeln!(
                t,
                "  failures               {}",
                self.incidents.connect_failures
            );
        } else if self.run.scenario != "idle" {
            let _ = writeln!(
                t,
                "  window                 {:.1} s (after {:.1} s warm-up)",
                self.duration_s, self.warmup_s
            );
            let _ = writeln!(t, "  offered msgs/s         {:.0}", self.offered_msgs_per_s);
            let _ = writeln!(t, "  sent msgs/s            {:.0}", self.sent_msgs_per_s);
            let _ = writeln!(
                t,
                "  offered deliveries/s   {:.0}",
                self.offered_deliveries_per_s
            );
            let _ = writeln!(
                t,
                "  achieved deliveries/s  {:.0} ({:.1}% of offered)",
                self.achieved_deliveries_per_s,
                self.achieved_ratio() * 100.0
            );
        }
    }

    /// Latency (connect: connect+login) samples and percentiles; nothing for idle.
    fn write_latency(&self, t: &mut String) {
        if self.run.scenario == "idle" {
            return;
        }
        let l = &self.latency;
        let what = if self.run.scenario == "connect" {
            "connect+login"
        } else if self.reconnect.is_some() {
            "live latency"
        } else {
            "latency"
        };
        let _ = writeln!(t, "  {what:<22} samples {}", l.count);
        let _ = writeln!(
            t,
            "    p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}",
            ms(l.p50_us),
            ms(l.p90_us),
            ms(l.p99_us),
            ms(l.p999_us),
            ms(l.p9999_us),
            ms(l.max_us)
        );
    }

    /// The delivery checks and the send lag (broadcast only).
    fn write_checks(&self, t: &mut String) {
        if self.run.scenario == "connect" || self.run.scenario == "idle" {
            return;
        }
        let c = &self.checks;
        let _ = writeln!(
            t,
            "  checks                 deliveries {}  lost {}  dup {}  sender-reorder {}  seq-reorder {}  seq-gap {}  unexpected {}",
            c.deliveries, c.lost, c.duplicates, c.sender_reorders, c.seq_reorders, c.seq_gaps, c.unexpected
        );
        let _ = writeln!(
            t,
            "  send lag               p99 {}  max {} (actual minus scheduled send)",
            ms(self.send_lag.p99_us),
            ms(self.send_lag.max_us)
        );
    }

    /// The reconnect scenario's drops, resumes and replays (nothing elsewhere).
    fn write_reconnect(&self, t: &mut String) {
        let Some(r) = &self.reconnect else {
            return;
        };
        let c = &r.counts;
        let _ = writeln!(
            t,
            "  drops                  {} ({} closed, {} left open; {} skipped) by {} members, mode {}",
            c.drops, c.closed, c.replaced, c.drops_skipped, r.dropping_members, r.drop_mode
        );
        let _ = writeln!(
            t,
            "  resumes                {}  recovered {}  NOT recovered {}  other epoch {}  unfinished {}",
            c.resumes, c.recovered, c.unrecovered, c.epoch_changed, c.incomplete
        );
        let _ = writeln!(
            t,
            "  old connections        SESSION_REPLACED {}  closed by the server {}  still open {}  deliveries ignored {}",
            c.session_replaced, c.old_closed, c.old_not_closed, c.ignored_on_old
        );
        let _ = writeln!(
            t,
            "  resume time            p50 {}  p99 {}  max {} (drop to resumed JoinResponse)",
            ms(r.resume_time.p50_us),
            ms(r.resume_time.p99_us),
            ms(r.resume_time.max_us)
        );
        let l = &r.replay_latency;
        let _ = writeln!(
            t,
            "  replay latency         {} replayed, samples {}  p50 {}  p99 {}  max {} (not in live latency)",
            c.replayed,
            l.count,
            ms(l.p50_us),
            ms(l.p99_us),
            ms(l.max_us)
        );
    }

    /// Churn, server disconnects and errors, and the first error: each only if any.
    fn write_incidents(&self, t: &mut String) {
        let i = &self.incidents;
        if i.churn_ops > 0 || i.churn_skipped > 0 {
            let _ = writeln!(
                t,
                "  churn                  {} joins/leaves, {} skipped",
                i.churn_ops, i.churn_skipped
            );
            let _ = writeln!(
                t,
                "  all deliveries/s       {:.0} (churners included)",
                self.all_deliveries_per_s
            );
        }
        if i.disconnects > 0 || i.server_errors > 0 {
            let _ = writeln!(
                t,
                "  server                 {} disconnects, {} errors",
                i.disconnects, i.server_errors
            );
        }
        if let Some(e) = &i.first_error {
            let _ = writeln!(t, "  first error            {e}");
        }
    }

    /// The harness's CPU and preemptions, and a warning when it was saturated.
    fn write_harness(&self, t: &mut String) {
        let _ = writeln!(
            t,
            "  harness cpu            {:.0}% of one core ({} thread(s))",
            self.harness_cpu_pct, self.harness_threads
        );
        if self.harness_preemptions > 0 {
            let _ = writeln!(
                t,
                "  harness preempted      {} times (other work competed for its CPU)",
                self.harness_preemptions
            );
        }
        if self.harness_cpu_pct > 90.0 * self.harness_threads as f64 {
            let _ = writeln!(t, "  WARNING: the load generator is saturated; results are a floor on the server's capacity");
        }
    }

    /// The server's CPU (per 1000 logins or deliveries; not for idle) and RSS, with
    /// `--server-pid`, and a warning when its RSS fell.
    fn write_server(&self, t: &mut String) {
        if let Some(s) = &self.server {
            if self.run.scenario == "connect" {
                let _ = writeln!(
                    t,
                    "  server cpu             {:.0}% of one core, {:.1} us per 1000 logins",
                    s.cpu_pct, s.cpu_us_per_1000_deliveries
                );
            } else if self.run.scenario != "idle" {
                let _ = writeln!(
                    t,
                    "  server cpu             {:.0}% of one core, {:.1} us per 1000 deliveries",
                    s.cpu_pct, s.cpu_us_per_1000_deliveries
                );
            }
            let _ = writeln!(
                t,
                "  server rss             {} KiB -> {} KiB, {:.0} bytes per connection",
                s.rss_before_kib, s.rss_after_kib, s.rss_per_connection_bytes
            );
        }
        if self
            .server
            .as_ref()
            .is_some_and(|s| s.rss_after_kib < s.rss_before_kib)
        {
            let _ = writeln!(
                t,
                "  WARNING: the server's RSS fell during the run (still releasing memory from \
                 earlier load?): start from a fresh server for a per-connection figure"
            );
        }
    }

    /// `--find-max`'s steps, if any.
    fn write_find_max(&self, t: &mut String) {
        if self.find_max.is_empty() {
            return;
        }
        let _ = writeln!(t, "  find-max steps:");
        for s in &self.find_max {
            let _ = writeln!(
                t,
                "    {:>10.0} msgs/s offered  achieved {:5.1}%  p99 {:>10}  {}",
                s.offered_msgs_per_s,
                s.achieved_ratio * 100.0,
                ms(s.p99_us),
                s.verdict
            );
        }
    }

    /// The loud last line of a run with loss, disorder or failed clients.
    fn write_loss_alarm(&self, t: &mut String) {
        if !self.has_errors() {
            return;
        }
        let _ = writeln!(
            t,
            "  !!! LOSS OR DISORDER: lost {} dup {} reorders {}/{} gaps {} unexpected {} failures {} !!!",
            self.checks.lost,
            self.checks.duplicates,
            self.checks.sender_reorders,
            self.checks.seq_reorders,
            self.checks.seq_gaps,
            self.checks.unexpected,
            self.incidents.connect_failures
        );
        if let Some(r) = &self.reconnect {
            let c = &r.counts;
            if c.errors() > 0 {
                let _ = writeln!(
                    t,
                    "  !!! RESUME FAILURES: not recovered {} unfinished {} old sessions still open {} !!!",
                    c.unrecovered, c.incomplete, c.old_not_closed
                );
            }
        }
    }
}
