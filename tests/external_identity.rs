//! External identity providers through the real gateway, against the in-repo test issuer
//! (discovery and JWKS over HTTP, keys made at test time): verification and role mapping,
//! scopes, rotation at the provider without a refused request, forged kids that cannot flood
//! the provider, an outage at start and stale-on-error, the denylist by issuer.
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its reason

mod common;

use common::config::Config;
use common::{MockUpstream, TestGateway, TestIdp};
use jsonwebtoken::Algorithm;
use serde_json::json;
use std::time::Instant;

fn gateway(up: &MockUpstream, idp: &TestIdp, algorithms: &str, min_refresh: u64, cooldown: u64) -> TestGateway {
    let config = Config::seed(&up.url())
        .set("identity_providers", &format!("{{ corp: {} }}", idp.provider_yaml(algorithms, min_refresh, cooldown)))
        .set("audit", "{ sink: file, file: audit.log }")
        .route("projects-read", "require_scopes", "[projects.read]");
    TestGateway::start(&config.yaml())
}

fn wait_for_keys(gw: &TestGateway) {
    assert_eventually!(
        gw.admin_get("/readyz").json()["identity_providers"]["corp"]["keys"].as_u64().unwrap_or(0) > 0,
        "keys fetched at start"
    );
}

#[test]
fn provider_tokens_of_each_algorithm_are_verified_mapped_and_authorized() {
    for (alg, name) in [(Algorithm::ES256, "ES256"), (Algorithm::EdDSA, "EdDSA"), (Algorithm::RS256, "RS256"), (Algorithm::PS256, "PS256")]
    {
        let idp = TestIdp::start(alg);
        let up = MockUpstream::start();
        let gw = gateway(&up, &idp, name, 60, 10);
        wait_for_keys(&gw);
        let admin = idp.token("k1", "alice", &["offline_access", "gw-user", "gw-admin"]);
        assert_eq!(gw.request("POST", "/admin/settings").bearer(&admin).send().status, 200, "{name}");
        let seen = up.last();
        assert_eq!(
            (seen.header("x-user-id"), seen.header("x-user-role"), seen.header("x-user-issuer")),
            (Some("alice"), Some("admin"), Some("corp"))
        );
        assert!(seen.header("x-session-id").is_none() && seen.header("authorization").is_none());
        let viewer = idp.token("k1", "bob", &["gw-viewer"]);
        assert_eq!(gw.get("/projects/1").bearer(&viewer).send().status, 200, "scope projects.read held");
        assert_eq!(gw.request("DELETE", "/projects/1").bearer(&viewer).send().status, 403, "the matrix applies");
        // A scope the route requires and the token lacks: 403 with the RFC 6750 challenge.
        let narrow = idp.sign("k1", &idp.claims("bob", &["gw-viewer"], "openid"));
        let r = gw.get("/projects/1").bearer(&narrow).send();
        assert_eq!((r.status, r.error_code().as_str()), (403, "insufficient_scope"));
        assert!(r.header("www-authenticate").unwrap().contains("insufficient_scope"));
        // No mapped role and no default_role: 403.
        let r = gw.get("/profile").bearer(&idp.token("k1", "carol", &["unrelated"])).send();
        assert_eq!((r.status, r.error_code().as_str()), (403, "forbidden"));
        // Wrong audience, an empty sub, a ten-year lifetime, a crit header: 401.
        let mut c = idp.claims("dave", &["gw-user"], "openid");
        c["aud"] = json!("someone-else");
        assert_eq!(gw.get("/profile").bearer(&idp.sign("k1", &c)).send().status, 401, "{name}: audience");
        let mut c = idp.claims("", &["gw-user"], "openid");
        c["sub"] = json!("");
        assert_eq!(gw.get("/profile").bearer(&idp.sign("k1", &c)).send().status, 401, "{name}: empty sub");
        let mut c = idp.claims("dave", &["gw-user"], "openid");
        c["exp"] = json!(c["iat"].as_u64().unwrap() + 10 * 365 * 86_400);
        assert_eq!(gw.get("/profile").bearer(&idp.sign("k1", &c)).send().status, 401, "{name}: lifetime");
        // The gateway's own tokens keep working beside the provider's.
        assert_eq!(gw.get("/profile").bearer(&gw.token("local", "user")).send().status, 200);
    }
}

/// The provider rotates its key under load: the new key is published and used at once (no
/// waiting for the refresh), and no valid request is refused.
#[test]
fn rotation_at_the_provider_refuses_no_valid_request() {
    let idp = TestIdp::start(Algorithm::ES256);
    let up = MockUpstream::start();
    let gw = gateway(&up, &idp, "ES256", 3600, 1);
    wait_for_keys(&gw);
    let mut refused = 0;
    let mut sent = 0;
    for round in 0..5 {
        let kid = format!("k{}", round + 2);
        idp.add_key(&kid, Algorithm::ES256, true);
        let t = idp.token(&kid, &format!("user{round}"), &["gw-user"]);
        for _ in 0..20 {
            sent += 1;
            if gw.get("/profile").bearer(&t).send().status != 200 {
                refused += 1;
            }
        }
        idp.unpublish(&format!("k{}", round + 1));
        // The cooldown (1 s) bounds refetches: move the gateway's clock past it so the next
        // round's new kid may fetch.
        gw.advance_clock(2);
    }
    println!("rotation under load: {refused} of {sent} valid requests refused; {} JWKS fetches", idp.jwks_fetches());
    assert_eq!(refused, 0);
}

/// 10,000 tokens naming random unknown kids: the provider sees a bounded number of fetches.
#[test]
fn forged_kids_cannot_flood_the_provider() {
    let idp = TestIdp::start(Algorithm::ES256);
    let up = MockUpstream::start();
    let gw = gateway(&up, &idp, "ES256", 3600, 10);
    wait_for_keys(&gw);
    let before = idp.jwks_fetches();
    let started = Instant::now();
    let mut conn = common::Connection::open(gw.addr);
    // A real token's payload and signature under 10,000 headers naming random kids (the
    // signature cannot match, but an unknown kid is decided before any signature is checked).
    let real = idp.token("k1", "mallory", &["gw-admin"]);
    let rest = &real[real.find('.').unwrap()..];
    for i in 0..10_000u32 {
        use base64::Engine;
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": format!("forged-{i}-{}", i.wrapping_mul(2_654_435_761))});
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header.to_string()) + rest;
        let r = conn.send(gw.get("/profile").bearer(&forged)).unwrap();
        assert_eq!(r.status, 401);
    }
    let fetched = idp.jwks_fetches() - before;
    let seconds = started.elapsed().as_secs() + 1;
    println!("10,000 forged kids in {seconds} s: {fetched} JWKS fetches");
    // One per 10 s cooldown at most (plus the one in flight when the run began).
    assert!(fetched <= seconds / 10 + 2, "{fetched} fetches in {seconds} s");
    assert_eq!(up.hits(), 0);
    assert_eq!(gw.get("/profile").bearer(&idp.token("k1", "alice", &["gw-user"])).send().status, 200, "real tokens still pass");
}

/// The provider is down when the gateway starts: the gateway starts anyway, serves its own
/// tokens, reports the provider in /readyz and a metric, and picks the keys up once it is back;
/// later outages keep the last good keys.
#[test]
fn a_provider_outage_never_stops_the_gateway_and_keys_stay_on_error() {
    let idp = TestIdp::start(Algorithm::ES256);
    idp.set_down(true);
    let up = MockUpstream::start();
    let gw = gateway(&up, &idp, "ES256", 1, 1);
    let ready = gw.admin_get("/readyz");
    assert_eq!(ready.status, 200, "the gateway is ready: its own tokens work");
    assert_eq!(gw.get("/profile").bearer(&gw.token("local", "user")).send().status, 200);
    assert_eventually!(gw.admin_get("/readyz").json()["identity_providers"]["corp"]["last_error"].is_string(), "the outage is reported");
    assert_eventually!(
        gw.metric(r#"portcullis_identity_provider_fetches_total{provider="corp",result="error"}"#).unwrap_or(0.0) >= 1.0,
        "and counted"
    );
    let t = idp.token("k1", "alice", &["gw-user"]);
    assert_eq!(gw.get("/profile").bearer(&t).send().status, 401, "no keys yet");
    idp.set_max_age(1); // refresh every second from now on
    idp.set_down(false);
    assert_eventually!(gw.get("/profile").bearer(&t).send().status == 200, "keys fetched once the provider is back");
    assert_eq!(gw.metric(r#"portcullis_identity_provider_keys{provider="corp"}"#), Some(1.0));
    // Down again: the last good keys keep serving (stale-on-error).
    idp.set_down(true);
    let errors = gw.metric(r#"portcullis_identity_provider_fetches_total{provider="corp",result="error"}"#).unwrap();
    assert_eventually!(
        gw.metric(r#"portcullis_identity_provider_fetches_total{provider="corp",result="error"}"#).unwrap() > errors,
        "a refresh failed"
    );
    assert_eq!(gw.get("/profile").bearer(&t).send().status, 200);
    assert!(!gw.log().contains(&t[t.len() - 20..]), "no token in the logs");
}

/// An admin cuts off a whole provider, or one of its tokens, at once.
#[test]
fn the_denylist_reaches_external_tokens() {
    let idp = TestIdp::start(Algorithm::EdDSA);
    let up = MockUpstream::start();
    let gw = gateway(&up, &idp, "EdDSA", 60, 10);
    wait_for_keys(&gw);
    let admin = gw.token("operator", "admin");
    let t = idp.token("k1", "alice", &["gw-user"]);
    let other = idp.token("k1", "bob", &["gw-user"]);
    assert_eq!(gw.get("/profile").bearer(&t).send().status, 200);
    let jti = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(&t).unwrap().claims["jti"].as_str().unwrap().to_string();
    let r = gw.request("POST", "/admin/revocations").bearer(&admin).json(&json!({"jti": jti, "reason": "leaked"})).send();
    assert_eq!(r.status, 201);
    assert_eq!(gw.get("/profile").bearer(&t).send().error_code(), "revoked");
    assert_eq!(gw.get("/profile").bearer(&other).send().status, 200);
    let r = gw.request("POST", "/admin/revocations").bearer(&admin).json(&json!({"issuer": "corp", "reason": "IdP breach"})).send();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(gw.get("/profile").bearer(&other).send().error_code(), "revoked");
    assert_eq!(gw.get("/profile").bearer(&gw.token("local", "user")).send().status, 200, "the gateway's own tokens are not that issuer's");
    let r = gw.request("POST", "/admin/revocations").bearer(&admin).json(&json!({"issuer": "nobody", "reason": "x"})).send();
    assert_eq!(r.status, 400, "an issuer that is not configured");
}

/// Two instances on one Redis: one fetches, the other takes the shared copy; the provider sees
/// one fetch per refresh however many instances there are.
#[test]
fn two_instances_on_one_redis_cost_the_provider_one_fetch_per_refresh() {
    let redis = common::RedisServer::start();
    let idp = TestIdp::start(Algorithm::ES256);
    idp.set_max_age(2);
    let up = MockUpstream::start();
    let config = Config::seed(&up.url())
        .redis(&redis.url())
        .set("identity_providers", &format!("{{ corp: {} }}", idp.provider_yaml("ES256", 1, 1)))
        .yaml();
    let (a, b) = (TestGateway::start(&config), TestGateway::start(&config));
    wait_for_keys(&a);
    wait_for_keys(&b);
    let t = idp.token("k1", "alice", &["gw-user"]);
    assert_eq!(a.get("/profile").bearer(&t).send().status, 200);
    assert_eq!(b.get("/profile").bearer(&t).send().status, 200);
    let metric = |gw: &TestGateway, result: &str| {
        gw.metric(&format!(r#"portcullis_identity_provider_fetches_total{{provider="corp",result="{result}"}}"#)).unwrap_or(0.0)
    };
    let shared = |gw: &TestGateway| metric(gw, "shared");
    // Wait for the instances to take each other's fetches twice (a refresh every 2 s each).
    let (before, started) = (idp.jwks_fetches(), Instant::now());
    assert_eventually!(shared(&a) + shared(&b) >= 2.0, "the instances took each other's fetches");
    let (fetched, seconds) = (idp.jwks_fetches() - before, started.elapsed().as_secs_f64());
    println!("two instances, max-age 2 s: {fetched} JWKS fetches in {seconds:.1} s");
    assert!((fetched as f64) <= seconds / 2.0 + 2.0, "{fetched} fetches in {seconds:.1} s: each instance fetched for itself");
    // A new key met first on B is fetched by B and reaches A through the store. First the
    // copies become hour-long, so that no scheduled refresh fetches while that is checked.
    idp.set_max_age(3600);
    let next_refresh = |gw: &TestGateway| gw.admin_get("/readyz").json()["identity_providers"]["corp"]["next_refresh_in_seconds"].as_u64();
    assert_eventually!(
        next_refresh(&a) > Some(60) && next_refresh(&b) > Some(60),
        "both instances hold an hour-long copy: {:?} {:?}",
        next_refresh(&a),
        next_refresh(&b)
    );
    idp.add_key("k2", Algorithm::ES256, true);
    let t2 = idp.token("k2", "bob", &["gw-user"]);
    assert_eq!(b.get("/profile").bearer(&t2).send().status, 200);
    let after = idp.jwks_fetches();
    assert_eventually!(a.get("/profile").bearer(&t2).send().status == 200, "A has the new key");
    assert_eq!(idp.jwks_fetches(), after, "A did not fetch it again");
}
