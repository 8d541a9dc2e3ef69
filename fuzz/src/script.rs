//! The `session` target's input format: two settings bytes ([`Tiers`]), then ops, each a kind byte
//! and its arguments. Every byte string parses (missing bytes read as zero), and
//! [`write`] is the inverse of [`parse`], so seeds can be written as ops.
//!
//! Settings bytes `s`, `t`, `h`: bit 0 of `s` auth, bits 1-2 `--max-room-members`, 3-4
//! `--max-outbound-bytes`, 5-6 `--max-frame-bytes`; bits 0-1 of `t`
//! `--max-rooms-per-connection`, 2-3 `--max-targets`, bit 4 two shards, bit 5 racy;
//! `--max-messages-per-second` is `RATE_LIMITS[(s >> 7) | (t >> 6) << 1]` (bits that
//! older seeds leave at zero: rate limiting off); bits 0-1 of `h` `--history-messages`
//! (0: history off), 2-3 `--history-bytes`, 4-5 `--history-shard-bytes`, bit 6 a
//! `--history-ttl` (empty rooms with history kept until an expire op).
//!
//! Op kind byte `k`: `0xFA` shutdown, `0xFB` expire (the TTL of empty rooms passes);
//! otherwise by `k % 8`: 0 connect, 1 disconnect
//! (then a connection byte), 2 deliver (then a channel byte), 3-7 input (then a connection byte and
//! `1 + (k >> 3) % 4` payloads). Payload kind byte `p`, by `p % 8`: 0 login (id,
//! token; bit 3 of `p` sets `replace_existing`), 1 join (room, config: 0 none, else
//! `max_players + 1`; bit 3 of `p` adds the history fields: a `since_seq` byte (under
//! 0x80 the number, else what the clients last saw less `b - 0x80`), an epoch byte
//! (by `% 8`: 0 empty, 1-4 the last seen, 5 the one before, 6 a wrong one, 7 one
//! too long) and a `history_limit` byte), 2 leave (room),
//! 3 send (room, target count % 4, targets, body length, body; bit 3 of `p` adds
//! an unknown field), 4 ping (8 bytes, little-endian), 5 empty, 6-7 raw (u16 LE
//! length, bytes).

use std::time::Duration;

use crate::session_model::{
    EpochPick, HistoryLimits, JoinHistory, Op, Payload, Settings, Since, Token, KEPT_TTL,
};

/// Most ops read from one input, so that every execution stays fast.
pub const MAX_OPS: usize = 200;

/// Kind byte of [`Op::Shutdown`].
const SHUTDOWN: u8 = 0xFA;

/// Kind byte of [`Op::Expire`].
const EXPIRE: u8 = 0xFB;

/// Largest raw payload read from one input.
const MAX_RAW: usize = 4096;

const ROOM_CAPS: [u32; 4] = [1, 2, 3, 65_536];
const OUTBOUND_LIMITS: [usize; 4] = [64, 300, 2_000, 1 << 20];
const FRAME_LIMITS: [usize; 4] = [16, 100, 1_024, 65_536];
const ROOMS_PER_CONNECTION: [u32; 4] = [1, 2, 3, 1_000];
const TARGET_LIMITS: [usize; 4] = [0, 1, 2, 256];
/// `--max-messages-per-second`, by a 3-bit index: off half the time (0), else a burst
/// that runs out (1, 2, 5) or one that does not (1000).
const RATE_LIMITS: [u32; 8] = [0, 1, 2, 5, 1_000, 0, 0, 0];
/// `--history-messages` (0: off), `--history-bytes` and `--history-shard-bytes`: a
/// message's frame is about 16 bytes plus its body (plus 17 or so per id of a targeted
/// one's audience), so the small ones evict after a message or two.
const HISTORY_MESSAGES: [usize; 4] = [0, 2, 5, 1_000];
const HISTORY_BYTES: [usize; 4] = [40, 150, 600, 1 << 20];
const HISTORY_SHARD_BYTES: [usize; 4] = [80, 300, 1_500, 1 << 20];

struct Reader<'a> {
    data: &'a [u8],
}

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head.to_vec()
    }

    fn payload(&mut self) -> Payload {
        let kind = self.byte();
        match kind % 8 {
            0 => Payload::Login {
                player: self.byte(),
                token: match self.byte() % 3 {
                    0 => Token::Absent,
                    1 => Token::Right,
                    _ => Token::Wrong,
                },
                replace: kind & 8 != 0,
            },
            1 => Payload::Join {
                room: self.byte(),
                max_players: match self.byte() {
                    0 => None,
                    n => Some(u32::from(n) - 1),
                },
                history: (kind & 8 != 0).then(|| JoinHistory {
                    since: match self.byte() {
                        b if b < 0x80 => Since::Seq(u64::from(b)),
                        b => Since::Back(u64::from(b - 0x80)),
                    },
                    epoch: match self.byte() % 8 {
                        0 => EpochPick::Empty,
                        1..=4 => EpochPick::Seen,
                        5 => EpochPick::Previous,
                        6 => EpochPick::Wrong,
                        _ => EpochPick::TooLong,
                    },
                    limit: u32::from(self.byte()),
                }),
            },
            2 => Payload::Leave { room: self.byte() },
            3 => {
                let room = self.byte();
                let count = self.byte() % 4;
                let targets = (0..count).map(|_| self.byte()).collect();
                let len = usize::from(self.byte());
                Payload::Send {
                    room,
                    targets,
                    body: self.bytes(len),
                    unknown_field: kind & 8 != 0,
                }
            }
            4 => {
                let mut nonce = [0u8; 8];
                for b in &mut nonce {
                    *b = self.byte();
                }
                Payload::Ping(u64::from_le_bytes(nonce))
            }
            5 => Payload::Empty,
            _ => {
                let len = usize::from(u16::from_le_bytes([self.byte(), self.byte()]));
                Payload::Raw(self.bytes(len.min(MAX_RAW)))
            }
        }
    }
}

/// Reads settings and ops from fuzzer bytes.
pub fn parse(data: &[u8]) -> (Settings, Vec<Op>) {
    let mut r = Reader { data };
    let s = r.byte();
    let t = r.byte();
    let h = r.byte();
    let settings = Settings {
        auth: s & 1 != 0,
        max_room_members: ROOM_CAPS[usize::from(s >> 1) % 4],
        max_outbound_bytes: OUTBOUND_LIMITS[usize::from(s >> 3) % 4],
        max_frame_bytes: FRAME_LIMITS[usize::from(s >> 5) % 4],
        max_rooms_per_connection: ROOMS_PER_CONNECTION[usize::from(t) % 4],
        max_targets: TARGET_LIMITS[usize::from(t >> 2) % 4],
        max_messages_per_second: RATE_LIMITS[usize::from(s >> 7 | (t >> 6) << 1)],
        shards: 1 + usize::from(t >> 4 & 1),
        racy: t & 0x20 != 0,
        history: HistoryLimits {
            messages: HISTORY_MESSAGES[usize::from(h) % 4],
            bytes: HISTORY_BYTES[usize::from(h >> 2) % 4],
            shard_bytes: HISTORY_SHARD_BYTES[usize::from(h >> 4) % 4],
            ttl: if h & 0x40 != 0 {
                KEPT_TTL
            } else {
                Duration::ZERO
            },
        },
    };
    let mut ops = Vec::new();
    while !r.data.is_empty() && ops.len() < MAX_OPS {
        let kind = r.byte();
        let op = if kind == SHUTDOWN {
            Op::Shutdown
        } else if kind == EXPIRE {
            Op::Expire
        } else {
            match kind % 8 {
                0 => Op::Connect,
                1 => Op::Disconnect(r.byte()),
                2 => Op::Deliver(r.byte()),
                _ => {
                    let conn = r.byte();
                    let count = 1 + usize::from(kind >> 3) % 4;
                    let payloads = (0..count).map(|_| r.payload()).collect();
                    Op::Input { conn, payloads }
                }
            }
        };
        ops.push(op);
    }
    (settings, ops)
}

/// Indices into this file's tables of limits (each 0 to 3; 3 is the roomiest).
#[derive(Debug, Clone, Copy)]
pub struct Tiers {
    /// Whether logins must carry the token.
    pub auth: bool,
    /// `--max-room-members`: 1, 2, 3, 65536.
    pub room_cap: u8,
    /// `--max-outbound-bytes`: 64, 300, 2000, 1 MiB.
    pub outbound: u8,
    /// `--max-frame-bytes`: 16, 100, 1024, 65536.
    pub frame_max: u8,
    /// `--max-rooms-per-connection`: 1, 2, 3, 1000.
    pub rooms_per_conn: u8,
    /// `--max-targets`: 0, 1, 2, 256.
    pub targets: u8,
    /// Two shards instead of one.
    pub two_shards: bool,
    /// Cross-shard batches delivered in a fuzzed order (model off).
    pub racy: bool,
    /// `--max-messages-per-second` (0 to 7): off, 1, 2, 5, 1000, then off again.
    pub rate: u8,
    /// `--history-messages`: off, 2, 5, 1000.
    pub history: u8,
    /// `--history-bytes`: 40, 150, 600, 1 MiB.
    pub history_bytes: u8,
    /// `--history-shard-bytes`: 80, 300, 1500, 1 MiB.
    pub history_shard_bytes: u8,
    /// A `--history-ttl` (empty rooms with history kept until an expire op).
    pub history_ttl: bool,
}

impl Tiers {
    /// Every limit at its roomiest, no authentication.
    pub const ROOMY: Tiers = Tiers {
        auth: false,
        room_cap: 3,
        outbound: 3,
        frame_max: 3,
        rooms_per_conn: 3,
        targets: 3,
        two_shards: false,
        racy: false,
        rate: 0,
        history: 0,
        history_bytes: 3,
        history_shard_bytes: 3,
        history_ttl: false,
    };

    /// [`Tiers::ROOMY`] with history on: 1000 messages, 1 MiB, and a TTL.
    pub const HISTORY: Tiers = Tiers {
        history: 3,
        history_ttl: true,
        ..Tiers::ROOMY
    };

    fn bytes(self) -> [u8; 3] {
        [
            u8::from(self.auth)
                | ((self.room_cap % 4) << 1)
                | ((self.outbound % 4) << 3)
                | ((self.frame_max % 4) << 5)
                | ((self.rate & 1) << 7),
            (self.rooms_per_conn % 4)
                | ((self.targets % 4) << 2)
                | (u8::from(self.two_shards) << 4)
                | (u8::from(self.racy) << 5)
                | ((self.rate >> 1 & 3) << 6),
            (self.history % 4)
                | ((self.history_bytes % 4) << 2)
                | ((self.history_shard_bytes % 4) << 4)
                | (u8::from(self.history_ttl) << 6),
        ]
    }
}

/// Writes ops in the format [`parse`] reads (at most 4 payloads per input; raw
/// payloads and bodies are truncated to what the format can carry).
pub fn write(tiers: Tiers, ops: &[Op]) -> Vec<u8> {
    let mut out = tiers.bytes().to_vec();
    for op in ops {
        match op {
            Op::Shutdown => out.push(SHUTDOWN),
            Op::Expire => out.push(EXPIRE),
            Op::Connect => out.push(0),
            Op::Disconnect(conn) => out.extend([1, *conn]),
            Op::Deliver(pick) => out.extend([2, *pick]),
            Op::Input { conn, payloads } => {
                let payloads = &payloads[..payloads.len().clamp(1, 4)];
                out.extend([3 | ((payloads.len() as u8 - 1) << 3), *conn]);
                for payload in payloads {
                    write_payload(&mut out, payload);
                }
            }
        }
    }
    out
}

fn write_payload(out: &mut Vec<u8>, payload: &Payload) {
    match payload {
        Payload::Login {
            player,
            token,
            replace,
        } => {
            let token = match token {
                Token::Absent => 0,
                Token::Right => 1,
                Token::Wrong => 2,
            };
            out.extend([u8::from(*replace) << 3, *player, token]);
        }
        Payload::Join {
            room,
            max_players,
            history,
        } => {
            let config = max_players.map_or(0, |m| m.min(254) as u8 + 1);
            out.extend([1 | u8::from(history.is_some()) << 3, *room, config]);
            if let Some(h) = history {
                let since = match h.since {
                    Since::Seq(n) => n.min(0x7f) as u8,
                    Since::Back(n) => 0x80 | n.min(0x7f) as u8,
                };
                let epoch = match h.epoch {
                    EpochPick::Empty => 0,
                    EpochPick::Seen => 1,
                    EpochPick::Previous => 5,
                    EpochPick::Wrong => 6,
                    EpochPick::TooLong => 7,
                };
                out.extend([since, epoch, h.limit.min(255) as u8]);
            }
        }
        Payload::Leave { room } => out.extend([2, *room]),
        Payload::Send {
            room,
            targets,
            body,
            unknown_field,
        } => {
            let targets = &targets[..targets.len().min(3)];
            let body = &body[..body.len().min(255)];
            out.extend([
                3 | u8::from(*unknown_field) << 3,
                *room,
                targets.len() as u8,
            ]);
            out.extend_from_slice(targets);
            out.push(body.len() as u8);
            out.extend_from_slice(body);
        }
        Payload::Ping(nonce) => {
            out.push(4);
            out.extend(nonce.to_le_bytes());
        }
        Payload::Empty => out.push(5),
        Payload::Raw(bytes) => {
            let bytes = &bytes[..bytes.len().min(MAX_RAW)];
            out.push(6);
            out.extend((bytes.len() as u16).to_le_bytes());
            out.extend_from_slice(bytes);
        }
    }
}
