//! Compiles `proto/corecast.proto` with pure-Rust tooling (protox + prost-build):
//! a fresh machine needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/corecast.proto");
    let fds = protox::compile(["proto/corecast.proto"], ["proto"])?;
    prost_build::Config::new()
        // `bytes` fields decode as `bytes::Bytes`: a body can be a zero-copy slice.
        .bytes(["."])
        .compile_fds(fds)?;
    Ok(())
}
