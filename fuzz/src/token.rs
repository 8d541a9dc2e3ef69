//! The `token` target's checks: login tokens (JWT) through `corecast::auth::Verifier`.
//!
//! The first input byte picks the half:
//! - raw (even): the rest, as a token string, into an HS256 and an Ed25519 verifier. A
//!   fuzzer cannot forge a signature, so every answer must be a refusal.
//! - structured (odd): the rest is decoded into a claims object (each claim absent,
//!   null, of its type or deliberately of another), a clock and an [`Expect`]; the
//!   claims are signed with the test secret and verified, and the outcome is compared
//!   with [`model`], a reference written from PROTOCOL.md ("Signed identity tokens
//!   (JWT)"): accept or refuse (and why), then the identity's `sub`, `exp`, its
//!   `may_join`/`may_publish` on rooms derived from the claims, and the session's
//!   deadline. A byte of the structured half sends the payload bytes themselves,
//!   signed, instead (one-sided check: what the verifier accepts, the model accepts).
//!
//! Included by the root package's `tests/properties.rs` too, so it only uses crates
//! the root package depends on.

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Number, Value};

use corecast::auth::{Expect, Identity, Verifier, MAX_SESSION_SECS, MIN_HS256_SECRET_BYTES};

/// The HS256 test secret (the verifier wants at least 32 bytes).
pub const SECRET: &[u8] = b"corecast fuzz secret, 32 bytes or more";

/// An Ed25519 public key (`openssl genpkey -algorithm ed25519`, then `pkey -pubout`).
/// Its private half is not kept: nothing in the fuzz targets signs with it.
pub const ED25519_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAzsTPsQxDkt5LM8BfUqXNvw3MqXqV9CO/y04O5zF3XLU=
-----END PUBLIC KEY-----
";

/// A realistic clock (2027), the centre of most generated times.
pub const BASE_NOW: u64 = 1_800_000_000;

/// Clocks stay below this (35 000 years): the verifier compares in `f64`, exact here.
const MAX_NOW: u64 = 1 << 40;

/// Longest id the protocol allows (`player_id`, `room_id`, hence `sub` and patterns).
const MAX_ID: usize = 128;

/// The expected issuer and audience most generated `Expect`s use.
const ISSUER: &str = "matchmaker";
const AUDIENCE: &str = "corecast";

/// Checks known to fail on the current code, skipped while their fix is pending.
#[derive(Debug, Clone, Copy, Default)]
pub struct Skip {
    /// `Verifier::deadline` for an `exp` so far ahead that `exp + leeway` overflows a
    /// u64 or the deadline overflows an `Instant` (panics, or closes at once).
    pub deadline_overflow: bool,
    /// A payload accepted though it is not UTF-8: serde_json skips an unknown claim's
    /// string without validating it, so bytes that are not UTF-8 there go through.
    pub ignored_claim_utf8: bool,
}

impl Skip {
    /// What `CORECAST_FUZZ_SKIP` (comma-separated names) asks to skip.
    pub fn from_env() -> Self {
        let names = std::env::var("CORECAST_FUZZ_SKIP").unwrap_or_default();
        let named = |name: &str| names.split(',').any(|n| n.trim() == name);
        Self {
            deadline_overflow: named("deadline-overflow"),
            ignored_claim_utf8: named("ignored-claim-utf8"),
        }
    }
}

/// Runs every check on one input, none skipped.
pub fn check(data: &[u8]) {
    check_with(data, Skip::default());
}

/// Runs the checks on one input, except the ones `skip` names.
pub fn check_with(data: &[u8], skip: Skip) {
    let Some((&half, rest)) = data.split_first() else {
        return;
    };
    if half % 2 == 0 {
        check_raw(rest);
    } else {
        check_structured(&mut Input::new(rest), skip);
    }
}

fn hs256(expect: Expect) -> Verifier {
    debug_assert!(SECRET.len() >= MIN_HS256_SECRET_BYTES);
    Verifier::hs256(SECRET, expect).expect("the test secret is long enough")
}

fn ed25519() -> Verifier {
    Verifier::public_pem(ED25519_PUBLIC_PEM.as_bytes(), Expect::default())
        .expect("the test key is an Ed25519 public key")
}

/// Arbitrary bytes as a token: refused, whatever the clock.
fn check_raw(bytes: &[u8]) {
    let token = String::from_utf8_lossy(bytes);
    let permissive = Expect {
        leeway: Duration::from_secs(u32::MAX.into()),
        ..Expect::default()
    };
    for verifier in [hs256(permissive), ed25519()] {
        for now in [0, BASE_NOW] {
            if let Ok(identity) = verifier.verify(&token, now) {
                panic!(
                    "{:?} accepted an unsigned input as {identity:?}: {token:?}",
                    verifier.algorithm()
                );
            }
        }
    }
}

/// Reads the structured half's choices; past the end every read is zero.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Reads from `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | u32::from(self.u16()) << 16
    }

    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        taken
    }

    fn rest(&mut self) -> &'a [u8] {
        self.bytes(self.data.len())
    }
}

/// Strings the generator picks from: ids, patterns (with `*` at the end, in the middle,
/// doubled, alone), the expected issuer and audience, Unicode, the length limits.
fn pooled(i: u8) -> String {
    const POOL: [&str; 20] = [
        "",
        "a",
        "lobby",
        "match-*",
        "match-7",
        "*",
        "a*b",
        "**",
        "a*",
        ISSUER,
        AUDIENCE,
        "é",
        "日本*",
        "\u{0}",
        "🦀-room",
        "team-red-*",
        "MATCH-*",
        " lobby",
        "lobby*",
        "x",
    ];
    match usize::from(i) {
        i if i < POOL.len() => POOL[i].to_owned(),
        20 => "x".repeat(MAX_ID),
        21 => "x".repeat(MAX_ID + 1),
        22 => format!("{}*", "x".repeat(MAX_ID)),
        23 => format!("{}*", "x".repeat(MAX_ID + 1)),
        24 => format!("{}*", "é".repeat(MAX_ID / 2)),
        25 => "é".repeat(MAX_ID / 2 + 1),
        _ => "lobby".to_owned(),
    }
}

/// A string: from the pool, or up to 40 input bytes (lossy UTF-8).
fn string(input: &mut Input) -> String {
    let pick = input.u8();
    if pick < 0xc0 {
        pooled(pick % 26)
    } else {
        let n = usize::from(input.u8() % 41);
        String::from_utf8_lossy(input.bytes(n)).into_owned()
    }
}

/// A JSON number: near the clock and its leeway boundaries, fractional, negative, huge,
/// tiny, or any finite `f64` bit pattern.
fn number(input: &mut Input, now: u64, leeway: u64) -> Value {
    const FRACTIONS: [f64; 6] = [0.5, 0.25, 0.001, 1e-9, 0.999_999, 1.0 / 3.0];
    let delta = i64::from(input.u8() as i8);
    let around = |centre: i64| centre.saturating_add(delta);
    let now = now as i64;
    let leeway = leeway as i64;
    let float = |f: f64| Number::from_f64(f).map_or(Value::Null, Value::Number);
    match input.u8() % 14 {
        0 => Value::from(around(now)),
        1 => Value::from(around(now - leeway)),
        2 => Value::from(around(now + leeway)),
        3 => {
            let fraction = FRACTIONS[usize::from(input.u8()) % FRACTIONS.len()];
            let centre = [now, now - leeway, now + leeway][usize::from(input.u8() % 3)];
            float(around(centre) as f64 + fraction)
        }
        4 => Value::from(delta),
        5 => Value::from(u64::MAX),
        6 => Value::from(i64::MIN),
        7 => Value::from(input.u64()),
        8 => float(f64::from_bits(input.u64())),
        9 => {
            float([1e300, -1e300, 1e19, 9.3e18, 1.8446744073709552e19][usize::from(input.u8() % 5)])
        }
        10 => float([-0.0, 5e-324, -5e-324, 0.5, -0.5][usize::from(input.u8() % 5)]),
        11 => Value::from(u64::MAX - u64::from(input.u16())),
        12 => float(around(now) as f64 * 1000.0),
        _ => Value::from(i64::from(input.u32() as i32)),
    }
}

/// Any JSON value, nested at most `depth` deep.
fn any(input: &mut Input, now: u64, leeway: u64, depth: u8) -> Value {
    match input.u8() % if depth == 0 { 5 } else { 7 } {
        0 => Value::Null,
        1 => Value::Bool(input.u8() % 2 == 1),
        2 => number(input, now, leeway),
        3 | 4 => Value::String(string(input)),
        5 => {
            let n = input.u8() % 5;
            Value::Array((0..n).map(|_| any(input, now, leeway, depth - 1)).collect())
        }
        _ => {
            let n = input.u8() % 4;
            let mut object = Map::new();
            for _ in 0..n {
                object.insert(string(input), any(input, now, leeway, depth - 1));
            }
            Value::Object(object)
        }
    }
}

/// An array of strings, or (one time in eight) of strings and other values mixed.
fn strings(input: &mut Input, now: u64, leeway: u64) -> Value {
    let mixed = input.u8().is_multiple_of(8);
    let n = input.u8() % 7;
    Value::Array(
        (0..n)
            .map(|_| {
                if mixed && input.u8().is_multiple_of(2) {
                    any(input, now, leeway, 1)
                } else {
                    Value::String(string(input))
                }
            })
            .collect(),
    )
}

/// Claim types.
#[derive(Clone, Copy)]
enum Kind {
    String,
    Number,
    Audience,
    Strings,
}

/// A claim's value, or `None` to leave it out: mostly of its type, sometimes null or
/// of another type.
fn claim(input: &mut Input, kind: Kind, now: u64, leeway: u64) -> Option<Value> {
    let pick = input.u8();
    Some(match pick % 16 {
        0..=2 => return None,
        3 => Value::Null,
        4 | 5 => any(input, now, leeway, 2),
        _ => match kind {
            Kind::String => Value::String(string(input)),
            Kind::Number => number(input, now, leeway),
            Kind::Audience if pick.is_multiple_of(2) => Value::String(string(input)),
            Kind::Audience | Kind::Strings => strings(input, now, leeway),
        },
    })
}

/// The claims every structured input decodes to, with its clock and expectations.
#[derive(Debug)]
pub struct Case {
    /// The token's payload.
    pub payload: Value,
    /// The verifier's clock, seconds since the Unix epoch.
    pub now: u64,
    /// The verifier's expectations.
    pub expect: Expect,
    /// Room ids the grants are asked about (more are derived from the patterns).
    pub rooms: Vec<String>,
}

/// Decodes one structured case.
pub fn case(input: &mut Input) -> Case {
    let now = match input.u8() % 5 {
        0 | 1 => BASE_NOW,
        2 => BASE_NOW.wrapping_add_signed(i64::from(input.u16() as i16)),
        3 => u64::from(input.u8()),
        _ => input.u64() % MAX_NOW,
    };
    let leeway = match input.u8() % 5 {
        0 => 0,
        1 => 5,
        2 => u64::from(input.u8()),
        3 => u64::from(input.u16()),
        _ => u64::from(input.u32()),
    };
    let expected = |input: &mut Input, usual: &str| match input.u8() % 4 {
        0 => None,
        1 | 2 => Some(usual.to_owned()),
        _ => Some(string(input)),
    };
    let issuer = expected(input, ISSUER);
    let audience = expected(input, AUDIENCE);
    let expect = Expect {
        issuer,
        audience,
        leeway: Duration::from_secs(leeway),
    };
    let mut claims = Map::new();
    for (name, kind) in [
        ("sub", Kind::String),
        ("exp", Kind::Number),
        ("nbf", Kind::Number),
        ("iat", Kind::Number),
        ("iss", Kind::String),
        ("aud", Kind::Audience),
        ("rooms", Kind::Strings),
        ("publish", Kind::Strings),
    ] {
        if let Some(value) = claim(input, kind, now, leeway) {
            claims.insert(name.to_owned(), value);
        }
    }
    // Claims corecast does not read: ignored whatever they hold.
    for _ in 0..input.u8() % 3 {
        let name = ["role", "jti", "scope", "Sub", "EXP"][usize::from(input.u8() % 5)];
        claims.insert(name.to_owned(), any(input, now, leeway, 2));
    }
    let payload = match input.u8() {
        // Rarely, a payload that is not an object.
        0 => Value::Array(vec![Value::Object(claims)]),
        1 => Value::String("claims".into()),
        _ => Value::Object(claims),
    };
    let rooms = (0..input.u8() % 4).map(|_| string(input)).collect();
    Case {
        payload,
        now,
        expect,
        rooms,
    }
}

fn sign(payload: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = |s: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let header = serde_json::to_vec(&Header::new(Algorithm::HS256)).expect("a header");
    let input = format!("{}.{}", b64(&header), b64(payload));
    let signature = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &EncodingKey::from_secret(SECRET),
        Algorithm::HS256,
    )
    .expect("HS256 signs anything");
    format!("{input}.{signature}")
}

/// One decoded input, for triage (`cargo run --bin replay -- token FILE`).
pub fn explain(data: &[u8]) -> String {
    match data.split_first() {
        None => "empty input: nothing checked".to_owned(),
        Some((half, rest)) if half % 2 == 0 => {
            format!("raw token: {:?}", String::from_utf8_lossy(rest))
        }
        Some((_, rest)) => {
            let mut input = Input::new(rest);
            let (case, raw) = structured(&mut input);
            let payload = match raw {
                Some(bytes) => format!("{:?}", String::from_utf8_lossy(bytes)),
                None => case.payload.to_string(),
            };
            format!(
                "now {}, {:?}\npayload {payload}\nrooms asked {:?}",
                case.now, case.expect, case.rooms
            )
        }
    }
}

/// A structured case, and the raw payload bytes to sign instead when a byte asks.
fn structured<'a>(input: &mut Input<'a>) -> (Case, Option<&'a [u8]>) {
    let raw_payload = input.u8().is_multiple_of(8);
    let case = case(input);
    let raw = raw_payload.then(|| input.rest());
    (case, raw)
}

fn check_structured(input: &mut Input, skip: Skip) {
    let (case, raw) = structured(input);
    let verifier = hs256(case.expect.clone());
    if let Some(bytes) = raw {
        // The payload's bytes as they come: duplicate keys, numbers out of range,
        // escapes, anything. serde_json's `Value` keeps the last of duplicate keys
        // where the verifier refuses, so only acceptance is compared.
        let token = sign(bytes);
        if let Ok(identity) = verifier.verify(&token, case.now) {
            // RFC 7519 7.2: the claims set must be UTF-8 and valid JSON.
            let parsed = match std::str::from_utf8(bytes) {
                Err(_) if skip.ignored_claim_utf8 => {
                    serde_json::from_str(&String::from_utf8_lossy(bytes))
                }
                _ => serde_json::from_slice(bytes),
            };
            let payload: Value = parsed
                .unwrap_or_else(|e| panic!("accepted a payload that is not JSON ({e}): {bytes:?}"));
            let case = Case { payload, ..case };
            compare(&case, &verifier, Ok(identity), skip);
        }
        return;
    }
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &case.payload,
        &EncodingKey::from_secret(SECRET),
    )
    .expect("a JSON value signs");
    let outcome = verifier.verify(&token, case.now);
    compare(&case, &verifier, outcome, skip);
}

/// Why the model refuses a token; the verifier's message must name one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Not a JSON object, or a claim corecast reads of the wrong type.
    Shape,
    /// `exp` is past (with the leeway), or not a date this server can hold.
    Expired,
    /// `nbf` is in the future (with the leeway).
    NotYetValid,
    /// `iss` is not the expected issuer.
    Issuer,
    /// `aud` does not name the expected audience, or names one none is expected.
    Audience,
    /// `sub` is not a valid player id.
    Subject,
    /// A `rooms` or `publish` entry is neither a room id nor a prefix ending in `*`.
    Pattern,
}

impl Reason {
    /// The reason a verifier's refusal message gives.
    pub fn of_message(message: &str) -> Option<Self> {
        // By the start only: the rest may quote claims and expectations.
        let starts = |prefixes: &[&str]| prefixes.iter().any(|p| message.starts_with(p));
        Some(if starts(&["token JSON"]) {
            Self::Shape
        } else if starts(&["token expired", "token claim exp "]) {
            Self::Expired
        } else if starts(&["token not yet valid", "token claim nbf "]) {
            Self::NotYetValid
        } else if starts(&["token issuer "]) {
            Self::Issuer
        } else if starts(&["token audience ", "token has an aud claim"]) {
            Self::Audience
        } else if starts(&["token claim sub "]) {
            Self::Subject
        } else if starts(&["token claim rooms[", "token claim publish["]) {
            Self::Pattern
        } else {
            return None;
        })
    }
}

/// What the model accepts a token as.
#[derive(Debug)]
pub struct Accepted {
    /// `sub`.
    pub sub: String,
    /// `exp` in whole seconds (rounded down; beyond a u64, the largest).
    pub exp: u64,
    /// `rooms`, if present.
    pub rooms: Option<Vec<String>>,
    /// `publish`, if present.
    pub publish: Option<Vec<String>>,
}

impl Accepted {
    /// PROTOCOL.md: absent `rooms`, any room; an entry ending in `*` is a prefix.
    pub fn may_join(&self, room: &str) -> bool {
        self.rooms.as_ref().is_none_or(|p| any_matches(p, room))
    }

    /// PROTOCOL.md: absent `publish`, every room the player may join.
    pub fn may_publish(&self, room: &str) -> bool {
        match &self.publish {
            Some(p) => any_matches(p, room),
            None => self.may_join(room),
        }
    }
}

fn any_matches(patterns: &[String], room: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => room.starts_with(prefix),
        None => p == room,
    })
}

/// The model's verdict: accepted, or every reason to refuse (at least one), or
/// `Either` where the verifier's `f64` arithmetic may round an instant less than a
/// rounding step away from `now` onto `now`.
#[derive(Debug)]
pub enum Verdict {
    /// Accepted as this.
    Accept(Accepted),
    /// Refused for each of these.
    Refuse(Vec<Reason>),
    /// Accept or refuse: within rounding of the boundary.
    Either(Accepted),
}

/// Seconds as an exact integer part and fraction (`floor`, saturated to i128).
fn split(seconds: f64) -> (i128, f64) {
    let whole = seconds.floor();
    (whole as i128, seconds - whole)
}

/// How `seconds + shift` compares with `now`, exactly: Less, Equal, or Greater; and
/// whether it is Greater by less than an `f64` rounding step at `now`.
fn compare_exact(seconds: f64, shift: i128, now: u64) -> (std::cmp::Ordering, bool) {
    use std::cmp::Ordering::*;
    let (whole, fraction) = split(seconds);
    let whole = whole.saturating_add(shift);
    let now = i128::from(now);
    match whole.cmp(&now) {
        Equal if fraction > 0.0 => {
            let step = (now as f64).next_up() - now as f64;
            (Greater, fraction < step)
        }
        order => (order, false),
    }
}

/// The reference model: PROTOCOL.md's rules on the payload as JSON, at `now`.
///
/// Where PROTOCOL.md leaves a choice, the choice corecast documents (src/auth):
/// - a claim that is null counts as absent; `exp` and `sub` must be present;
/// - `iat` is not checked, but must be a number when present;
/// - times are JSON numbers, fractions allowed; `exp` before 1970 is refused;
/// - a leeway applies to `exp` and `nbf`: `exp + leeway > now >= nbf - leeway`;
/// - without an expected audience, a token with any `aud` is refused (RFC 7519 4.1.3);
/// - a `rooms`/`publish` entry that is not a room id (1 to 128 bytes) nor such an id's
///   prefix followed by one `*` refuses the token; `*` elsewhere is a literal.
pub fn model(payload: &Value, expect: &Expect, now: u64) -> Verdict {
    let Some(claims) = payload.as_object() else {
        return Verdict::Refuse(vec![Reason::Shape]);
    };
    let get = |name: &str| claims.get(name).filter(|v| !v.is_null());
    let is_string = |v: Option<&Value>| v.is_none_or(Value::is_string);
    let is_number = |v: Option<&Value>| v.is_none_or(Value::is_number);
    let is_strings = |v: Option<&Value>| {
        v.is_none_or(|v| v.as_array().is_some_and(|a| a.iter().all(Value::is_string)))
    };
    let shaped = claims.get("sub").is_some_and(Value::is_string)
        && claims.get("exp").is_some_and(Value::is_number)
        && is_number(get("nbf"))
        && is_number(get("iat"))
        && is_string(get("iss"))
        && (is_string(get("aud")) || is_strings(get("aud")))
        && is_strings(get("rooms"))
        && is_strings(get("publish"));
    if !shaped {
        return Verdict::Refuse(vec![Reason::Shape]);
    }
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let list = |name: &str| {
        get(name)
            .and_then(Value::as_array)
            .map(|a| a.iter().map(text).collect::<Vec<_>>())
    };
    let sub = text(&claims["sub"]);
    let exp = claims["exp"].as_f64().unwrap_or(f64::NAN);
    let leeway = i128::from(expect.leeway.as_secs());
    let mut reasons = Vec::new();
    let (mut exp_close, mut nbf_close) = (false, false);

    if exp < 0.0 {
        reasons.push(Reason::Expired);
    } else {
        let (order, close) = compare_exact(exp, leeway, now);
        if order != std::cmp::Ordering::Greater {
            reasons.push(Reason::Expired);
        }
        exp_close = close;
    }
    if let Some(nbf) = get("nbf").and_then(Value::as_f64) {
        let (order, close) = compare_exact(nbf, -leeway, now);
        if order == std::cmp::Ordering::Greater {
            reasons.push(Reason::NotYetValid);
        }
        nbf_close = close;
    }
    if let Some(wanted) = &expect.issuer {
        if get("iss").and_then(Value::as_str) != Some(wanted.as_str()) {
            reasons.push(Reason::Issuer);
        }
    }
    let audiences: Option<Vec<String>> = get("aud").map(|aud| match aud {
        Value::Array(all) => all.iter().map(text).collect(),
        one => vec![text(one)],
    });
    match (&expect.audience, &audiences) {
        (Some(wanted), Some(all)) if all.contains(wanted) => {}
        (None, None) => {}
        _ => reasons.push(Reason::Audience),
    }
    if sub.is_empty() || sub.len() > MAX_ID {
        reasons.push(Reason::Subject);
    }
    let rooms = list("rooms");
    let publish = list("publish");
    let valid_entry = |p: &String| {
        let id = p.strip_suffix('*').unwrap_or(p);
        !p.is_empty() && id.len() <= MAX_ID
    };
    if !rooms.iter().chain(&publish).flatten().all(valid_entry) {
        reasons.push(Reason::Pattern);
    }
    let exp_whole = if exp >= 18_446_744_073_709_551_616.0 {
        u64::MAX
    } else {
        exp.floor() as u64
    };
    let accepted = Accepted {
        sub,
        exp: exp_whole,
        rooms,
        publish,
    };
    // Rounding can only turn a Greater into an Equal: for `exp` a refusal (checked
    // first, so it may be the reason given whatever else is wrong), for `nbf` an
    // acceptance.
    match reasons.as_slice() {
        [] if exp_close => Verdict::Either(accepted),
        [] => Verdict::Accept(accepted),
        [Reason::NotYetValid] if nbf_close => Verdict::Either(accepted),
        _ => {
            if exp_close {
                reasons.push(Reason::Expired);
            }
            Verdict::Refuse(reasons)
        }
    }
}

/// Room ids to ask the grants about: the case's own, and for each pattern the pattern,
/// its prefix, that prefix cut short and extended.
fn rooms_to_ask(case: &Case, accepted: &Accepted) -> Vec<String> {
    let mut rooms = case.rooms.clone();
    rooms.extend(["", "lobby", "x", "*"].map(String::from));
    for pattern in accepted.rooms.iter().chain(&accepted.publish).flatten() {
        let prefix = pattern.strip_suffix('*').unwrap_or(pattern);
        rooms.push(pattern.clone());
        rooms.push(format!("{pattern}*"));
        rooms.push(format!("{prefix}x"));
        rooms.push(format!("{prefix}é"));
        let cuts: Vec<usize> = prefix.char_indices().map(|(i, _)| i).collect();
        for &cut in cuts.iter().take(4).chain(cuts.iter().rev().take(4)) {
            rooms.push(prefix[..cut].to_owned());
            rooms.push(format!("{}y", &prefix[..cut]));
        }
    }
    rooms
}

/// Compares the verifier's outcome with the model's verdict.
pub fn compare(
    case: &Case,
    verifier: &Verifier,
    outcome: Result<Identity, corecast::auth::TokenError>,
    skip: Skip,
) {
    let verdict = model(&case.payload, &case.expect, case.now);
    let (accepted, identity) = match (&verdict, outcome) {
        (Verdict::Refuse(reasons), Err(e)) => {
            let reason = Reason::of_message(&e.0);
            assert!(
                reason.is_some_and(|r| reasons.contains(&r)),
                "refused for {reason:?} ({:?}), the model's reasons are {reasons:?}: {case:#?}",
                e.0
            );
            return;
        }
        (Verdict::Either(_), Err(e)) => {
            let reason = Reason::of_message(&e.0);
            assert!(
                matches!(reason, Some(Reason::Expired | Reason::NotYetValid)),
                "refused near a time boundary for {:?}: {case:#?}",
                e.0
            );
            return;
        }
        (Verdict::Refuse(reasons), Ok(identity)) => {
            panic!("accepted as {identity:?}, the model refuses for {reasons:?}: {case:#?}")
        }
        (Verdict::Accept(accepted) | Verdict::Either(accepted), Ok(identity)) => {
            (accepted, identity)
        }
        (Verdict::Accept(accepted), Err(e)) => {
            panic!(
                "refused ({:?}), the model accepts as {accepted:?}: {case:#?}",
                e.0
            )
        }
    };
    assert_eq!(identity.sub, accepted.sub, "sub: {case:#?}");
    assert_eq!(identity.exp, accepted.exp, "exp: {case:#?}");
    for room in rooms_to_ask(case, accepted) {
        assert_eq!(
            identity.grants.may_join(&room),
            accepted.may_join(&room),
            "may_join({room:?}): {case:#?}"
        );
        assert_eq!(
            identity.grants.may_publish(&room),
            accepted.may_publish(&room),
            "may_publish({room:?}): {case:#?}"
        );
    }
    check_deadline(case, verifier, &identity, skip);
}

/// The session is closed when the token stops verifying: `exp + leeway` seconds after
/// the epoch, counted from the clock's `now`; an `exp` further than
/// `MAX_SESSION_SECS` (about a century) ahead counts as that (src/auth).
fn check_deadline(case: &Case, verifier: &Verifier, identity: &Identity, skip: Skip) {
    let leeway = case.expect.leeway.as_secs();
    let left = identity.exp.saturating_add(leeway).saturating_sub(case.now);
    let overflows = identity.exp.checked_add(leeway).is_none() || left > MAX_SESSION_SECS;
    if overflows && skip.deadline_overflow {
        return;
    }
    let start = Instant::now();
    let deadline = verifier.deadline(identity, start, case.now);
    let expected = start + Duration::from_secs(left.min(MAX_SESSION_SECS));
    assert_eq!(deadline, expected, "deadline: {case:#?}");
}
