//! Support for corecast's fuzz targets.
//!
//! Layout:
//! - `session_model`: the socket-free session simulation and its reference model
//!   (also included by the root package's `tests/properties.rs`).
//! - `script`: the byte format the `session` target reads ops from, and its writer
//!   (the seed generator writes readable seeds with it).
//! - `frames`: the `frame_decoder` target's checks.
//! - `token`: the `token` target's checks: login tokens (JWT) against a reference
//!   model of PROTOCOL.md's rules (also included by `tests/properties.rs`).

pub mod frames;
pub mod script;
pub mod session_model;
pub mod token;

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;

    use crate::{frames, script, session_model::Sim, token};

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

    /// A login granted and then replaced before its connection's reader applied the
    /// grant: the owner's answer and the replacement cross to the member shard in one
    /// batch (both claims went in one flush). The granted connection must still be
    /// closed with SESSION_REPLACED; otherwise it goes on as the player and the
    /// replacing login waits for a release that never comes.
    #[test]
    fn a_session_replaced_before_its_reader_took_the_grant_is_closed() {
        use std::rc::Rc;
        use std::sync::Arc;
        use std::time::Duration;

        use corecast::notify::LocalNotify;
        use corecast::shard::history::HistoryLimits;
        use corecast::shard::routing::owner_shard;
        use corecast::shard::{ShardLimits, ShardState};

        let limits = ShardLimits {
            max_room_members: 100,
            max_outbound_bytes: 1 << 20,
            max_shard_outbound_bytes: usize::MAX,
            close_grace: Duration::from_secs(1),
            history: HistoryLimits::OFF,
        };
        let mut shards: Vec<ShardState> = (0..2)
            .map(|id| ShardState::new(id, 2, limits.clone(), Rc::new(LocalNotify::default())))
            .collect();
        let player: Arc<str> = ["a", "b", "c", "d", "e", "f"]
            .into_iter()
            .find(|p| owner_shard(p, 2) == 1)
            .expect("an id shard 1 owns")
            .into();
        let old = shards[0].register();
        let new = shards[0].register();
        shards[0].claim(&old, player.clone(), false);
        shards[0].claim(&new, player, true);
        for from in [0, 1] {
            for (to, batch) in shards[from].take_outbox() {
                let _ = shards[to].handle_batch(batch);
            }
        }
        assert_eq!(old.claim.get(), Some(true), "the first login was granted");
        assert_eq!(
            new.claim.get(),
            None,
            "the replacing one waits for its release"
        );
        assert!(
            old.out.is_closing()
                && old.ended_by.get() == Some(corecast::metrics::Disconnect::SessionReplaced),
            "the granted session is replaced (SESSION_REPLACED, closed)"
        );
    }

    #[test]
    fn token_seeds_pass() {
        for seed in seeds("token") {
            token::check(&seed);
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
