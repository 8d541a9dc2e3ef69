//! Signed identity tokens (PROTOCOL.md, "Signed identity tokens (JWT)"): verifying a
//! login's token into an [`Identity`], and minting tokens (`corecast token`, tests,
//! the load-test harness).
//!
//! `jsonwebtoken` checks the signature and that the header's algorithm is the one
//! configured (so `none`, and an HS256 token "signed" with an RSA public key, fail).
//! Every claim is then checked here, against a clock the caller passes in: `exp`
//! (required), `nbf`, `iss`, `aud`, `sub`, `rooms`, `publish`, each with its own error.

pub mod cli;
pub mod patterns;
pub mod secret;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::wire::MAX_ID_BYTES;
pub use patterns::RoomPatterns;

/// Longest token accepted, in bytes (checked before any parsing).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Shortest HS256 secret accepted: 256 bits, the size of the hash (RFC 7518, 3.2).
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// The longest a session may last on one token, in seconds (about 100 years): a
/// later `exp` is accepted and counts as this.
pub const MAX_SESSION_SECS: u64 = 100 * 365 * 24 * 3600;

/// Default `--jwt-leeway`, in seconds: the clock skew allowed between the token's
/// issuer and this server, on `exp` and `nbf`.
pub const DEFAULT_LEEWAY_SECS: u64 = 5;

/// Why a key or a verifier could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

/// Why a token was refused. The message is what the client reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TokenError(pub String);

fn refuse(message: impl Into<String>) -> TokenError {
    TokenError(message.into())
}

/// What a verified token says: who the player is, until when, and where it may go.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The `sub` claim: the player id.
    pub sub: String,
    /// The `exp` claim, in seconds since the Unix epoch.
    pub exp: u64,
    /// The `rooms` and `publish` claims, compiled.
    pub grants: Grants,
}

/// Where a session may join and send (absent claims allow everything).
#[derive(Debug, Clone, Default)]
pub struct Grants {
    rooms: Option<RoomPatterns>,
    publish: Option<RoomPatterns>,
}

impl Grants {
    /// Grants of the given claims, compiled.
    pub fn compile<S: AsRef<str>>(rooms: Option<&[S]>, publish: Option<&[S]>) -> Self {
        Self {
            rooms: rooms.map(RoomPatterns::compile),
            publish: publish.map(RoomPatterns::compile),
        }
    }

    /// Whether the `rooms` claim lets the session join `room` (absent: any room).
    pub fn may_join(&self, room: &str) -> bool {
        self.rooms.as_ref().is_none_or(|p| p.matches(room))
    }

    /// Whether the `publish` claim lets the session send in `room` (absent: every
    /// room it may join).
    pub fn may_publish(&self, room: &str) -> bool {
        match &self.publish {
            Some(p) => p.matches(room),
            None => self.may_join(room),
        }
    }
}

/// The claims corecast reads. Unknown claims are ignored; a known one of the wrong
/// type refuses the token.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    /// The player id.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch (a JSON number; a fraction is allowed).
    #[serde(serialize_with = "numeric_date")]
    pub exp: f64,
    /// Not before, seconds since the Unix epoch.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "optional_numeric_date"
    )]
    pub nbf: Option<f64>,
    /// Issued at (informational).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "optional_numeric_date"
    )]
    pub iat: Option<f64>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience: one string or an array of strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    /// Rooms the player may join: ids, or prefixes ending in `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
    /// Rooms the player may send in, same form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<Vec<String>>,
}

/// A NumericDate as JSON: an integer when it is whole (what every JWT library
/// expects), else the fraction.
fn numeric_date<S: serde::Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
    if value.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(value) {
        s.serialize_u64(*value as u64)
    } else {
        s.serialize_f64(*value)
    }
}

// serde's `serialize_with` hands an `Option` field over by reference.
#[allow(clippy::ref_option)]
fn optional_numeric_date<S: serde::Serializer>(
    value: &Option<f64>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => numeric_date(v, s),
        None => s.serialize_none(),
    }
}

/// The `aud` claim (RFC 7519, 4.1.3): one string or an array of them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Audience {
    /// One audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, wanted: &str) -> bool {
        match self {
            Audience::One(a) => a == wanted,
            Audience::Many(all) => all.iter().any(|a| a == wanted),
        }
    }
}

/// What a server checks besides the signature.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// `--jwt-issuer`: `iss` must equal it.
    pub issuer: Option<String>,
    /// `--jwt-audience`: `aud` must contain it. Without it, a token with an `aud`
    /// claim is refused (it was meant for some other service).
    pub audience: Option<String>,
    /// `--jwt-leeway`: clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
}

/// Verifies login tokens with one key and one algorithm.
pub struct Verifier {
    key: DecodingKey,
    algorithm: Algorithm,
    validation: Validation,
    expect: Expect,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithm", &self.algorithm)
            .field("expect", &self.expect)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// An HS256 verifier with a shared secret of at least 32 bytes.
    pub fn hs256(secret: &[u8], expect: Expect) -> Result<Self, KeyError> {
        long_enough(secret)?;
        Ok(Self::new(
            DecodingKey::from_secret(secret),
            Algorithm::HS256,
            expect,
        ))
    }

    /// A verifier with a public key in PEM: RSA (RS256), EC P-256 (ES256) or Ed25519
    /// (EdDSA), told apart by the key itself.
    pub fn public_pem(pem: &[u8], expect: Expect) -> Result<Self, KeyError> {
        let algorithm = pem_algorithm(pem)?;
        let key = match algorithm {
            Algorithm::RS256 => DecodingKey::from_rsa_pem(pem),
            Algorithm::ES256 => DecodingKey::from_ec_pem(pem),
            _ => DecodingKey::from_ed_pem(pem),
        }
        .map_err(|e| KeyError(format!("not a usable {algorithm:?} public key: {e}")))?;
        Ok(Self::new(key, algorithm, expect))
    }

    fn new(key: DecodingKey, algorithm: Algorithm, expect: Expect) -> Self {
        // jsonwebtoken checks the signature and the algorithm only; the claims are
        // checked in `check_claims`, against the caller's clock.
        let mut validation = Validation::new(algorithm);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        Self {
            key,
            algorithm,
            validation,
            expect,
        }
    }

    /// The algorithm every token must be signed with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The clock skew allowed on `exp` and `nbf`.
    pub fn leeway(&self) -> Duration {
        self.expect.leeway
    }

    /// Verifies `token` at `now_unix` (seconds since the Unix epoch).
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<Identity, TokenError> {
        if token.is_empty() {
            return Err(refuse("a signed token (JWT) is required as bearer.token"));
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(refuse(format!(
                "token is {} bytes, more than {MAX_TOKEN_BYTES}",
                token.len()
            )));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| refuse(format!("token header: {}", describe(&e))))?;
        if header.alg != self.algorithm {
            return Err(refuse(format!(
                "token is signed with {:?}; this server accepts {:?} only",
                header.alg, self.algorithm
            )));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| refuse(describe(&e)))?;
        // serde_json skips an unknown claim without checking its string is UTF-8;
        // JSON is UTF-8 (RFC 8259, 8.1), so a payload that is not is refused whole.
        if !payload_is_utf8(token) {
            return Err(refuse("token payload is not UTF-8"));
        }
        self.check_claims(data.claims, now_unix)
    }

    fn check_claims(&self, claims: Claims, now_unix: u64) -> Result<Identity, TokenError> {
        let leeway = self.expect.leeway.as_secs_f64();
        let now = now_unix as f64;
        if !(claims.exp.is_finite() && claims.exp >= 0.0) {
            return Err(refuse("token claim exp must be a NumericDate (seconds)"));
        }
        if claims.exp + leeway <= now {
            return Err(refuse("token expired"));
        }
        if let Some(nbf) = claims.nbf {
            if !nbf.is_finite() {
                return Err(refuse("token claim nbf must be a NumericDate (seconds)"));
            }
            if nbf - leeway > now {
                return Err(refuse("token not yet valid (nbf is in the future)"));
            }
        }
        if let Some(wanted) = &self.expect.issuer {
            if claims.iss.as_deref() != Some(wanted.as_str()) {
                return Err(refuse(format!(
                    "token issuer {:?} is not the expected {wanted:?}",
                    claims.iss.as_deref().unwrap_or("(none)")
                )));
            }
        }
        match (&self.expect.audience, &claims.aud) {
            (Some(wanted), Some(aud)) if aud.contains(wanted) => {}
            (Some(wanted), _) => {
                return Err(refuse(format!(
                    "token audience does not include {wanted:?}"
                )));
            }
            (None, Some(_)) => {
                return Err(refuse(
                    "token has an aud claim but this server expects none (--jwt-audience)",
                ));
            }
            (None, None) => {}
        }
        if claims.sub.is_empty() || claims.sub.len() > MAX_ID_BYTES {
            return Err(refuse(format!(
                "token claim sub must be 1 to {MAX_ID_BYTES} bytes, got {}",
                claims.sub.len()
            )));
        }
        for (name, list) in [("rooms", &claims.rooms), ("publish", &claims.publish)] {
            for (i, pattern) in list.iter().flatten().enumerate() {
                let id = pattern.strip_suffix('*').unwrap_or(pattern);
                if pattern.is_empty() || id.len() > MAX_ID_BYTES {
                    return Err(refuse(format!(
                        "token claim {name}[{i}] must be a room id of 1 to {MAX_ID_BYTES} \
                         bytes or a prefix ending in *, got {} bytes",
                        pattern.len()
                    )));
                }
            }
        }
        let grants = Grants::compile(claims.rooms.as_deref(), claims.publish.as_deref());
        Ok(Identity {
            sub: claims.sub,
            // Past the checks above, exp + leeway > now >= 0.
            exp: claims.exp as u64,
            grants,
        })
    }

    /// When a session logged in with `identity` at `now` (read with `now_unix`) must
    /// be closed: at `exp` plus the leeway, when the token stops verifying. An `exp`
    /// further out than [`MAX_SESSION_SECS`] counts as that far (`Instant` cannot
    /// hold any date: a token valid until the year 3000 must not overflow it).
    pub fn deadline(&self, identity: &Identity, now: Instant, now_unix: u64) -> Instant {
        let left = identity
            .exp
            .saturating_add(self.expect.leeway.as_secs())
            .saturating_sub(now_unix)
            .min(MAX_SESSION_SECS);
        now.checked_add(Duration::from_secs(left)).unwrap_or(now)
    }
}

/// Whether the claims part of a compact JWT (already verified, so well formed) decodes
/// to UTF-8.
fn payload_is_utf8(token: &str) -> bool {
    let Some(payload) = token.split('.').nth(1) else {
        return false;
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .is_ok_and(|bytes| std::str::from_utf8(&bytes).is_ok())
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidToken => "not a compact JWT (three base64url parts)".into(),
        ErrorKind::InvalidSignature => "token signature does not verify".into(),
        ErrorKind::InvalidAlgorithm => "token algorithm does not match the key".into(),
        ErrorKind::Base64(e) => format!("token is not base64url: {e}"),
        ErrorKind::Json(e) => format!("token JSON: {e}"),
        ErrorKind::Utf8(e) => format!("token is not UTF-8: {e}"),
        other => format!("token refused: {other:?}"),
    }
}

/// A signing key for minting tokens.
pub struct Signer {
    key: EncodingKey,
    algorithm: Algorithm,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// An HS256 signer (the secret must be at least 32 bytes, as the server's).
    pub fn hs256(secret: &[u8]) -> Result<Self, KeyError> {
        long_enough(secret)?;
        Ok(Self {
            key: EncodingKey::from_secret(secret),
            algorithm: Algorithm::HS256,
        })
    }

    /// A signer with a PKCS#8 private key in PEM (RSA: also PKCS#1): RS256, ES256
    /// (P-256) or EdDSA (Ed25519), told apart by the key.
    pub fn private_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let algorithm = pem_algorithm(pem)?;
        let key = match algorithm {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pem),
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem),
            _ => EncodingKey::from_ed_pem(pem),
        }
        .map_err(|e| KeyError(format!("not a usable {algorithm:?} private key: {e}")))?;
        Ok(Self { key, algorithm })
    }

    /// The algorithm this signer uses.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Signs `claims` into a compact JWT.
    pub fn sign(&self, claims: &Claims) -> Result<String, KeyError> {
        jsonwebtoken::encode(&Header::new(self.algorithm), claims, &self.key)
            .map_err(|e| KeyError(format!("signing failed: {e}")))
    }
}

/// Refuses an HS256 secret shorter than [`MIN_HS256_SECRET_BYTES`] (signing and
/// verifying alike).
fn long_enough(secret: &[u8]) -> Result<(), KeyError> {
    if secret.len() < MIN_HS256_SECRET_BYTES {
        return Err(KeyError(format!(
            "the HS256 secret is {} bytes; it must be at least {MIN_HS256_SECRET_BYTES} \
             (256 bits, e.g. `openssl rand -base64 48`)",
            secret.len()
        )));
    }
    Ok(())
}

/// The algorithm a PEM key (public or private) is for, from its algorithm identifier:
/// rsaEncryption is RS256, an EC key on P-256 is ES256, Ed25519 is EdDSA.
fn pem_algorithm(pem: &[u8]) -> Result<Algorithm, KeyError> {
    let text = std::str::from_utf8(pem).map_err(|_| KeyError("the key file is not PEM".into()))?;
    let Some(begin) = text.lines().find(|l| l.starts_with("-----BEGIN ")) else {
        return Err(KeyError(
            "the key file is not PEM (no -----BEGIN line)".into(),
        ));
    };
    if begin.contains("RSA ") {
        return Ok(Algorithm::RS256); // PKCS#1
    }
    if begin.contains("CERTIFICATE") {
        return Err(KeyError(
            "the key file holds a certificate; give the public key (`openssl x509 -pubkey -noout`)"
                .into(),
        ));
    }
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN "))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END "))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .map_err(|e| KeyError(format!("the key file's PEM body is not base64: {e}")))?;
    const RSA: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    ];
    const ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
    const EC: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let has = |oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
    if has(ED25519) {
        Ok(Algorithm::EdDSA)
    } else if has(P256) {
        Ok(Algorithm::ES256)
    } else if has(EC) || begin.contains("EC ") {
        Err(KeyError(
            "an EC key on a curve other than P-256: only ES256 (P-256) is supported".into(),
        ))
    } else if has(RSA) {
        Ok(Algorithm::RS256)
    } else {
        Err(KeyError(
            "unsupported key: give an RSA, EC P-256 or Ed25519 key in PEM".into(),
        ))
    }
}

#[cfg(test)]
mod tests;
