//! The `rooms` and `publish` claims of a token, compiled once at login into a matcher
//! that answers for a room id without allocating and without scanning every pattern:
//! one hash lookup for the exact ids, one walk down a byte trie of the prefixes (as
//! long as the room id at most, however many prefixes there are).

use std::collections::HashSet;

use ahash::RandomState;
use smallvec::SmallVec;

/// Room ids and `prefix*` patterns, as in a token's `rooms` or `publish` claim.
#[derive(Debug, Clone, Default)]
pub struct RoomPatterns {
    /// Exact room ids.
    exact: HashSet<Box<str>, RandomState>,
    /// The prefixes (patterns without their trailing `*`), as a trie.
    prefixes: PrefixTrie,
}

impl RoomPatterns {
    /// Compiles `patterns`: an entry ending in `*` is a prefix (`*` alone matches every
    /// room), any other entry is one room id.
    pub fn compile<S: AsRef<str>>(patterns: &[S]) -> Self {
        let mut compiled = Self::default();
        for pattern in patterns {
            let pattern = pattern.as_ref();
            match pattern.strip_suffix('*') {
                Some(prefix) => compiled.prefixes.insert(prefix.as_bytes()),
                None => {
                    compiled.exact.insert(pattern.into());
                }
            }
        }
        compiled
    }

    /// Whether `room` is named by an exact id or starts with a prefix.
    pub fn matches(&self, room: &str) -> bool {
        self.prefixes.any_prefix_of(room.as_bytes()) || self.exact.contains(room)
    }
}

/// A byte trie whose marked nodes end a prefix.
#[derive(Debug, Clone)]
struct PrefixTrie {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// Whether a prefix ends here.
    end: bool,
    /// (next byte, node index), unsorted: a node has few children in practice.
    children: SmallVec<[(u8, u32); 2]>,
}

impl Default for PrefixTrie {
    fn default() -> Self {
        Self {
            nodes: vec![Node::default()],
        }
    }
}

impl PrefixTrie {
    fn insert(&mut self, prefix: &[u8]) {
        let mut at = 0usize;
        for &byte in prefix {
            at = match self.nodes[at].children.iter().find(|(b, _)| *b == byte) {
                Some(&(_, next)) => next as usize,
                None => {
                    let next = self.nodes.len();
                    self.nodes.push(Node::default());
                    self.nodes[at].children.push((byte, next as u32));
                    next
                }
            };
        }
        self.nodes[at].end = true;
    }

    /// Whether some inserted prefix is a prefix of `id`.
    fn any_prefix_of(&self, id: &[u8]) -> bool {
        let mut at = 0usize;
        for &byte in id {
            if self.nodes[at].end {
                return true;
            }
            match self.nodes[at].children.iter().find(|(b, _)| *b == byte) {
                Some(&(_, next)) => at = next as usize,
                None => return false,
            }
        }
        self.nodes[at].end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule as PROTOCOL.md words it, one pattern at a time.
    fn naive(patterns: &[&str], room: &str) -> bool {
        patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => room.starts_with(prefix),
            None => *p == room,
        })
    }

    #[test]
    fn exact_ids_and_prefixes() {
        let patterns = ["lobby", "match-*", "team-red-*", "a"];
        let compiled = RoomPatterns::compile(&patterns);
        for (room, expected) in [
            ("lobby", true),
            ("lobby2", false),
            ("lobb", false),
            ("match-", true),
            ("match-42", true),
            ("match", false),
            ("team-red-1", true),
            ("team-red", false),
            ("team-blue-1", false),
            ("a", true),
            ("ab", false),
            ("", false),
        ] {
            assert_eq!(compiled.matches(room), expected, "{room:?}");
            assert_eq!(naive(&patterns, room), expected, "{room:?}");
        }
    }

    #[test]
    fn a_lone_star_matches_every_room_and_no_patterns_match_none() {
        let any = RoomPatterns::compile(&["*"]);
        assert!(any.matches("anything") && any.matches("x"));
        let none = RoomPatterns::compile::<&str>(&[]);
        assert!(!none.matches("lobby"));
    }

    #[test]
    fn a_star_inside_a_pattern_is_a_literal_character() {
        let compiled = RoomPatterns::compile(&["a*b", "c**"]);
        assert!(compiled.matches("a*b"));
        assert!(!compiled.matches("axb"));
        assert!(compiled.matches("c*"), "c** is the prefix c*");
        assert!(compiled.matches("c*d"));
        assert!(!compiled.matches("cd"));
    }

    #[test]
    fn shared_and_nested_prefixes() {
        let patterns = ["ab*", "abc*", "abd*", "x*", "xy"];
        let compiled = RoomPatterns::compile(&patterns);
        for room in [
            "a", "ab", "abc", "abz", "abcd", "x", "xy", "xyz", "y", "", "é", "ab€",
        ] {
            assert_eq!(compiled.matches(room), naive(&patterns, room), "{room:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_the_rule_as_written(
            patterns in proptest::collection::vec("[ab*]{0,4}", 0..6),
            room in "[ab*]{0,5}",
        ) {
            let refs: Vec<&str> = patterns.iter().map(String::as_str).collect();
            proptest::prop_assert_eq!(
                RoomPatterns::compile(&refs).matches(&room),
                naive(&refs, &room)
            );
        }
    }
}
