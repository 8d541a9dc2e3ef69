//! Compiles `proto/corecast.proto` with pure-Rust tooling (protox + prost-build):
//! a fresh machine needs no system `protoc`. Also records the source revision for
//! `corecast_build_info` (`unknown` outside a git checkout, e.g. in a container build).

use std::process::Command;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/corecast.proto");
    let fds = protox::compile(["proto/corecast.proto"], ["proto"])?;
    prost_build::Config::new()
        // `bytes` fields decode as `bytes::Bytes`: a body can be a zero-copy slice.
        .bytes(["."])
        .compile_fds(fds)?;

    let revision = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|rev| rev.trim().to_owned())
        .filter(|rev| !rev.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=CORECAST_REVISION={revision}");
    // A new commit moves the branch's ref (or packed-refs); HEAD moves on checkout.
    // Only paths that exist: cargo reruns a build script on every build while a path
    // it watches is missing (which would rebuild the crate each time).
    let mut watched = vec![".git/HEAD".to_owned(), ".git/packed-refs".to_owned()];
    if let Ok(head) = std::fs::read_to_string(".git/HEAD") {
        if let Some(reference) = head.trim().strip_prefix("ref: ") {
            watched.push(format!(".git/{reference}"));
        }
    }
    for path in watched.iter().filter(|p| std::path::Path::new(p).exists()) {
        println!("cargo:rerun-if-changed={path}");
    }
    Ok(())
}
