//! corecast-load: the open-loop load-test harness for corecast (and Redis pub/sub and
//! NATS core, for comparison).
//!
//! Layout (one concept per file):
//! - `cli`: the command line. `scenario/`: the scenarios from command line to report:
//!   `broadcast/` (fanout/chat/churn: one run's threads, `--find-max`), `connect`,
//!   `idle` (and its child processes), `burst` (back-to-back sends, slow-consumer cuts);
//!   `reconnect` is a broadcast run whose members drop and resume.
//! - `resume`: a reconnecting member's accounting across its connections.
//! - `worker/`: one thread's connections (`plan`), epoll loop (`io`), server events
//!   (`events`) and the phases a scenario drives on it (`broadcast`, `connect`).
//! - `schedule`: open-loop send times; `body`: the stamp each message carries;
//!   `latency`: histograms, percentiles, .hgrm; `check`: loss/dup/order checks.
//! - `targets/{corecast,redis,nats}`: the three wire protocols.
//! - `conn`, `poller`, `clock`, `procstat`: sockets, epoll, clocks, /proc.
//! - `report/` (`table`, `markdown`), `plot`, `progress`: the table, JSON, SVG and the
//!   live line.

mod body;
mod check;
mod cli;
mod clock;
mod conn;
mod jwt;
mod latency;
mod plot;
mod poller;
mod procstat;
mod progress;
mod report;
mod resume;
mod scenario;
mod schedule;
mod targets;
mod worker;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::scenario::{BroadcastSpec, DropSpec};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn run(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Command::Fanout(a) => {
            let spec = BroadcastSpec::new("fanout", a.rooms, a.members, a.senders);
            scenario::broadcast(&spec, &a.run)
        }
        Command::Chat(a) => {
            // Everyone sends.
            let spec = BroadcastSpec::new("chat", a.rooms, a.members, a.members);
            scenario::broadcast(&spec, &a.run)
        }
        Command::Churn(a) => {
            let spec = BroadcastSpec {
                churners: a.churners,
                churn_rate: a.churn_rate,
                ..BroadcastSpec::new("churn", a.rooms, a.members, a.senders)
            };
            scenario::broadcast(&spec, &a.run)
        }
        Command::Reconnect(a) => {
            let spec = BroadcastSpec {
                drops: Some(DropSpec {
                    droppers: a.droppers(),
                    per_second: a.drops_per_second,
                    mode: a.drop_mode,
                }),
                ..BroadcastSpec::new("reconnect", a.rooms, a.members, a.senders)
            };
            scenario::broadcast(&spec, &a.run)
        }
        Command::Connect(a) => scenario::connect(&a),
        Command::Idle(a) => scenario::idle(&a),
        Command::Burst(a) => scenario::burst(&a),
        Command::IdleChild(a) => scenario::idle_child(&a).map(|()| true),
        Command::Plot(a) => report::plot_files(
            &a.title,
            &a.inputs,
            &a.out,
            if a.log_y {
                plot::YScale::Log
            } else {
                plot::YScale::Linear
            },
        )
        .map(|()| true),
        Command::Table(a) => {
            print!(
                "{}",
                report::markdown_table(&report::load_reports(&a.inputs)?)
            );
            Ok(true)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before any thread exists: the descriptor table is grown once, up front, instead
    // of a doubling at a time while connections open, each of which stalls the
    // connecting thread for an RCU grace period in a multi-threaded process (10 to
    // 15 ms, seen in the connect storm as late connects at 250, 500, ... 16,000).
    corecast::config::presize_fd_table(corecast::config::connection_budget());
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("corecast-load: FAILED (loss, disorder or failed clients; see above)");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("corecast-load: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
