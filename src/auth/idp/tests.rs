use super::*;
use jsonwebtoken::{EncodingKey, Header};

fn roles() -> Roles {
    Roles::new([("admin".to_string(), 3), ("user".to_string(), 2), ("viewer".to_string(), 1), ("guest".to_string(), 0)])
}

fn idp(algorithms: Vec<Algorithm>) -> IdpSettings {
    IdpSettings {
        name: "corp".into(),
        issuer: "https://idp.example/realms/main".into(),
        source: JwksSource::Direct("https://idp.example/keys".into()),
        audiences: vec!["portcullis".into()],
        algorithms,
        claims: ClaimPaths { user_id: "sub".into(), role: Some("realm_access.roles".into()), scopes: Some("scope".into()) },
        role_map: vec![("gw-admin".into(), "admin".into()), ("gw-user".into(), "user".into())],
        default_role: None,
        leeway_seconds: 0,
        max_lifetime: Duration::from_secs(86_400),
        refresh: JwksRefresh {
            min: Duration::from_secs(60),
            max: Duration::from_secs(86_400),
            unknown_kid_cooldown: Duration::from_secs(10),
        },
    }
}

/// A private key made by `openssl genpkey` (RSA) or the gateway's keygen (EC, Ed25519).
fn private_pem(kind: &str) -> Vec<u8> {
    match kind {
        "ES256" => crate::auth::keygen::generate_pem(Algorithm::ES256).unwrap().expose().to_vec(),
        "EdDSA" => crate::auth::keygen::generate_pem(Algorithm::EdDSA).unwrap().expose().to_vec(),
        bits => {
            let out = std::process::Command::new("openssl")
                .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", &format!("rsa_keygen_bits:{bits}")])
                .output()
                .expect("openssl (scripts/ensure-deps installs it)");
            out.stdout
        }
    }
}

struct Signer {
    encoding: EncodingKey,
    jwk: Value,
}

fn signer(kind: &str, kid: &str) -> Signer {
    let pem = private_pem(kind);
    let (encoding, alg) = match kind {
        "ES256" => (EncodingKey::from_ec_pem(&pem).unwrap(), Algorithm::ES256),
        "EdDSA" => (EncodingKey::from_ed_pem(&pem).unwrap(), Algorithm::EdDSA),
        _ => (EncodingKey::from_rsa_pem(&pem).unwrap(), Algorithm::RS256),
    };
    let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&encoding, alg).unwrap()).unwrap();
    jwk["kid"] = kid.into();
    if kind.parse::<u32>().is_ok() {
        jwk.as_object_mut().unwrap().remove("alg"); // RSA keys often name no alg
    }
    Signer { encoding, jwk }
}

fn claims(now: u64) -> Value {
    serde_json::json!({
        "iss": "https://idp.example/realms/main", "aud": ["account", "portcullis"], "sub": "alice",
        "iat": now, "exp": now + 300, "jti": "ext-1", "scope": "openid projects.read",
        "realm_access": {"roles": ["offline_access", "gw-user", "gw-admin"]}
    })
}

fn sign(s: &Signer, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&h, claims, &s.encoding).unwrap()
}

/// Every algorithm a provider may use.
fn all_algorithms() -> Vec<Algorithm> {
    EXTERNAL_ALGORITHMS.iter().map(|(_, a)| *a).collect()
}

/// A provider's keys from a JWKS whose `keys` list is `keys`; the keys left out, each with why.
fn key_set(keys: Value, allowed: &[Algorithm]) -> (KeySet, Vec<String>) {
    parse_jwks(serde_json::json!({ "keys": keys }).to_string().as_bytes(), allowed).unwrap()
}

fn now() -> u64 {
    crate::clock::unix_now()
}

#[test]
fn tokens_of_each_algorithm_verify_and_map_to_an_identity() {
    let all = all_algorithms();
    for (kind, alg) in [("2048", Algorithm::RS256), ("2048", Algorithm::PS256), ("ES256", Algorithm::ES256), ("EdDSA", Algorithm::EdDSA)] {
        let s = signer(kind, "k1");
        let (keys, skipped) = key_set(serde_json::json!([s.jwk]), &all);
        assert!(skipped.is_empty(), "{skipped:?}");
        let (id, exp) = verify(&sign(&s, alg, Some("k1"), &claims(now())), &idp(all.clone()), &keys, &roles(), now()).unwrap();
        assert_eq!((id.user_id.as_str(), id.role.as_deref(), id.provider()), ("alice", Some("admin"), Some("corp")), "{alg:?}");
        assert_eq!(id.scopes, Some(vec!["openid".to_string(), "projects.read".to_string()]));
        assert_eq!(id.credential, Credential::External { provider: "corp".into(), jti: Some("ext-1".into()), exp });
        assert!(exp > now());
    }
}

#[test]
fn the_algorithm_comes_from_the_key_not_the_token() {
    let all = all_algorithms();
    let ec = signer("ES256", "ec");
    let (keys, _) = key_set(serde_json::json!([ec.jwk]), &all);
    let p = idp(all.clone());
    // HS256 with the public key as the secret: the classic confusion attack.
    let x = ec.jwk["x"].as_str().unwrap();
    let confused = jsonwebtoken::encode(
        &{
            let mut h = Header::new(Algorithm::HS256);
            h.kid = Some("ec".into());
            h
        },
        &claims(now()),
        &EncodingKey::from_secret(x.as_bytes()),
    )
    .unwrap();
    assert_eq!(verify(&confused, &p, &keys, &roles(), now()).unwrap_err(), ExternalError::Token(TokenError::BadAlgorithm));
    // An algorithm the provider is not configured for: the key is left out altogether.
    let (none, skipped) = key_set(serde_json::json!([ec.jwk]), &[Algorithm::RS256]);
    assert!(none.is_empty() && skipped.len() == 1);
    // An RSA key shorter than 2048 bits is refused; a symmetric key is never taken.
    let weak = signer("1024", "weak");
    let octet = serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "oct"});
    let (keys, skipped) = key_set(serde_json::json!([weak.jwk, octet]), &all);
    assert!(keys.is_empty());
    assert!(skipped[0].contains("1024 bits"), "{skipped:?}");
}

#[test]
fn claims_are_checked_and_mapped_with_the_providers_rules() {
    let all = all_algorithms();
    let s = signer("ES256", "k1");
    let (keys, _) = key_set(serde_json::json!([s.jwk]), &all);
    let p = idp(all);
    let check = |c: &Value| verify(&sign(&s, Algorithm::ES256, Some("k1"), c), &p, &keys, &roles(), now());
    let with = |k: &str, v: Value| {
        let mut c = claims(now());
        c[k] = v;
        c
    };
    let t = now();
    let invalid = |e| matches!(e, Err(ExternalError::Token(_)));
    assert!(invalid(check(&with("iss", "https://evil.example".into()))), "another issuer");
    assert!(invalid(check(&with("aud", "someone-else".into()))), "another audience");
    assert!(invalid(check(&with("sub", "".into()))), "an empty sub");
    assert!(invalid(check(&with("exp", (t + 3 * 86_400).into()))), "longer than max_lifetime");
    assert!(invalid(check(&with("iat", (t + 120).into()))), "issued in the future");
    assert!(invalid(check(&with("exp", (t - 10).into()))), "expired");
    let mut no_iat = claims(t);
    no_iat.as_object_mut().unwrap().remove("iat");
    assert!(invalid(check(&no_iat)));
    // Roles: a string or a list; the highest mapped wins; nothing mapped is 403 or the default.
    assert_eq!(check(&with("realm_access", serde_json::json!({"roles": "gw-user"}))).unwrap().0.role.as_deref(), Some("user"));
    assert_eq!(check(&with("realm_access", serde_json::json!({"roles": ["other"]}))).unwrap_err(), ExternalError::NoRole);
    let lenient = IdpSettings { default_role: Some("guest".into()), ..p.clone() };
    let t2 = sign(&s, Algorithm::ES256, Some("k1"), &with("realm_access", serde_json::json!({})));
    assert_eq!(verify(&t2, &lenient, &keys, &roles(), now()).unwrap().0.role.as_deref(), Some("guest"));
    // A numeric sub is a user id; no scope claim is no scopes (not unlimited).
    assert_eq!(check(&with("sub", 42.into())).unwrap().0.user_id, "42");
    let mut no_scope = claims(t);
    no_scope.as_object_mut().unwrap().remove("scope");
    assert_eq!(check(&no_scope).unwrap().0.scopes, Some(vec![]));
    // An unknown kid asks for a refetch; a missing kid with several keys is refused outright.
    assert_eq!(
        verify(&sign(&s, Algorithm::ES256, Some("k9"), &claims(t)), &p, &keys, &roles(), now()).unwrap_err(),
        ExternalError::UnknownKid
    );
    assert!(verify(&sign(&s, Algorithm::ES256, None, &claims(t)), &p, &keys, &roles(), now()).is_ok(), "one key: no kid needed");
}

#[test]
fn the_issuer_is_read_before_verification_and_refresh_honours_max_age_within_bounds() {
    let s = signer("ES256", "k1");
    assert_eq!(unverified_issuer(&sign(&s, Algorithm::ES256, None, &claims(now()))).as_deref(), Some("https://idp.example/realms/main"));
    assert_eq!(unverified_issuer("garbage"), None);
    let r = JwksRefresh { min: Duration::from_secs(60), max: Duration::from_secs(3600), unknown_kid_cooldown: Duration::from_secs(10) };
    assert_eq!(refresh_after(Some("public, max-age=300"), &r), Duration::from_secs(300));
    assert_eq!(refresh_after(Some("max-age=5"), &r), Duration::from_secs(60));
    assert_eq!(refresh_after(Some("max-age=999999"), &r), Duration::from_secs(3600));
    assert_eq!(refresh_after(None, &r), Duration::from_secs(60));
}

/// The gate the proxy uses (`admission::Local`) hands a token whose `iss` names a configured
/// provider to that provider: the provider's token is admitted as its user, and a token of the
/// gateway's own is still the gateway's to verify.
#[test]
fn the_gateways_gate_admits_a_providers_token_as_its_user() {
    use crate::admission::{admit, Local, Presented, Verifiers};
    use crate::auth::credentials::Credentials;
    use crate::auth::issuers::Issuers;
    use crate::auth::sessions::{SessionSettings, Sessions};
    use crate::store::memory::MemoryStore;
    let c = crate::config::tests::seed_config();
    let store = Arc::new(MemoryStore::new());
    let issuers = Issuers::new(Arc::new(pingora::connectors::http::Connector::new(None)), None);
    issuers.configure(&[idp(vec![Algorithm::ES256])]);
    let s = signer("ES256", "k1");
    assert_eq!(issuers.load_jwks("corp", serde_json::json!({"keys": [s.jwk]}).to_string().as_bytes()), Ok(1));
    let sessions = Sessions::new(store.clone(), SessionSettings::default());
    let credentials = Credentials::new(store, None);
    let gate = Local { sessions: &sessions, credentials: &credentials, issuers: &issuers };
    let tokens = crate::auth::tokens::TokenManager::new(&c.tokens);
    let verifiers = Verifiers { tokens: &tokens, key_hasher: None, certs: &Default::default() };
    let who = |token: &str| {
        let auth = format!("Bearer {token}");
        let presented = Presented { authorization: Some(auth.as_bytes()), ..Presented::default() };
        admit(&c.policy, &verifiers, &gate, &http::Method::GET, "/auth/me", &presented)
            .map(|a| a.identity.map(|i| (i.user_id.clone(), i.provider().map(str::to_string))))
            .map_err(|r| r.reject.status)
    };
    let external = sign(&s, Algorithm::ES256, Some("k1"), &claims(now()));
    assert_eq!(who(&external), Ok(Some(("alice".to_string(), Some("corp".to_string())))));
    let own = tokens.create_access_token("u-1", "user", "s-1").unwrap();
    assert_eq!(who(&own), Ok(Some(("u-1".to_string(), None))));
    let mut forged = claims(now());
    forged["sub"] = "mallory".into();
    let other = signer("ES256", "k1");
    assert_eq!(who(&sign(&other, Algorithm::ES256, Some("k1"), &forged)), Err(401), "signed by a key the provider does not hold");
}

/// A key that names its `alg` verifies that algorithm only; one that names none verifies what
/// its type and curve admit (RSA: RS and PS; P-256: ES256; P-384: ES384; Ed25519: EdDSA).
#[test]
fn each_key_verifies_the_algorithms_its_jwk_admits() {
    let all = all_algorithms();
    let rsa = signer("2048", "r");
    let p384 = {
        let out = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"])
            .output()
            .expect("openssl (scripts/ensure-deps installs it)");
        let encoding = EncodingKey::from_ec_pem(&out.stdout).unwrap();
        serde_json::to_value(Jwk::from_encoding_key(&encoding, Algorithm::ES384).unwrap()).unwrap()
    };
    let algorithms_of = |jwk: &Value| {
        let (keys, skipped) = key_set(serde_json::json!([jwk]), &all);
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!((keys.len(), keys.is_empty()), (1, false));
        keys.keys()[0].algorithms.clone()
    };
    use Algorithm::*;
    assert_eq!(algorithms_of(&rsa.jwk), vec![RS256, RS384, RS512, PS256, PS384, PS512]);
    for (name, alg) in [("RS256", RS256), ("RS384", RS384), ("RS512", RS512), ("PS256", PS256), ("PS384", PS384), ("PS512", PS512)] {
        let mut jwk = rsa.jwk.clone();
        jwk["alg"] = name.into();
        assert_eq!(algorithms_of(&jwk), vec![alg], "{name}");
    }
    assert_eq!(algorithms_of(&p384), vec![ES384]);
    let mut named = p384.clone();
    named.as_object_mut().unwrap().remove("alg");
    assert_eq!(algorithms_of(&named), vec![ES384], "the curve decides");
    assert_eq!(algorithms_of(&signer("EdDSA", "e").jwk), vec![EdDSA]);
    // An X25519 key is an octet key pair too, but not a signing one.
    let x25519 = serde_json::json!({"kty": "OKP", "crv": "X25519", "x": "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"});
    let (keys, skipped) = key_set(serde_json::json!([x25519]), &all);
    assert_eq!((keys.len(), skipped.len()), (0, 1));
}

/// A JWKS entry is taken only if it is meant for verifying signatures: a `use` other than `sig`,
/// `key_ops` without `verify`, or an octet key pair on a curve other than Ed25519 is left out
/// (with why), and the same key marked for signatures is taken.
#[test]
fn only_keys_meant_for_signature_verification_are_taken() {
    let all = all_algorithms();
    let ec = signer("ES256", "k1");
    let taken = |jwk: &Value| {
        let (keys, skipped) = key_set(serde_json::json!([jwk]), &all);
        assert_eq!(keys.len() + skipped.len(), 1);
        skipped.first().cloned().map_or(Ok(()), Err)
    };
    let with = |k: &str, v: Value| {
        let mut j = ec.jwk.clone();
        j[k] = v;
        j
    };
    assert_eq!(taken(&with("use", "sig".into())), Ok(()));
    assert!(taken(&with("use", "enc".into())).unwrap_err().contains("`use`"));
    assert_eq!(taken(&with("key_ops", serde_json::json!(["verify"]))), Ok(()));
    assert_eq!(taken(&with("key_ops", serde_json::json!(["sign", "verify"]))), Ok(()));
    assert!(taken(&with("key_ops", serde_json::json!(["encrypt"]))).unwrap_err().contains("`key_ops`"));
    // An octet key pair naming a NIST curve is not an Ed25519 key, whatever its bytes.
    let ed = signer("EdDSA", "e");
    let mut okp = ed.jwk.clone();
    okp["crv"] = "P-256".into();
    okp.as_object_mut().unwrap().remove("alg");
    assert!(taken(&okp).unwrap_err().contains("unsupported key type"), "{okp}");
    okp["crv"] = "Ed25519".into();
    assert_eq!(taken(&okp), Ok(()));
}

/// The RSA size floor counts the modulus's bits, not its bytes: a 2047-bit modulus (256 bytes,
/// the top bit clear) is refused, a 2048-bit one is taken, and leading zero bytes do not count.
#[test]
fn an_rsa_modulus_is_measured_in_bits() {
    use base64::Engine;
    let all = all_algorithms();
    let rsa = |modulus: &[u8]| {
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(modulus);
        let jwk = serde_json::json!({"kty": "RSA", "kid": "r", "n": n, "e": "AQAB"});
        let (keys, skipped) = key_set(serde_json::json!([jwk]), &all);
        (keys.len(), skipped)
    };
    let mut modulus = vec![0xc5u8; 256];
    assert_eq!(rsa(&modulus), (1, vec![]));
    modulus[0] = 0x7f;
    let (taken, skipped) = rsa(&modulus);
    assert!(taken == 0 && skipped[0].contains("2047 bits"), "{skipped:?}");
    let padded: Vec<u8> = [0u8, 0].into_iter().chain(vec![0xc5u8; 255]).collect();
    let (taken, skipped) = rsa(&padded);
    assert!(taken == 0 && skipped[0].contains("2040 bits"), "{skipped:?}");
}

/// A key verifies a signature of its own private key under an algorithm it admits, and nothing
/// else: not another message, not another algorithm of the same family it does not admit.
#[test]
fn a_key_verifies_only_its_own_signatures_under_its_algorithms() {
    let s = signer("ES256", "k1");
    let (keys, _) = key_set(serde_json::json!([s.jwk]), &[Algorithm::ES256]);
    let key = &keys.keys()[0];
    let token = sign(&s, Algorithm::ES256, Some("k1"), &claims(now()));
    let (message, signature) = token.rsplit_once('.').unwrap();
    assert!(key.verifies(message.as_bytes(), signature, Algorithm::ES256));
    assert!(!key.verifies(b"another message", signature, Algorithm::ES256));
    assert!(!key.verifies(message.as_bytes(), signature, Algorithm::ES384), "an algorithm the key does not admit");
    let other = sign(&signer("ES256", "k1"), Algorithm::ES256, Some("k1"), &claims(now()));
    assert!(!key.verifies(message.as_bytes(), other.rsplit_once('.').unwrap().1, Algorithm::ES256), "another key's signature");
}

/// A token without a `kid` is only verified when the provider has exactly one key: with two it
/// is refused outright (no key is guessed), with one it verifies.
#[test]
fn a_token_without_a_kid_needs_a_provider_with_one_key() {
    let (a, b) = (signer("ES256", "a"), signer("ES256", "b"));
    let p = idp(vec![Algorithm::ES256]);
    let set = |jwks: Vec<&Value>| key_set(serde_json::json!(jwks), &[Algorithm::ES256]).0;
    let token = sign(&a, Algorithm::ES256, None, &claims(now()));
    assert_eq!(verify(&token, &p, &set(vec![&a.jwk, &b.jwk]), &roles(), now()).unwrap_err(), ExternalError::Token(TokenError::UnknownKey));
    assert_eq!(verify(&token, &p, &set(vec![&b.jwk, &a.jwk]), &roles(), now()).unwrap_err(), ExternalError::Token(TokenError::UnknownKey));
    assert!(verify(&token, &p, &set(vec![&a.jwk]), &roles(), now()).is_ok());
    assert_eq!(verify(&token, &p, &set(vec![]), &roles(), now()).unwrap_err(), ExternalError::Token(TokenError::UnknownKey));
}

/// A token may live exactly `max_lifetime` (one second more is refused), and scopes may come as
/// a list as well as a space-separated string.
#[test]
fn the_lifetime_bound_is_inclusive_and_scopes_may_be_a_list() {
    let s = signer("ES256", "k1");
    let (keys, _) = key_set(serde_json::json!([s.jwk]), &[Algorithm::ES256]);
    let p = idp(vec![Algorithm::ES256]);
    let t = now();
    let check = |c: &Value| verify(&sign(&s, Algorithm::ES256, Some("k1"), c), &p, &keys, &roles(), t);
    let mut c = claims(t);
    c["exp"] = (t + 86_400).into();
    assert!(check(&c).is_ok(), "exactly max_lifetime");
    c["exp"] = (t + 86_401).into();
    assert_eq!(check(&c).unwrap_err(), ExternalError::Token(TokenError::InvalidClaims));
    let mut c = claims(t);
    c["scope"] = serde_json::json!(["projects.read", 7, "projects.write"]);
    assert_eq!(check(&c).unwrap().0.scopes, Some(vec!["projects.read".to_string(), "projects.write".to_string()]));
    c["scope"] = serde_json::json!({"not": "scopes"});
    assert_eq!(check(&c).unwrap().0.scopes, Some(vec![]));
}
