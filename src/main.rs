//! The `corecast` binary: parse the command line, set up logging and signal handlers,
//! run.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use corecast::config::{Command, Config, LogFormat};

#[cfg(feature = "pprof")]
mod profiler;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // glommio 0.9.0 adds 8-12 ms to each executor's first sleep unless the process
    // registers for expedited membarriers before any thread exists (fixed upstream,
    // unreleased). Failure only costs that delay.
    // SAFETY: a plain syscall with no pointers.
    unsafe { libc::syscall(libc::SYS_membarrier, 1 << 4, 0) };

    let config = Config::parse();
    if let Some(Command::Token(args)) = &config.command {
        return match args.run() {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("corecast token: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let format = config.log_format;
    init_logging(format);
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = describe(&e);
            match format {
                // A collector parses every line: the failure is one more JSON object.
                LogFormat::Json => tracing::error!("{message}"),
                LogFormat::Text => eprintln!("corecast: {message}"),
            }
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        // Colour codes only where a person reads them: a pipe, a file, `kubectl logs`
        // and journald get plain text.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    let (stop, shutdown) = flume::bounded(1);
    let mut signals = Signals::new([SIGINT, SIGTERM]).context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                let _ = stop.send(());
            }
        })
        .context("starting the signal thread")?;
    #[cfg(feature = "pprof")]
    let profile = profiler::SelfProfile::from_env()?;
    corecast::server::run(config, shutdown)?;
    #[cfg(feature = "pprof")]
    if let Some(profile) = profile {
        profile.finish()?;
    }
    Ok(())
}

/// The error and its causes on one line, each cause once: a cause whose text its
/// parent already quotes is not repeated.
fn describe(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !message.contains(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
    }
    message
}
