//! Self-profiling for machines where `perf` is not permitted (cargo feature `pprof`).
//!
//! `CORECAST_PPROF=out.svg corecast ...` samples the whole process with pprof-rs from
//! start to graceful shutdown, then writes the flamegraph to `out.svg` and the
//! collapsed stacks to `out.folded` (the input of `inferno-flamegraph` and
//! `flamegraphs/diff.sh`). pprof-rs arms a SIGPROF timer on the process's CPU time,
//! and the kernel delivers each tick to the thread that was running, so the shards'
//! glommio executors are sampled in proportion to the CPU they use. User space only:
//! time in a system call shows as its libc wrapper. `CORECAST_PPROF_HZ` sets the
//! sampling rate (default 999 per second).

use std::fmt::Write as _;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

use anyhow::Context;

/// A running self-profile; `finish` writes it.
pub struct SelfProfile {
    guard: pprof::ProfilerGuard<'static>,
    svg: PathBuf,
}

impl SelfProfile {
    /// Starts sampling every thread if `CORECAST_PPROF` names an output SVG.
    pub fn from_env() -> anyhow::Result<Option<Self>> {
        let Some(svg) = std::env::var_os("CORECAST_PPROF") else {
            return Ok(None);
        };
        let hz = match std::env::var("CORECAST_PPROF_HZ") {
            Ok(v) => v.parse().context("CORECAST_PPROF_HZ: samples per second")?,
            Err(_) => 999,
        };
        let guard = pprof::ProfilerGuardBuilder::default()
            .frequency(hz)
            // A sample taken inside the unwinder or the vDSO could deadlock or fault
            // while the handler unwinds (pprof-rs README); those samples are dropped.
            .blocklist(&["libgcc", "vdso"])
            .build()
            .context("starting the pprof profiler")?;
        let svg = PathBuf::from(svg);
        tracing::info!(
            "pprof: sampling all threads at {hz} Hz into {}",
            svg.display()
        );
        Ok(Some(Self { guard, svg }))
    }

    /// Stops sampling; writes the collapsed stacks, then the SVG.
    pub fn finish(self) -> anyhow::Result<()> {
        let report = self
            .guard
            .report()
            .build()
            .context("building the pprof report")?;
        // Same lines pprof-rs feeds inferno: thread;root;...;leaf count.
        let mut lines: Vec<String> = report
            .data
            .iter()
            .map(|(frames, count)| {
                let mut line = frames.thread_name_or_id();
                for symbol in frames.frames.iter().rev().flat_map(|f| f.iter().rev()) {
                    // Writing to a String cannot fail.
                    let _ = write!(line, ";{symbol}");
                }
                let _ = write!(line, " {count}");
                line
            })
            .collect();
        lines.sort_unstable();
        let folded = self.svg.with_extension("folded");
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(&folded, text).with_context(|| format!("writing {}", folded.display()))?;
        let file =
            File::create(&self.svg).with_context(|| format!("creating {}", self.svg.display()))?;
        report
            .flamegraph(BufWriter::new(file))
            .context("rendering the flamegraph")?;
        let samples: isize = report.data.values().sum();
        tracing::info!(
            "pprof: {samples} samples written to {} and {}",
            self.svg.display(),
            folded.display()
        );
        Ok(())
    }
}
