use super::*;
use crate::secret::Secret;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test";

/// HS256 with one unnamed key, 15-minute access tokens, no issuer or audience.
pub(crate) fn settings() -> TokenSettings {
    TokenSettings {
        keys: vec![RingKey::hmac(None, &Secret::new(SECRET.to_vec()))],
        algorithm: Algorithm::HS256,
        access_ttl: Duration::from_secs(900),
        refresh_ttl: Duration::from_secs(7 * 86400),
        leeway_seconds: 0,
        issuer: None,
        audience: None,
        verify_cache_size: 64,
        max_lifetime: Duration::from_secs(900),
    }
}

fn manager() -> TokenManager {
    TokenManager::new(&settings())
}

fn spec(kind: TokenKind) -> TokenSpec<'static> {
    TokenSpec { user_id: "42", role: Some("user"), kind, session_id: "s1", ttl: None, jti: None }
}

/// Signs arbitrary claims with arbitrary header and key, as an attacker or another issuer would.
fn forge(alg: Algorithm, key: &[u8], claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(key)).unwrap()
}

fn good_claims() -> serde_json::Value {
    let now = unix_now();
    serde_json::json!({"user_id": "42", "role": "admin", "type": "access", "exp": now + 600, "iat": now, "jti": "j", "sid": "s"})
}

fn b64(s: &str) -> String {
    use std::fmt::Write;
    // base64url without padding, enough for test headers
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, &x| acc << 8 | x as u32) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.write_char(T[((n >> (18 - 6 * i)) & 63) as usize] as char).unwrap();
        }
    }
    out
}

#[test]
fn a_minted_access_token_verifies_with_all_claims() {
    let m = manager();
    let t = m.create_token(&spec(TokenKind::Access)).unwrap();
    let c = m.verify(&t, TokenKind::Access).unwrap();
    assert_eq!(c.user_id, "42");
    assert_eq!(c.role.as_deref(), Some("user"));
    assert_eq!(c.kind, "access");
    assert_eq!(c.sid, "s1");
    assert_eq!(c.exp - c.iat, 900);
    assert!(!c.jti.is_empty());
}

#[test]
fn a_pair_has_distinct_kinds_and_default_lifetimes() {
    let m = manager();
    let pair = m.create_token_pair("7", "viewer", "sess").unwrap();
    assert_eq!(pair.expires_in, 900);
    let a = m.verify(&pair.access_token, TokenKind::Access).unwrap();
    let r = m.verify(&pair.refresh_token, TokenKind::Refresh).unwrap();
    assert_eq!(r.exp - r.iat, 7 * 86400);
    assert_eq!(r.role, None);
    assert_eq!((a.sid.as_str(), r.sid.as_str()), ("sess", "sess"));
    assert_ne!(a.jti, r.jti);
}

#[test]
fn a_refresh_token_is_never_an_access_token_and_vice_versa() {
    let m = manager();
    let refresh = m.create_refresh_token("1", "s").unwrap();
    let access = m.create_access_token("1", "admin", "s").unwrap();
    assert_eq!(m.verify(&refresh, TokenKind::Access), Err(TokenError::WrongType(TokenKind::Access)));
    assert_eq!(m.verify(&access, TokenKind::Refresh), Err(TokenError::WrongType(TokenKind::Refresh)));
    let mut other = good_claims();
    other["type"] = "id".into();
    assert_eq!(m.verify(&forge(Algorithm::HS256, SECRET, &other), TokenKind::Access), Err(TokenError::WrongType(TokenKind::Access)));
}

#[test]
fn refreshing_keeps_user_and_session_and_takes_the_current_role() {
    let m = manager();
    let refresh = m.create_refresh_token("9", "sess-9").unwrap();
    let access = m.refresh_access_token(&refresh, "admin").unwrap();
    let c = m.verify(&access, TokenKind::Access).unwrap();
    assert_eq!((c.user_id.as_str(), c.role.as_deref(), c.sid.as_str()), ("9", Some("admin"), "sess-9"));
    let not_refresh = m.create_access_token("9", "user", "s").unwrap();
    assert!(m.refresh_access_token(&not_refresh, "admin").is_err());
}

#[test]
fn expired_tokens_are_refused_and_leeway_is_honoured() {
    let m = manager();
    let past = unix_now() - 1000;
    let t = m.create_token_at(&TokenSpec { ttl: Some(Duration::from_secs(100)), ..spec(TokenKind::Access) }, past).unwrap();
    assert_eq!(m.verify(&t, TokenKind::Access), Err(TokenError::Expired));
    let lenient = TokenManager::new(&TokenSettings { leeway_seconds: 1200, ..settings() });
    assert!(lenient.verify(&t, TokenKind::Access).is_ok());
}

#[test]
fn exp_is_required() {
    let mut c = good_claims();
    c.as_object_mut().unwrap().remove("exp");
    let t = forge(Algorithm::HS256, SECRET, &c);
    assert!(manager().verify(&t, TokenKind::Access).is_err());
}

#[test]
fn the_algorithm_is_pinned() {
    let m = manager();
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let t = forge(alg, SECRET, &good_claims());
        assert_eq!(m.verify(&t, TokenKind::Access), Err(TokenError::BadAlgorithm), "{alg:?}");
    }
    // alg: none, unsigned
    let none = format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(&good_claims().to_string()));
    assert!(m.verify(&none, TokenKind::Access).is_err());
    // alg: none, carrying a valid HS256 signature of another token
    let real = forge(Algorithm::HS256, SECRET, &good_claims());
    let sig = real.rsplit('.').next().unwrap();
    let none_signed = format!("{}.{}.{sig}", b64(r#"{"alg":"none"}"#), b64(&good_claims().to_string()));
    assert!(m.verify(&none_signed, TokenKind::Access).is_err());
    // an RS256 header over an HMAC signature
    let rs = format!("{}.{}.{sig}", b64(r#"{"alg":"RS256"}"#), b64(&good_claims().to_string()));
    assert_eq!(m.verify(&rs, TokenKind::Access), Err(TokenError::BadAlgorithm));
}

#[test]
fn signatures_must_be_present_and_valid() {
    let m = manager();
    let t = forge(Algorithm::HS256, SECRET, &good_claims());
    let (head, _sig) = t.rsplit_once('.').unwrap();
    assert!(m.verify(&format!("{head}."), TokenKind::Access).is_err());
    assert!(m.verify(head, TokenKind::Access).is_err());
    let wrong_key = forge(Algorithm::HS256, b"another-secret-another-secret-000", &good_claims());
    assert_eq!(m.verify(&wrong_key, TokenKind::Access), Err(TokenError::BadSignature));
    // payload swapped under an untouched signature
    let mut elevated = good_claims();
    elevated["user_id"] = "1".into();
    let forged_payload = b64(&elevated.to_string());
    let parts: Vec<&str> = t.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert_eq!(m.verify(&tampered, TokenKind::Access), Err(TokenError::BadSignature));
    for junk in ["", "a", "a.b", "a.b.c", "....", "eyJ.eyJ.sig"] {
        assert!(m.verify(junk, TokenKind::Access).is_err(), "{junk:?}");
    }
}

#[test]
fn issuer_and_audience_are_checked_when_configured() {
    let strict = TokenManager::new(&TokenSettings { issuer: Some("portcullis".into()), audience: Some("apps".into()), ..settings() });
    let own = strict.create_token(&spec(TokenKind::Access)).unwrap();
    assert!(strict.verify(&own, TokenKind::Access).is_ok());
    let mut c = good_claims();
    assert_eq!(strict.verify(&forge(Algorithm::HS256, SECRET, &c), TokenKind::Access), Err(TokenError::InvalidClaims));
    c["iss"] = "someone-else".into();
    c["aud"] = "apps".into();
    assert_eq!(strict.verify(&forge(Algorithm::HS256, SECRET, &c), TokenKind::Access), Err(TokenError::InvalidClaims));
    c["iss"] = "portcullis".into();
    c["aud"] = "other".into();
    assert_eq!(strict.verify(&forge(Algorithm::HS256, SECRET, &c), TokenKind::Access), Err(TokenError::InvalidClaims));
}

#[test]
fn numeric_user_ids_are_read_as_strings() {
    let mut c = good_claims();
    c["user_id"] = 17.into();
    let got = manager().verify(&forge(Algorithm::HS256, SECRET, &c), TokenKind::Access).unwrap();
    assert_eq!(got.user_id, "17");
}

#[test]
fn a_cached_token_expires_exactly_when_an_uncached_one_would() {
    for leeway in [0, 30] {
        let m = TokenManager::new(&TokenSettings { leeway_seconds: leeway, ..settings() });
        let now = unix_now();
        let token = m.create_token(&TokenSpec { ttl: Some(Duration::from_secs(60)), ..spec(TokenKind::Access) }).unwrap();
        let exp = m.verify(&token, TokenKind::Access).unwrap().exp;
        let first = m.authenticate_at(&token, now).unwrap();
        assert_eq!((first.user_id.as_str(), first.role.as_deref(), first.session_id()), ("42", Some("user"), Some("s1")));
        // Hits from here on: the same Arc comes back while the token is valid...
        assert!(Arc::ptr_eq(&first, &m.authenticate_at(&token, exp + leeway).unwrap()));
        // ...and it is refused one second later, as jsonwebtoken itself would refuse it.
        assert_eq!(m.authenticate_at(&token, exp + leeway + 1), Err(TokenError::Expired));
        assert!(expired(exp, leeway, exp + leeway + 1) && !expired(exp, leeway, exp + leeway));
    }
}

#[test]
fn the_cache_never_admits_what_verification_refuses() {
    let m = manager();
    let token = m.create_access_token("42", "user", "s1").unwrap();
    m.authenticate(&token).unwrap();
    // A refresh token, a forged signature, a tampered payload: all verified in full, all refused.
    let refresh = m.create_refresh_token("42", "s1").unwrap();
    assert_eq!(m.authenticate(&refresh), Err(TokenError::WrongType(TokenKind::Access)));
    let (head, sig) = token.rsplit_once('.').unwrap();
    let flipped = format!("{head}.{}{}", if sig.starts_with('A') { 'B' } else { 'A' }, &sig[1..]);
    assert_eq!(m.authenticate(&flipped), Err(TokenError::BadSignature));
    let other = forge(Algorithm::HS256, b"another-secret-another-secret-xx", &good_claims());
    assert_eq!(m.authenticate(&other), Err(TokenError::BadSignature));
    // A manager with another secret (a reload) starts with an empty cache.
    let rotated = TokenManager::new(&TokenSettings {
        keys: vec![RingKey::hmac(None, &Secret::new(b"a-rotated-secret-a-rotated-secret".to_vec()))],
        ..settings()
    });
    assert_eq!(rotated.authenticate(&token), Err(TokenError::BadSignature));
}

#[test]
fn identities_with_unsafe_header_values_are_refused_cached_or_not() {
    for size in [0, 64] {
        let m = TokenManager::new(&TokenSettings { verify_cache_size: size, ..settings() });
        let mut claims = good_claims();
        claims["user_id"] = "a b".into();
        let t = forge(Algorithm::HS256, SECRET, &claims);
        assert_eq!(m.authenticate(&t), Err(TokenError::Malformed));
        assert_eq!(m.authenticate(&t), Err(TokenError::Malformed));
    }
}

#[test]
fn bearer_header_parsing() {
    assert_eq!(bearer_token(None), Err(TokenError::Missing));
    assert_eq!(bearer_token(Some(b"Bearer abc.def.ghi")), Ok("abc.def.ghi"));
    assert_eq!(bearer_token(Some(b"bearer   abc")), Ok("abc"));
    for bad in [&b"Basic dXNlcjpwYXNz"[..], b"Bearer", b"Bearer ", b"Token abc", b"\xff\xfe"] {
        assert_eq!(bearer_token(Some(bad)), Err(TokenError::Malformed), "{bad:?}");
    }
    let huge = format!("Bearer {}", "a".repeat(9000));
    assert_eq!(bearer_token(Some(huge.as_bytes())), Err(TokenError::Malformed));
    // Characters outside base64url and dots are refused by authentication, cached or not.
    let m = manager();
    let good = m.create_access_token("42", "user", "s1").unwrap();
    m.authenticate(&good).unwrap();
    for bad in ["a b", "a\"b", format!("{good} x").as_str(), format!("{good}\u{7f}").as_str(), format!("{good}%").as_str()] {
        assert_eq!(m.authenticate(bad), Err(TokenError::Malformed), "{bad:?}");
    }
}

/// Wycheproof's HS256 JWS vectors: the HMAC backend agrees on the valid ones, and since none of
/// the payloads is a claims set, the gateway's verification refuses every one of them.
#[test]
fn wycheproof_hs256_vectors() {
    let text = include_str!("../../../tests/vectors/wycheproof_hs256.json");
    let doc: serde_json::Value = serde_json::from_str(text).unwrap();
    // Known upstream mislabels (see shared/testdata/wycheproof/README.md).
    let mislabelled = [367, 370, 372, 373];
    let mut checked = 0;
    for group in doc["testGroups"].as_array().unwrap() {
        let k = group["private"]["k"].as_str().unwrap();
        let key = base64url_decode(k);
        let m = TokenManager::new(&TokenSettings { keys: vec![RingKey::hmac(None, &Secret::new(key.clone()))], ..settings() });
        for t in group["tests"].as_array().unwrap() {
            let id = t["tcId"].as_i64().unwrap();
            let jws = t["jws"].as_str().unwrap_or("");
            assert!(m.verify(jws, TokenKind::Access).is_err(), "tc{id} must be refused as an access token");
            if mislabelled.contains(&id) || t["result"] != "valid" {
                continue;
            }
            let (msg, sig) = jws.rsplit_once('.').unwrap();
            let ok = jsonwebtoken::crypto::verify(sig, msg.as_bytes(), &DecodingKey::from_secret(&key), Algorithm::HS256).unwrap();
            assert!(ok, "tc{id} is a valid MAC");
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} valid vectors checked");
}

fn base64url_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        _ => 63,
    };
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|&c| c != b'=') {
        acc = acc << 6 | val(c) as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// A token with an arbitrary header JSON, signed with the test secret.
fn with_header(header_json: &str, claims: &serde_json::Value) -> String {
    use hmac::Mac;
    let h = b64(header_json);
    let c = b64(&claims.to_string());
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(format!("{h}.{c}").as_bytes());
    let sig = mac.finalize().into_bytes();
    use base64::Engine;
    format!("{h}.{c}.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig))
}

/// A `kid` is 1 to 256 characters, none of them a control character.
#[test]
fn a_kid_is_a_short_string_without_control_characters() {
    let claims = good_claims();
    let kid = |k: &str| check_header(&with_header(&format!(r#"{{"alg":"HS256","kid":{}}}"#, serde_json::Value::from(k)), &claims));
    assert_eq!(kid(&"k".repeat(256)), Ok(Some("k".repeat(256))));
    assert_eq!(kid("k"), Ok(Some("k".to_string())));
    for bad in ["".to_string(), "k".repeat(257), "a\u{7}b".to_string()] {
        assert_eq!(kid(&bad), Err(TokenError::UnknownKey), "{bad:?}");
    }
}

/// A bearer token may be up to 8 KiB.
#[test]
fn a_bearer_token_may_be_eight_kibibytes() {
    let at = |n: usize| format!("Bearer {}", "a".repeat(n));
    assert_eq!(bearer_token(Some(at(8192).as_bytes())).map(str::len), Ok(8192));
    assert_eq!(bearer_token(Some(at(1100).as_bytes())).map(str::len), Ok(1100));
    assert_eq!(bearer_token(Some(at(8193).as_bytes())), Err(TokenError::Malformed));
}

/// A key in a log line or a config dump names its id, never its secret.
#[test]
fn a_signing_key_prints_its_id_only() {
    let k = RingKey::hmac(Some("k-2026".into()), &Secret::new(b"a signing secret of more than 32 bytes!".to_vec()));
    let shown = format!("{k:?}");
    assert!(shown.starts_with("RingKey") && shown.contains("k-2026") && !shown.contains("signing secret"), "{shown}");
}

#[test]
fn any_crit_header_and_any_malformed_kid_are_refused() {
    let m = manager();
    let claims = good_claims();
    let claims = serde_json::json!({"exp": claims["exp"], "iat": claims["iat"], "user_id": "42", "role": "user", "type": "access", "jti": "j", "sid": "s"});
    assert!(m.authenticate(&with_header(r#"{"alg":"HS256","typ":"JWT"}"#, &claims)).is_ok(), "the control case");
    assert_eq!(m.authenticate(&with_header(r#"{"alg":"HS256","crit":["exp"]}"#, &claims)).unwrap_err(), TokenError::Unsupported);
    assert_eq!(m.authenticate(&with_header(r#"{"alg":"HS256","crit":[]}"#, &claims)).unwrap_err(), TokenError::Unsupported);
    for kid in [r#""""#, "null", "7", r#"["a"]"#, r#""a\u0000b""#, r#""a\nb""#, r#""not-in-ring""#] {
        let t = with_header(&format!(r#"{{"alg":"HS256","kid":{kid}}}"#), &claims);
        assert_eq!(m.authenticate(&t).unwrap_err(), TokenError::UnknownKey, "kid {kid}");
    }
}

#[test]
fn access_tokens_that_claim_too_long_a_life_or_a_future_birth_are_refused() {
    let m = manager();
    let now = unix_now();
    let claims = |iat: u64, exp: u64| serde_json::json!({"user_id": "42", "role": "admin", "type": "access", "exp": exp, "iat": iat, "jti": "j", "sid": "s"});
    assert!(m.verify(&forge(Algorithm::HS256, SECRET, &claims(now, now + 900)), TokenKind::Access).is_ok(), "exactly the max");
    for (iat, exp, why) in [
        (now, now + 901, "a second over the access lifetime"),
        (now, now + 10 * 365 * 86_400, "ten years"),
        (now, 9_214_646_400_000, "the year 292 billion"),
        (now + 60, now + 120, "issued in the future"),
    ] {
        assert_eq!(
            m.verify(&forge(Algorithm::HS256, SECRET, &claims(iat, exp)), TokenKind::Access).unwrap_err(),
            TokenError::InvalidClaims,
            "{why}"
        );
    }
    // Refresh tokens live for days and are not held to the access lifetime.
    let r = m.create_token(&spec(TokenKind::Refresh)).unwrap();
    assert!(m.verify(&r, TokenKind::Refresh).is_ok());
}

#[test]
fn a_ring_signs_with_its_first_key_and_verifies_with_every_key_until_one_is_removed() {
    for alg in [Algorithm::ES256, Algorithm::EdDSA] {
        let key = |id: &str| RingKey::from_pem(Some(id.into()), crate::auth::keygen::generate_pem(alg).unwrap().expose(), alg).unwrap();
        let (old, new) = (key("2026-10"), key("2026-11"));
        let ring = |keys: Vec<RingKey>| TokenManager::new(&TokenSettings { keys, algorithm: alg, ..settings() });
        let before = ring(vec![old.clone()]);
        let t_old = before.create_token(&spec(TokenKind::Access)).unwrap();
        assert_eq!(jsonwebtoken::decode_header(&t_old).unwrap().kid.as_deref(), Some("2026-10"));
        // 1. add the new key at the end: old tokens verify, new ones are still signed by the old key.
        let step1 = ring(vec![old.clone(), new.clone()]);
        assert!(step1.authenticate(&t_old).is_ok());
        // 2. move it first: it signs; tokens of either key verify.
        let step2 = ring(vec![new.clone(), old.clone()]);
        let t_new = step2.create_token(&spec(TokenKind::Access)).unwrap();
        assert_eq!(jsonwebtoken::decode_header(&t_new).unwrap().kid.as_deref(), Some("2026-11"));
        assert!(step2.authenticate(&t_old).is_ok() && step2.authenticate(&t_new).is_ok());
        assert!(before.authenticate(&t_new).is_err(), "{alg:?}: a ring without the new key refuses its tokens");
        // 3. remove the old key: its tokens are refused.
        let step3 = ring(vec![new.clone()]);
        assert_eq!(step3.authenticate(&t_old).unwrap_err(), TokenError::UnknownKey);
        assert!(step3.authenticate(&t_new).is_ok());
        // The public keys are published; the private parts never are.
        let jwks = step2.jwks();
        let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
        assert_eq!(kids, ["2026-11", "2026-10"]);
        assert!(jwks["keys"].as_array().unwrap().iter().all(|k| k.get("d").is_none()), "{jwks}");
        // A token that names the key but is signed by another key of the ring is a bad signature.
        let forged_header = {
            let mut h = Header::new(alg);
            h.kid = Some("2026-11".into());
            h
        };
        let claims = serde_json::json!({"user_id": "42", "role": "admin", "type": "access", "exp": unix_now() + 60, "iat": unix_now(), "jti": "j", "sid": "s"});
        let forged = jsonwebtoken::encode(&forged_header, &claims, &old.encoding_for_tests()).unwrap();
        assert_eq!(step2.authenticate(&forged).unwrap_err(), TokenError::BadSignature, "{alg:?}");
    }
    // An HMAC token without a kid is refused by a ring whose keys all have ids.
    let keyed =
        TokenManager::new(&TokenSettings { keys: vec![RingKey::hmac(Some("a".into()), &Secret::new(SECRET.to_vec()))], ..settings() });
    let plain = manager().create_token(&spec(TokenKind::Access)).unwrap();
    assert_eq!(keyed.authenticate(&plain).unwrap_err(), TokenError::UnknownKey);
    // An HMAC ring publishes nothing.
    assert_eq!(manager().jwks(), serde_json::json!({"keys": []}));
}

/// Each jsonwebtoken failure reads as the reason operators see in audit events and metrics: an
/// algorithm problem of any kind is `bad_algorithm`, a claim problem `invalid_claims`, anything
/// about the token's encoding `malformed`.
#[test]
fn jsonwebtoken_failures_read_as_the_documented_reasons() {
    use jsonwebtoken::errors::{Error, ErrorKind};
    let reason = |k: ErrorKind| TokenError::from(Error::from(k)).reason();
    for (kind, expected) in [
        (ErrorKind::InvalidSignature, "bad_signature"),
        (ErrorKind::ExpiredSignature, "expired"),
        (ErrorKind::InvalidAlgorithm, "bad_algorithm"),
        (ErrorKind::InvalidAlgorithmName, "bad_algorithm"),
        (ErrorKind::MissingAlgorithm, "bad_algorithm"),
        (ErrorKind::UnsupportedAlgorithm, "bad_algorithm"),
        (ErrorKind::InvalidIssuer, "invalid_claims"),
        (ErrorKind::InvalidAudience, "invalid_claims"),
        (ErrorKind::InvalidSubject, "invalid_claims"),
        (ErrorKind::ImmatureSignature, "invalid_claims"),
        (ErrorKind::MissingRequiredClaim("exp".into()), "invalid_claims"),
        (ErrorKind::InvalidClaimFormat("exp".into()), "invalid_claims"),
        (ErrorKind::InvalidToken, "malformed"),
        (ErrorKind::InvalidKeyFormat, "malformed"),
    ] {
        assert_eq!(reason(kind.clone()), expected, "{kind:?}");
    }
}

/// Every identity value of a token becomes an upstream header, so each is checked on its own:
/// an unsafe session id or role is refused even when every other claim is fine.
#[test]
fn each_identity_claim_is_checked_on_its_own() {
    let m = manager();
    for (claim, value) in [("user_id", "a b"), ("sid", "s\u{1}1"), ("sid", ""), ("role", "ad min"), ("jti", "j j")] {
        let mut c = good_claims();
        c[claim] = value.into();
        assert_eq!(m.authenticate(&forge(Algorithm::HS256, SECRET, &c)), Err(TokenError::Malformed), "{claim}={value:?}");
    }
    assert!(m.authenticate(&forge(Algorithm::HS256, SECRET, &good_claims())).is_ok());
}

/// What the binary reads off the manager (the login reply's `expires_in`, how long a revocation
/// is kept: the access lifetime plus the leeway) is what the settings say.
#[test]
fn the_manager_reports_its_lifetimes() {
    let m = TokenManager::new(&TokenSettings { access_ttl: Duration::from_secs(600), leeway_seconds: 30, ..settings() });
    assert_eq!((m.access_ttl(), m.leeway_seconds()), (Duration::from_secs(600), 30));
    assert_eq!(m.create_token_pair("7", "user", "s").unwrap().expires_in, m.access_ttl().as_secs());
}
