//! Support for corecast's fuzz targets.
//!
//! Layout:
//! - `session_model`: the socket-free session simulation and its reference model
//!   (also included by the root package's `tests/properties.rs`).
//! - `script`: the byte format the `session` target reads ops from, and its writer
//!   (the seed generator writes readable seeds with it).
//! - `frames`: the `frame_decoder` target's checks.

pub mod frames;
pub mod script;
pub mod session_model;

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;

    use crate::{frames, script, session_model::Sim};

    fn seeds(target: &str) -> Vec<Vec<u8>> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .join(target);
        let mut seeds: Vec<Vec<u8>> = fs::read_dir(&dir)
            .expect("the seed corpus is committed")
            .map(|entry| entry.expect("readable corpus").path())
            .filter(|path| {
                path.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
            })
            .map(|path| fs::read(path).expect("readable seed"))
            .collect();
        seeds.sort();
        assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
        seeds
    }

    #[test]
    fn frame_decoder_seeds_pass() {
        for seed in seeds("frame_decoder") {
            frames::check(&seed);
        }
    }

    #[test]
    fn session_seeds_pass() {
        for seed in seeds("session") {
            let (settings, ops) = script::parse(&seed);
            Sim::new(settings).run(&ops);
        }
    }
}
