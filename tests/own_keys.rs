//! The gateway's own keys through the real binary: an ES256 ring made by `portcullis keygen`,
//! rotated in three steps by hot reload without logging anyone out, published at
//! `/.well-known/jwks.json`; the signed identity assertion an upstream can verify; token
//! hardening (`crit`, lifetimes).
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its reason

mod common;

use common::config::Config;
use common::{MockUpstream, TestGateway};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

const PASSWORD: &str = "demo-password-123";

fn keygen(dir: &Path, name: &str, alg: &str) -> String {
    let path = dir.join(name);
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis")).args(["keygen", "--algorithm", alg, "--out"]).arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    path.display().to_string()
}

fn ring(keys: &[(&str, &str)]) -> String {
    let list: Vec<String> = keys.iter().map(|(id, file)| format!("{{ id: \"{id}\", private_key_file: \"{file}\" }}")).collect();
    format!("{{ algorithm: ES256, access_ttl_minutes: 15, keys: [{}] }}", list.join(", "))
}

fn login(gw: &TestGateway) -> String {
    let r = gw.request("POST", "/auth/login").json(&json!({"email": "rot@example.com", "password": PASSWORD})).send();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["access_token"].as_str().unwrap().to_string()
}

fn kid(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).unwrap().kid
}

fn reload_with(gw: &TestGateway, tokens: &str, n: f64) {
    let tokens = tokens.to_string();
    gw.rewrite_config(move |text| {
        let mut c = Config::from_yaml(&text);
        c = c.set("tokens", &tokens);
        c.yaml()
    });
    gw.signal("HUP");
    assert_eventually!(gw.metric(r#"portcullis_config_reloads_total{result="success"}"#) == Some(n), "reload {n} applied");
}

#[test]
fn an_es256_ring_rotates_in_three_steps_without_logging_anyone_out() {
    let keys = tempfile::tempdir().unwrap();
    let (old, new) = (keygen(keys.path(), "2026-10.pem", "ES256"), keygen(keys.path(), "2026-11.pem", "ES256"));
    let up = MockUpstream::start();
    let gw = TestGateway::start(&Config::seed(&up.url()).set("tokens", &ring(&[("2026-10", &old)])).yaml());
    let pid = gw.pid();
    gw.create_user("rot@example.com", PASSWORD, "user");
    let t_old = login(&gw);
    assert_eq!(kid(&t_old).as_deref(), Some("2026-10"));
    assert_eq!(gw.get("/profile").bearer(&t_old).send().status, 200);
    let jwks: JwkSet = serde_json::from_slice(&gw.get("/.well-known/jwks.json").send().body).unwrap();
    assert_eq!(jwks.keys.len(), 1);
    assert!(!String::from_utf8_lossy(&gw.get("/.well-known/jwks.json").send().body).contains("\"d\""), "no private part");
    let discovery = gw.get("/.well-known/openid-configuration").send().json();
    let jwks_uri = discovery["jwks_uri"].as_str().unwrap();
    assert!(jwks_uri.starts_with("http://") && jwks_uri.ends_with("/.well-known/jwks.json"), "{discovery}");
    assert_eq!(discovery["id_token_signing_alg_values_supported"], json!(["ES256"]));

    // 1. Add the new key at the end: nothing changes for anyone.
    reload_with(&gw, &ring(&[("2026-10", &old), ("2026-11", &new)]), 1.0);
    assert_eq!(gw.get("/profile").bearer(&t_old).send().status, 200);
    assert_eq!(kid(&login(&gw)).as_deref(), Some("2026-10"), "the first key still signs");
    // 2. Move it first: new tokens are signed with it; old ones still verify.
    reload_with(&gw, &ring(&[("2026-11", &new), ("2026-10", &old)]), 2.0);
    let t_new = login(&gw);
    assert_eq!(kid(&t_new).as_deref(), Some("2026-11"));
    assert_eq!(gw.get("/profile").bearer(&t_old).send().status, 200);
    assert_eq!(gw.get("/profile").bearer(&t_new).send().status, 200);
    let jwks: JwkSet = serde_json::from_slice(&gw.get("/.well-known/jwks.json").send().body).unwrap();
    assert_eq!(jwks.keys.len(), 2);
    // An upstream verifies the new token with the published key.
    let jwk = jwks.find("2026-11").unwrap();
    let mut v = Validation::new(Algorithm::ES256);
    v.validate_aud = false;
    assert!(jsonwebtoken::decode::<Value>(&t_new, &DecodingKey::from_jwk(jwk).unwrap(), &v).is_ok());
    // 3. Remove the old key (after the longest refresh lifetime): its tokens are refused.
    reload_with(&gw, &ring(&[("2026-11", &new)]), 3.0);
    let r = gw.get("/profile").bearer(&t_old).send();
    assert_eq!((r.status, r.error_code().as_str()), (401, "invalid_token"));
    assert_eq!(gw.get("/profile").bearer(&t_new).send().status, 200);
    assert_eq!(gw.pid(), pid, "no restart");
}

#[test]
fn a_private_key_others_can_read_is_refused_with_its_place() {
    let keys = tempfile::tempdir().unwrap();
    let file = keygen(keys.path(), "k.pem", "EdDSA");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let text = Config::seed("http://127.0.0.1:1")
        .set("tokens", &format!("{{ algorithm: EdDSA, keys: [{{ id: a, private_key_file: \"{file}\" }}] }}"))
        .yaml();
    let err = portcullis::config::parse(&text, Path::new("gateway.yaml"), &|_| None).err().unwrap().to_string();
    assert!(err.contains("tokens.keys[0].private_key_file") && err.contains("chmod 600"), "{err}");
    // And keygen never overwrites a key.
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis")).args(["keygen", "--algorithm", "ES256", "--out", &file]).output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn upstreams_that_ask_get_a_signed_identity_assertion() {
    let keys = tempfile::tempdir().unwrap();
    let key = keygen(keys.path(), "k.pem", "EdDSA");
    let up = MockUpstream::start();
    let config = Config::seed(&up.url())
        .set(
            "tokens",
            &format!("{{ algorithm: EdDSA, issuer: \"https://gw.example\", keys: [{{ id: main, private_key_file: \"{key}\" }}] }}"),
        )
        .set("upstreams.app.identity_assertion", "true");
    let gw = TestGateway::start(&config.yaml());
    let jwks: JwkSet = serde_json::from_slice(&gw.get("/.well-known/jwks.json").send().body).unwrap();
    let decoding = DecodingKey::from_jwk(jwks.find("main").unwrap()).unwrap();
    let verify = |assertion: &str| {
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(&["app"]);
        v.set_issuer(&["https://gw.example"]);
        jsonwebtoken::decode::<Value>(assertion, &decoding, &v).map(|d| d.claims)
    };
    let token = gw.token("u-42", "user");
    let r = gw.get("/profile").bearer(&token).header("X-Portcullis-Assertion", "forged").header("X-Request-Id", "req-1").send();
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(seen.all("x-portcullis-assertion").len(), 1, "the client's own is dropped");
    let claims = verify(seen.header("x-portcullis-assertion").unwrap()).unwrap();
    assert_eq!(
        (claims["sub"].as_str(), claims["role"].as_str(), claims["request_id"].as_str()),
        (Some("u-42"), Some("user"), Some("req-1"))
    );
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 60);
    assert_eq!(claims["sid"], "test-session");
    // A public route's request is asserted too (it did come through the gateway), with no subject.
    assert_eq!(gw.get("/public/x").send().status, 200);
    let claims = verify(up.last().header("x-portcullis-assertion").unwrap()).unwrap();
    assert!(claims.get("sub").is_none());
    // Another upstream's audience does not verify.
    let mut other = Validation::new(Algorithm::EdDSA);
    other.set_audience(&["billing"]);
    assert!(jsonwebtoken::decode::<Value>(up.last().header("x-portcullis-assertion").unwrap(), &decoding, &other).is_err());
    // HMAC gateways cannot assert: refused at load.
    let hs = Config::seed(&up.url()).set("upstreams.app.identity_assertion", "true").yaml();
    let env = |n: &str| (n == "JWT_SECRET_KEY").then(|| common::TEST_SECRET.to_string());
    let err = portcullis::config::parse(&hs, Path::new("gateway.yaml"), &env).err().unwrap().to_string();
    assert!(err.contains("upstreams.app.identity_assertion"), "{err}");
}

#[test]
fn crit_headers_and_impossible_lifetimes_are_refused_by_the_gateway() {
    let up = MockUpstream::start();
    let gw = TestGateway::start(&common::seed_config(&up.url()));
    let m = gw.tokens();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let sign = |header: jsonwebtoken::Header, exp: u64| {
        let claims = json!({"user_id": "u", "role": "admin", "type": "access", "iat": now, "exp": exp, "jti": "j", "sid": "s"});
        jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(common::TEST_SECRET.as_bytes())).unwrap()
    };
    let plain = jsonwebtoken::Header::new(Algorithm::HS256);
    assert_eq!(gw.get("/profile").bearer(&sign(plain.clone(), now + 600)).send().status, 200, "the control case");
    let mut crit = plain.clone();
    crit.crit = Some(vec!["exp".into()]);
    assert_eq!(gw.get("/profile").bearer(&sign(crit, now + 600)).send().status, 401);
    assert_eq!(gw.get("/profile").bearer(&sign(plain.clone(), now + 10 * 365 * 86_400)).send().status, 401, "ten years");
    assert_eq!(gw.get("/profile").bearer(&sign(plain, 9_214_646_400_000)).send().status, 401, "the year 292 billion");
    assert_eventually!(gw.metric(r#"portcullis_auth_failures_total{reason="unsupported_header"}"#) == Some(1.0), "counted by reason");
    drop(m);
}

/// The Python verification in docs/configuration.md, run as an application behind the gateway would run it
/// (PyJWT, installed by scripts/ensure-deps), against the gateway's real JWKS.
#[test]
fn the_readmes_python_verifies_the_assertion() {
    let readme = include_str!("../docs/configuration.md");
    let start = readme.find("```python\nimport jwt  # PyJWT").expect("the Python example in docs/configuration.md") + "```python\n".len();
    let code = &readme[start..start + readme[start..].find("```").unwrap()];
    for alg in ["ES256", "EdDSA"] {
        let keys = tempfile::tempdir().unwrap();
        let key = keygen(keys.path(), "k.pem", alg);
        let up = MockUpstream::start();
        let config = Config::seed(&up.url())
            .set(
                "tokens",
                &format!("{{ algorithm: {alg}, issuer: \"https://gateway.example\", keys: [{{ id: k1, private_key_file: \"{key}\" }}] }}"),
            )
            .set("upstreams.app.identity_assertion", "true");
        let gw = TestGateway::start(&config.yaml());
        assert_eq!(gw.get("/profile").bearer(&gw.token("u-7", "user")).send().status, 200);
        let assertion = up.last().header("x-portcullis-assertion").unwrap().to_string();
        let program = code.replace("https://gateway.example/.well-known/jwks.json", &format!("http://{}/.well-known/jwks.json", gw.addr))
            + "\nimport json, sys\nprint(json.dumps(caller({'X-Portcullis-Assertion': sys.argv[1]})))\n";
        let run = |token: &str| Command::new("python3").arg("-c").arg(&program).arg(token).output().expect("python3 (scripts/ensure-deps)");
        let out = run(&assertion);
        assert!(out.status.success(), "{alg}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"["u-7", "user"]"#, "{alg}");
        // A forged assertion (signed by another key of the same kind) is refused by the same code.
        let other = keygen(keys.path(), "other.pem", alg);
        let pem = std::fs::read(&other).unwrap();
        let enc = if alg == "ES256" { jsonwebtoken::EncodingKey::from_ec_pem(&pem) } else { jsonwebtoken::EncodingKey::from_ed_pem(&pem) };
        let forged = enc.ok().map(|enc| {
            let mut h = jsonwebtoken::Header::new(if alg == "ES256" { Algorithm::ES256 } else { Algorithm::EdDSA });
            h.kid = Some("k1".into());
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
            let claims =
                json!({"iss": "https://gateway.example", "aud": "app", "sub": "admin", "role": "admin", "iat": now, "exp": now + 60});
            jsonwebtoken::encode(&h, &claims, &enc).unwrap()
        });
        if let Some(forged) = forged {
            assert!(!run(&forged).status.success(), "{alg}: a forged assertion passed");
        }
    }
}
