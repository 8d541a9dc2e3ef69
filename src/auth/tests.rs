use super::*;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-secret";
const NOW: u64 = 1_800_000_000;

fn claims(sub: &str) -> Claims {
    Claims {
        sub: sub.into(),
        exp: (NOW + 600) as f64,
        ..Claims::default()
    }
}

fn hs256(expect: Expect) -> (Signer, Verifier) {
    (
        Signer::hs256(SECRET).unwrap(),
        Verifier::hs256(SECRET, expect).unwrap(),
    )
}

fn refused(verifier: &Verifier, token: &str) -> String {
    verifier.verify(token, NOW).unwrap_err().0
}

/// (private PKCS#8 PEM, public SPKI PEM) for Ed25519 or P-256, from ring via rcgen.
fn pair(alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    (key.serialize_pem(), key.public_key_pem())
}

/// An RSA key pair from the openssl command line (ring cannot generate RSA keys).
fn rsa_pair() -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("rsa.pem");
    let public = dir.path().join("rsa.pub.pem");
    let run = |args: &[&std::ffi::OsStr]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl (scripts/test installs it)");
        assert!(status.success());
    };
    run(&[
        "genpkey".as_ref(),
        "-algorithm".as_ref(),
        "RSA".as_ref(),
        "-pkeyopt".as_ref(),
        "rsa_keygen_bits:2048".as_ref(),
        "-out".as_ref(),
        private.as_os_str(),
    ]);
    run(&[
        "pkey".as_ref(),
        "-in".as_ref(),
        private.as_os_str(),
        "-pubout".as_ref(),
        "-out".as_ref(),
        public.as_os_str(),
    ]);
    (
        std::fs::read_to_string(private).unwrap(),
        std::fs::read_to_string(public).unwrap(),
    )
}

#[test]
fn a_good_token_gives_its_identity_and_grants() {
    let (signer, verifier) = hs256(Expect::default());
    let token = signer
        .sign(&Claims {
            rooms: Some(vec!["lobby".into(), "match-*".into()]),
            publish: Some(vec!["match-*".into()]),
            ..claims("alice")
        })
        .unwrap();
    let identity = verifier.verify(&token, NOW).unwrap();
    assert_eq!(identity.sub, "alice");
    assert_eq!(identity.exp, NOW + 600);
    let g = &identity.grants;
    assert!(g.may_join("lobby") && g.may_join("match-7") && !g.may_join("private"));
    assert!(g.may_publish("match-7") && !g.may_publish("lobby"));
}

#[test]
fn absent_claims_allow_everything_and_absent_publish_follows_rooms() {
    let all = Grants::default();
    assert!(all.may_join("x") && all.may_publish("x"));
    let rooms_only = Grants::compile(Some(&["a", "b*"]), None);
    assert!(rooms_only.may_publish("a") && rooms_only.may_publish("bz"));
    assert!(!rooms_only.may_publish("c"));
    let listen_only = Grants::compile(Some(&["a"]), Some(&[] as &[&str]));
    assert!(listen_only.may_join("a") && !listen_only.may_publish("a"));
}

#[test]
fn expiry_and_not_before_with_the_leeway() {
    let expect = Expect {
        leeway: Duration::from_secs(5),
        ..Expect::default()
    };
    let (signer, verifier) = hs256(expect);
    let at = |exp: u64, nbf: Option<u64>| {
        let token = signer
            .sign(&Claims {
                exp: exp as f64,
                nbf: nbf.map(|n| n as f64),
                ..claims("a")
            })
            .unwrap();
        verifier.verify(&token, NOW).map(|_| ()).map_err(|e| e.0)
    };
    assert_eq!(at(NOW - 5, None), Err("token expired".into()));
    assert_eq!(at(NOW - 4, None), Ok(()), "within the leeway");
    assert_eq!(
        at(NOW + 60, Some(NOW + 6)),
        Err("token not yet valid (nbf is in the future)".into())
    );
    assert_eq!(at(NOW + 60, Some(NOW + 5)), Ok(()), "within the leeway");
    // The session ends when the token would stop verifying: exp + leeway.
    let identity = verifier
        .verify(&signer.sign(&claims("a")).unwrap(), NOW)
        .unwrap();
    let now = Instant::now();
    assert_eq!(
        verifier.deadline(&identity, now, NOW),
        now + Duration::from_secs(605)
    );
}

#[test]
fn exp_is_required_and_must_be_a_number() {
    let (_, verifier) = hs256(Expect::default());
    let forge = |payload: &str| {
        let header = jsonwebtoken::Header::new(Algorithm::HS256);
        let b64 = |s: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let signing_input = format!(
            "{}.{}",
            b64(&serde_json::to_vec(&header).unwrap()),
            b64(payload.as_bytes())
        );
        let key = EncodingKey::from_secret(SECRET);
        let signature =
            jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, Algorithm::HS256).unwrap();
        format!("{signing_input}.{signature}")
    };
    let cases = [
        (r#"{"sub":"a"}"#, "missing field `exp`"),
        (r#"{"sub":"a","exp":"soon"}"#, "invalid type"),
        (r#"{"exp":1900000000}"#, "missing field `sub`"),
        (r#"{"sub":7,"exp":1900000000}"#, "invalid type"),
        (
            r#"{"sub":"a","exp":1900000000,"rooms":"lobby"}"#,
            "invalid type",
        ),
        (
            r#"{"sub":"a","exp":1900000000,"rooms":[1]}"#,
            "invalid type",
        ),
        (
            r#"{"sub":"a","exp":1900000000,"publish":{}}"#,
            "invalid type",
        ),
        (r#"{"sub":"a","exp":1900000000,"nbf":null}"#, ""),
        (
            r#"{"sub":"a","exp":1900000000,"nbf":"now"}"#,
            "invalid type",
        ),
        (r#"{"sub":"a","exp":1900000000,"iat":[]}"#, "invalid type"),
        (r#"{"sub":"a","exp":1900000000,"iss":5}"#, "invalid type"),
        (
            r#"{"sub":"a","exp":1900000000,"aud":[5]}"#,
            "did not match any variant",
        ),
        (
            r#"{"sub":"a","exp":1900000000,"publish":[null]}"#,
            "invalid type",
        ),
        (r#"{"sub":"a","exp":1e400}"#, "number out of range"),
        (r#"{"sub":"a","exp":1900000000,"unknown":{"x":[1,2]}}"#, ""),
        (
            r#"{"sub":"a","exp":1900000000,"rooms":["*"],"publish":["x*"]}"#,
            "",
        ),
        (r#"{"sub":"a","exp":-1}"#, "exp must be a NumericDate"),
        (
            r#"{"sub":"a","exp":1900000000,"aud":5}"#,
            "did not match any variant",
        ),
        (
            r#"{"sub":"","exp":1900000000}"#,
            "sub must be 1 to 128 bytes",
        ),
        (
            r#"{"sub":"a","exp":1900000000,"rooms":[""]}"#,
            "rooms[0] must be",
        ),
        (r#"[1,2]"#, "invalid type"),
        (r#"not json"#, "token JSON"),
    ];
    for (payload, expected) in cases {
        let result = verifier.verify(&forge(payload), NOW);
        if expected.is_empty() {
            assert!(result.is_ok(), "{payload}: {result:?}");
        } else {
            let e = result.unwrap_err().0;
            assert!(e.contains(expected), "{payload}: {e}");
        }
    }
    let long = format!(r#"{{"sub":"{}","exp":1900000000}}"#, "x".repeat(129));
    assert!(refused(&verifier, &forge(&long)).contains("sub must be 1 to 128 bytes"));
}

#[test]
fn issuer_and_audience() {
    let expect = Expect {
        issuer: Some("matchmaker".into()),
        audience: Some("corecast".into()),
        ..Expect::default()
    };
    let (signer, verifier) = hs256(expect);
    let sign = |iss: Option<&str>, aud: Option<Audience>| {
        signer
            .sign(&Claims {
                iss: iss.map(Into::into),
                aud,
                ..claims("a")
            })
            .unwrap()
    };
    let one = |a: &str| Some(Audience::One(a.into()));
    assert!(verifier
        .verify(&sign(Some("matchmaker"), one("corecast")), NOW)
        .is_ok());
    let many = Some(Audience::Many(vec!["x".into(), "corecast".into()]));
    assert!(verifier
        .verify(&sign(Some("matchmaker"), many), NOW)
        .is_ok());
    assert!(refused(&verifier, &sign(Some("mallory"), one("corecast"))).contains("issuer"));
    assert!(refused(&verifier, &sign(None, one("corecast"))).contains("issuer"));
    assert!(refused(&verifier, &sign(Some("matchmaker"), one("other"))).contains("audience"));
    assert!(refused(&verifier, &sign(Some("matchmaker"), None)).contains("audience"));
    // A server that expects no audience refuses a token meant for some other service.
    let (signer, plain) = hs256(Expect::default());
    let token = signer
        .sign(&Claims {
            aud: one("billing"),
            ..claims("a")
        })
        .unwrap();
    assert!(refused(&plain, &token).contains("aud claim"));
}

#[test]
fn wrong_keys_and_wrong_algorithms_fail() {
    let (signer, verifier) = hs256(Expect::default());
    let good = signer.sign(&claims("a")).unwrap();
    assert!(verifier.verify(&good, NOW).is_ok());
    let other = Signer::hs256(b"another secret, also 32 bytes or more").unwrap();
    let forged = other.sign(&claims("a")).unwrap();
    assert_eq!(
        refused(&verifier, &forged),
        "token signature does not verify"
    );

    // alg none: header says none, no signature.
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&serde_json::to_string(&claims("a")).unwrap())
    );
    assert!(refused(&verifier, &none).contains("token header"));

    // An asymmetric server refuses HS256 signed with its own public key as the secret.
    let (rsa_private, rsa_public) = rsa_pair();
    let rs = Verifier::public_pem(rsa_public.as_bytes(), Expect::default()).unwrap();
    assert_eq!(rs.algorithm(), Algorithm::RS256);
    let confused = Signer {
        key: EncodingKey::from_secret(rsa_public.as_bytes()),
        algorithm: Algorithm::HS256,
    }
    .sign(&claims("a"))
    .unwrap();
    assert_eq!(
        refused(&rs, &confused),
        "token is signed with HS256; this server accepts RS256 only"
    );
    let rs_token = Signer::private_pem(rsa_private.as_bytes())
        .unwrap()
        .sign(&claims("a"))
        .unwrap();
    assert!(rs.verify(&rs_token, NOW).is_ok());
    // And an HS256 server refuses an RS256 token.
    assert!(refused(&verifier, &rs_token).contains("signed with RS256"));

    // Garbage.
    for junk in [
        "",
        "a",
        "a.b",
        "a.b.c",
        "....",
        "eyJ.eyJ.x",
        &"x".repeat(20_000),
    ] {
        assert!(verifier.verify(junk, NOW).is_err(), "{junk:.20}");
    }
    assert!(refused(&verifier, &"x".repeat(MAX_TOKEN_BYTES + 1)).contains("more than"));
}

#[test]
fn asymmetric_keys_are_told_apart_by_the_key() {
    for (alg, expected) in [
        (&rcgen::PKCS_ED25519, Algorithm::EdDSA),
        (&rcgen::PKCS_ECDSA_P256_SHA256, Algorithm::ES256),
    ] {
        let (private, public) = pair(alg);
        let signer = Signer::private_pem(private.as_bytes()).unwrap();
        let verifier = Verifier::public_pem(public.as_bytes(), Expect::default()).unwrap();
        assert_eq!(
            (signer.algorithm(), verifier.algorithm()),
            (expected, expected)
        );
        let token = signer.sign(&claims("bob")).unwrap();
        assert_eq!(verifier.verify(&token, NOW).unwrap().sub, "bob");
        // Another key of the same kind does not verify it.
        let (_, stranger) = pair(alg);
        let stranger = Verifier::public_pem(stranger.as_bytes(), Expect::default()).unwrap();
        assert_eq!(
            refused(&stranger, &token),
            "token signature does not verify"
        );
    }
    let (p384, _) = pair(&rcgen::PKCS_ECDSA_P384_SHA384);
    let e = Signer::private_pem(p384.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.contains("P-256"), "{e}");
    assert!(Verifier::public_pem(b"not a key", Expect::default()).is_err());
    assert!(Verifier::hs256(b"short", Expect::default())
        .unwrap_err()
        .to_string()
        .contains("at least 32"));
}

#[test]
fn minted_dates_are_integers_when_whole() {
    let json = serde_json::to_string(&Claims {
        nbf: Some(5.0),
        iat: Some(1.5),
        ..claims("a")
    })
    .unwrap();
    assert!(json.contains(&format!(r#""exp":{}"#, NOW + 600)), "{json}");
    assert!(
        json.contains(r#""nbf":5,"#) && json.contains(r#""iat":1.5"#),
        "{json}"
    );
}

#[test]
fn an_exp_far_in_the_future_neither_overflows_nor_expires() {
    let (signer, verifier) = hs256(Expect {
        leeway: Duration::from_secs(5),
        ..Expect::default()
    });
    let now = Instant::now();
    for exp in [1e12, 1.8446744073709552e19, 1e300] {
        let token = signer.sign(&Claims { exp, ..claims("a") }).unwrap();
        let identity = verifier.verify(&token, NOW).unwrap();
        let deadline = verifier.deadline(&identity, now, NOW);
        assert!(
            deadline >= now + Duration::from_secs(MAX_SESSION_SECS),
            "{exp}"
        );
    }
}

#[test]
fn a_payload_that_is_not_utf8_is_refused() {
    let (_, verifier) = hs256(Expect::default());
    let header = jsonwebtoken::Header::new(Algorithm::HS256);
    let b64 = |s: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let mut payload = br#"{"sub":"a","exp":1900000000,"x":""#.to_vec();
    payload.extend_from_slice(&[0xff, 0xfe]);
    payload.extend_from_slice(br#""}"#);
    let input = format!(
        "{}.{}",
        b64(&serde_json::to_vec(&header).unwrap()),
        b64(&payload)
    );
    let key = EncodingKey::from_secret(SECRET);
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256).unwrap();
    let e = refused(&verifier, &format!("{input}.{signature}"));
    assert!(e.contains("UTF-8"), "{e}");
}
