//! The `corecast` binary: parse the command line, install signal handlers, run.

use anyhow::Context;
use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use corecast::config::Config;

#[cfg(feature = "pprof")]
mod profiler;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // glommio 0.9.0 adds 8-12 ms to each executor's first sleep unless the process
    // registers for expedited membarriers before any thread exists (fixed upstream,
    // unreleased). Failure only costs that delay.
    // SAFETY: a plain syscall with no pointers.
    unsafe { libc::syscall(libc::SYS_membarrier, 1 << 4, 0) };

    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = Config::parse();

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
    corecast::server::run(config, shutdown).context("corecast server")?;
    #[cfg(feature = "pprof")]
    if let Some(profile) = profile {
        profile.finish()?;
    }
    Ok(())
}
