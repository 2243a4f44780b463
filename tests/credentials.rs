//! API keys and the admin denylist through the real gateway: on both stores, across two
//! instances on one private Redis, and never in a log line.
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its reason

mod common;

use common::config::Config;
use common::{MockUpstream, RedisServer, Reply, TestGateway};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const KEY_SECRET: &str = "api-key-hashing-secret-0123456789abcdef";
const PASSWORD: &str = "demo-password-123";

fn config(up: &MockUpstream, redis: Option<&RedisServer>, self_service: bool) -> String {
    let mut c = Config::seed(&up.url())
        .set("api_keys", &format!("{{ secret_env: API_KEY_SECRET, self_service: {self_service}, max_per_user: 5 }}"))
        .set("rate_limits.routes", "{ tight: { requests: 3, per_seconds: 60 } }")
        .set("audit", "{ sink: file, file: audit.log }");
    if let Some(r) = redis {
        c = c.redis(&r.url());
    }
    c.yaml()
}

fn start(config: &str) -> TestGateway {
    TestGateway::start_with_env(config, &[("API_KEY_SECRET", KEY_SECRET)])
}

fn admin(gw: &TestGateway) -> String {
    gw.token("operator", "admin")
}

fn create_key(gw: &TestGateway, body: Value) -> Value {
    let r = gw.request("POST", "/admin/api-keys").bearer(&admin(gw)).json(&body).send();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("cache-control"), Some("no-store"), "a key is shown once and never cached");
    r.json()
}

fn with_key(gw: &TestGateway, method: &str, path: &str, key: &str) -> Reply {
    gw.request(method, path).header("X-Api-Key", key).send()
}

/// The whole life of a key on one gateway, whatever its store. Returns every key it made.
fn key_story(gw: &TestGateway, up: &MockUpstream) -> Vec<String> {
    let made = create_key(gw, json!({"name": "ci", "user_id": "build-bot", "role": "viewer", "expires_in_days": 30}));
    let (key, id) = (made["key"].as_str().unwrap().to_string(), made["id"].as_str().unwrap().to_string());
    assert!(key.starts_with("pcs_") && key.len() == 66, "{key}");

    // Used in either header, authorized by the role hierarchy and the permission matrix.
    assert_eq!(with_key(gw, "GET", "/projects/1", &key).status, 200);
    let seen = up.last();
    assert_eq!(seen.header("x-user-id"), Some("build-bot"));
    assert_eq!(seen.header("x-user-role"), Some("viewer"));
    assert_eq!(seen.header("x-api-key-id"), Some(id.as_str()));
    assert!(seen.header("x-api-key").is_none() && seen.header("authorization").is_none(), "the key never reaches the upstream");
    assert!(seen.header("x-session-id").is_none());
    assert_eq!(gw.get("/projects/1").bearer(&key).send().status, 200);
    let r = with_key(gw, "DELETE", "/projects/1", &key);
    assert_eq!((r.status, r.error_code().as_str()), (403, "forbidden"));

    // Malformed keys: 401 invalid_api_key with a challenge, never the upstream.
    let hits = up.hits();
    let mut typo = key.clone().into_bytes();
    typo[40] = if typo[40] == b'x' { b'y' } else { b'x' };
    for bad in [String::from_utf8(typo).unwrap(), key[..60].to_string(), "pcs_nope".into(), key.replacen("pcs_", "pcx_", 1)] {
        let r = with_key(gw, "GET", "/projects/1", &bad);
        assert_eq!((r.status, r.error_code().as_str()), (401, "invalid_api_key"), "{bad}");
        assert!(r.header("www-authenticate").is_some());
    }
    let r = gw.get("/projects/1").header("X-Api-Key", &key).header("X-Api-Key", &key).send();
    assert_eq!(r.status, 401, "two keys are one malformed key");
    assert_eq!(up.hits(), hits, "no refused request reached the upstream");

    // Listed without the key or its hash; the use above is its last use.
    let list = gw.get("/admin/api-keys").bearer(&admin(gw)).send();
    let listed = list.json()["api_keys"].as_array().unwrap().clone();
    let entry = listed.iter().find(|k| k["id"] == id.as_str()).unwrap();
    assert_eq!(entry["last4"], &key[62..]);
    assert!(entry["last_used_at"].is_string());
    assert!(!String::from_utf8_lossy(&list.body).contains(&key[17..60]));

    // A per-key limit from rate_limits.routes.
    let limited = create_key(gw, json!({"name": "tight", "user_id": "build-bot", "role": "viewer", "rate_limit": "tight"}));
    let limited_key = limited["key"].as_str().unwrap().to_string();
    // (On a shared store each instance first assumes another shares the limit, so it may refuse
    // sooner; it never allows more.)
    let statuses: Vec<u16> = (0..4).map(|_| with_key(gw, "GET", "/projects/1", &limited_key).status).collect();
    assert_eq!((statuses[0], statuses[3]), (200, 429), "{statuses:?}");
    assert_eq!(with_key(gw, "GET", "/projects/1", &key).status, 200, "the other key of the same user is not limited");

    // Bad creations change nothing.
    for (body, field) in [
        (json!({"name": "x", "user_id": "b", "role": "emperor"}), "role"),
        (json!({"name": "x", "user_id": "b", "role": "user", "expires_in_days": -3}), "expires_in_days"),
        (json!({"name": "x", "user_id": "b", "role": "user", "extra": true}), "extra"),
    ] {
        let r = gw.request("POST", "/admin/api-keys").bearer(&admin(gw)).json(&body).send();
        assert_eq!(r.status, 400);
        assert!(r.json()["message"].as_str().unwrap().contains(field), "{:?}", r.json());
    }
    let viewer = gw.token("v", "viewer");
    assert_eq!(gw.get("/admin/api-keys").bearer(&viewer).send().status, 403, "admins only");

    // Revoked: refused at once on this instance; revoking again is 404.
    let r = gw.request("DELETE", &format!("/admin/api-keys/{id}")).bearer(&admin(gw)).send();
    assert_eq!(r.status, 200);
    let r = with_key(gw, "GET", "/projects/1", &key);
    assert_eq!((r.status, r.error_code().as_str()), (401, "invalid_api_key"));
    assert_eq!(gw.request("DELETE", &format!("/admin/api-keys/{id}")).bearer(&admin(gw)).send().status, 404);
    vec![key, limited_key]
}

/// Nothing a run created may appear in its logs or audit trail: not a key, not a piece of one.
fn assert_never_logged(gw: &TestGateway, keys: &[String]) {
    let read = || std::fs::read_to_string(gw.dir().join("audit.log")).unwrap_or_default();
    let kinds = ["admin.api_key_created", "admin.api_key_revoked", "auth.api_key_denied"];
    assert_eventually!(kinds.iter().all(|k| read().contains(k)), "every key event is audited");
    let audit = read();
    let log = gw.log();
    for key in keys {
        let secret = &key[17..60];
        assert!(!log.contains(secret) && !audit.contains(secret), "a key reached the logs");
    }
}

#[test]
fn api_keys_end_to_end_on_the_memory_store() {
    let up = MockUpstream::start();
    let gw = start(&config(&up, None, false));
    let keys = key_story(&gw, &up);
    assert_never_logged(&gw, &keys);
    assert!(gw.metric("portcullis_api_key_requests_total{outcome=\"accepted\"}").unwrap() >= 5.0);
    assert!(gw.metric("portcullis_api_key_requests_total{outcome=\"malformed_key\"}").unwrap() >= 4.0);
    assert_eq!(gw.metric("portcullis_api_keys"), Some(1.0), "one key left");
}

#[test]
fn api_keys_end_to_end_on_redis_with_expiry() {
    let redis = RedisServer::start();
    let up = MockUpstream::start();
    let gw = start(&config(&up, Some(&redis), false));
    let mut keys = key_story(&gw, &up);
    // Expiry: a key whose record says it expired is refused as expired. The record is edited
    // in Redis as another instance would write it, and announced on the same channel.
    let made = create_key(&gw, json!({"name": "short", "user_id": "build-bot", "role": "viewer", "expires_in_days": 1}));
    let (key, id) = (made["key"].as_str().unwrap().to_string(), made["id"].as_str().unwrap().to_string());
    assert_eq!(with_key(&gw, "GET", "/projects/1", &key).status, 200);
    let stored = redis.cli(&["HGET", "portcullis:{credentials}:api-keys", &id]);
    let mut record: Value = serde_json::from_str(stored.trim()).unwrap();
    record["expires_at"] = json!(record["created_at"].as_u64().unwrap() - 1);
    redis.cli(&["HSET", "portcullis:{credentials}:api-keys", &id, &record.to_string()]);
    redis.cli(&["PUBLISH", "portcullis:credentials", "api-keys"]);
    assert_eventually!(with_key(&gw, "GET", "/projects/1", &key).error_code() == "invalid_api_key", "the expired key is refused");
    assert!(with_key(&gw, "GET", "/projects/1", &key).json()["message"].as_str().unwrap().contains("expired"));
    keys.push(key);
    let dump = redis.cli(&["HGETALL", "portcullis:{credentials}:api-keys"]);
    for k in &keys {
        assert!(!dump.contains(&k[17..60]), "Redis holds only keyed hashes");
    }
    assert_never_logged(&gw, &keys);
}

/// Two instances on one Redis: a key made on one works on the other; revoking it, or putting
/// its user, a token or the key on the denylist on one, is refused by the other in well under
/// a second (figures printed; the note reports them).
#[test]
fn two_instances_share_keys_and_the_denylist() {
    let redis = RedisServer::start();
    let up = MockUpstream::start();
    let config = config(&up, Some(&redis), false);
    let (a, b) = (start(&config), start(&config));
    let mut delays = Vec::new();
    let mut made_keys = Vec::new();
    let mut measure = |check: &dyn Fn() -> bool| {
        let t = Instant::now();
        while !check() {
            assert!(t.elapsed() < Duration::from_secs(5), "the other instance never learned of it");
        }
        delays.push(t.elapsed());
    };
    for round in 0..5 {
        let made = create_key(&a, json!({"name": format!("k{round}"), "user_id": format!("bot{round}"), "role": "user"}));
        let (key, id) = (made["key"].as_str().unwrap().to_string(), made["id"].as_str().unwrap().to_string());
        made_keys.push(key.clone());
        assert_eventually!(with_key(&b, "GET", "/profile", &key).status == 200, "B learns of A's new key");
        assert_eq!(a.request("DELETE", &format!("/admin/api-keys/{id}")).bearer(&admin(&a)).send().status, 200);
        measure(&|| with_key(&b, "GET", "/profile", &key).status == 401);
    }
    // The denylist: a user, one token, one key.
    let user = a.create_user("victim@example.com", PASSWORD, "user");
    let login = a.request("POST", "/auth/login").json(&json!({"email": "victim@example.com", "password": PASSWORD})).send().json();
    let (access, refresh) = (login["access_token"].as_str().unwrap().to_string(), login["refresh_token"].as_str().unwrap().to_string());
    assert_eq!(b.get("/profile").bearer(&access).send().status, 200);
    let r = a.request("POST", "/admin/revocations").bearer(&admin(&a)).json(&json!({"user_id": user, "reason": "compromised"})).send();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let entry = r.json()["id"].as_str().unwrap().to_string();
    measure(&|| b.get("/profile").bearer(&access).send().error_code() == "revoked");
    let r = b.request("POST", "/auth/refresh").json(&json!({"refresh_token": refresh})).send();
    assert_eq!(r.status, 401, "the user's refresh tokens are ended too");
    let r = b.request("POST", "/auth/login").json(&json!({"email": "victim@example.com", "password": PASSWORD})).send();
    assert_eq!((r.status, r.error_code().as_str()), (401, "revoked"));
    let listed = b.get("/admin/revocations").bearer(&admin(&b)).send().json();
    assert_eq!(listed["revocations"][0]["user_id"], user.as_str());
    assert_eq!(listed["revocations"][0]["created_by"], "operator");
    assert_eq!(b.request("DELETE", &format!("/admin/revocations/{entry}")).bearer(&admin(&b)).send().status, 200);
    assert_eventually!(
        a.request("POST", "/auth/login").json(&json!({"email": "victim@example.com", "password": PASSWORD})).send().status == 200,
        "lifted everywhere"
    );

    let token = a.token("someone", "user");
    let jti = a.tokens().verify(&token, portcullis::auth::TokenKind::Access).unwrap().jti;
    let r = a.request("POST", "/admin/revocations").bearer(&admin(&a)).json(&json!({"jti": jti, "reason": "leaked"})).send();
    assert_eq!(r.status, 201);
    assert!(r.json()["expires_at"].is_string(), "a jti entry lapses with the longest access lifetime");
    measure(&|| b.get("/profile").bearer(&token).send().error_code() == "revoked");
    assert_eq!(b.get("/profile").bearer(&a.token("someone", "user")).send().status, 200, "only that token");

    let made = create_key(&a, json!({"name": "deny", "user_id": "svc", "role": "user"}));
    let key = made["key"].as_str().unwrap().to_string();
    assert_eventually!(with_key(&b, "GET", "/profile", &key).status == 200, "B learns of the key");
    let r = a.request("POST", "/admin/revocations").bearer(&admin(&a)).json(&json!({"api_key_id": made["id"], "reason": "ci leak"})).send();
    assert_eq!(r.status, 201);
    measure(&|| with_key(&b, "GET", "/profile", &key).error_code() == "revoked");
    assert_eventually!(b.metric("portcullis_denylist_entries") == Some(2.0), "the list's size is a metric");

    made_keys.push(key);
    for gw in [&a, &b] {
        let logged = gw.log() + &std::fs::read_to_string(gw.dir().join("audit.log")).unwrap_or_default();
        assert!(made_keys.iter().all(|k| !logged.contains(&k[17..60])), "a key reached a log");
    }
    delays.sort();
    let median = delays[delays.len() / 2];
    println!("cross-instance revocation delay over {} revocations: median {median:?}, max {:?}", delays.len(), delays[delays.len() - 1]);
    assert!(median < Duration::from_secs(1), "revocations took {median:?} to reach the other instance");
}

/// A proxied request with a key costs no Redis command: the key is checked against the local
/// view, and its last use is written behind (one command per flush, whatever the traffic).
#[test]
fn key_requests_cost_no_redis_round_trip() {
    let redis = RedisServer::start();
    let up = MockUpstream::start();
    let gw = start(&Config::from_yaml(&config(&up, Some(&redis), false)).set("sessions.activity_flush_seconds", "3600").yaml());
    let key = create_key(&gw, json!({"name": "quiet", "user_id": "bot", "role": "user"}))["key"].as_str().unwrap().to_string();
    assert_eq!(with_key(&gw, "GET", "/profile", &key).status, 200);
    assert_eventually!(redis.commands_processed().abs_diff(redis.commands_processed()) <= 1, "Redis is quiet");
    let before = redis.commands_processed();
    for _ in 0..500 {
        assert_eq!(with_key(&gw, "GET", "/profile", &key).status, 200);
    }
    let used = redis.commands_processed() - before;
    println!("{used} Redis commands for 500 requests with an API key (INFO included)");
    // INFO counts itself; a write-behind flush of the last use may fall inside the loop.
    assert!(used <= 6, "{used} Redis commands for 500 requests with a key");
}

#[test]
fn self_service_keys_for_users_of_their_own_role_or_lower() {
    let up = MockUpstream::start();
    let gw = start(&config(&up, None, true));
    gw.create_user("dev@example.com", PASSWORD, "user");
    let login = gw.request("POST", "/auth/login").json(&json!({"email": "dev@example.com", "password": PASSWORD})).send().json();
    let access = login["access_token"].as_str().unwrap().to_string();
    let r = gw.request("POST", "/auth/api-keys").bearer(&access).json(&json!({"name": "laptop", "role": "admin"})).send();
    assert_eq!(r.status, 400, "above the user's own role");
    let r = gw.request("POST", "/auth/api-keys").bearer(&access).json(&json!({"name": "laptop", "scopes": ["projects.read"]})).send();
    assert_eq!(r.status, 201);
    let made = r.json();
    assert_eq!((made["role"].as_str(), made["user_id"].is_string()), (Some("user"), true));
    let key = made["key"].as_str().unwrap().to_string();
    assert_eq!(with_key(&gw, "POST", "/auth/api-keys", &key).status, 403, "a key cannot make keys");
    let mine = gw.get("/auth/api-keys").bearer(&access).send().json();
    assert_eq!(mine["api_keys"].as_array().unwrap().len(), 1);
    let other = gw.token("someone-else", "user");
    assert_eq!(gw.get("/auth/api-keys").bearer(&other).send().json()["api_keys"], json!([]));
    let id = made["id"].as_str().unwrap();
    assert_eq!(gw.request("DELETE", &format!("/auth/api-keys/{id}")).bearer(&other).send().status, 404);
    assert_eq!(gw.request("DELETE", &format!("/auth/api-keys/{id}")).bearer(&access).send().status, 200);
    assert_eq!(with_key(&gw, "GET", "/profile", &key).status, 401);
}

#[test]
fn scoped_keys_meet_require_scopes_with_an_rfc_6750_challenge() {
    let up = MockUpstream::start();
    let c = Config::from_yaml(&config(&up, None, false)).route("projects-read", "require_scopes", "[projects.read]").yaml();
    let gw = start(&c);
    let narrow =
        create_key(&gw, json!({"name": "n", "user_id": "bot", "role": "user", "scopes": ["other"]}))["key"].as_str().unwrap().to_string();
    let wide = create_key(&gw, json!({"name": "w", "user_id": "bot", "role": "user", "scopes": ["projects.read"]}))["key"]
        .as_str()
        .unwrap()
        .to_string();
    let r = with_key(&gw, "GET", "/projects/1", &narrow);
    assert_eq!((r.status, r.error_code().as_str()), (403, "insufficient_scope"));
    assert_eq!(r.header("www-authenticate"), Some(r#"Bearer realm="portcullis", error="insufficient_scope", scope="projects.read""#));
    assert_eq!(with_key(&gw, "GET", "/projects/1", &wide).status, 200);
    assert_eq!(gw.get("/projects/1").bearer(&gw.token("u", "user")).send().status, 200, "a login session is not scope-limited");
}

#[test]
fn api_keys_need_their_secret_configured() {
    let up = MockUpstream::start();
    let text = config(&up, None, false);
    let path = std::env::temp_dir().join(format!("keys-{}.yaml", std::process::id()));
    std::fs::write(&path, &text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "-c"])
        .arg(&path)
        .env("JWT_SECRET_KEY", common::TEST_SECRET)
        .env_remove("API_KEY_SECRET")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(said.contains("api_keys.secret_env") && said.contains("API_KEY_SECRET"), "{said}");
    let line = said.lines().find(|l| l.contains("api_keys.secret_env")).unwrap();
    assert!(line.starts_with(&path.display().to_string()), "file and line named: {line}");
}

/// Redis down: keys and denylist entries cannot be created, listed or lifted (503, nothing
/// half-done), while proxied requests keep being judged on the last known views; back up, the
/// gateway carries on by itself.
#[test]
fn a_redis_outage_refuses_credential_changes_and_keeps_serving_known_keys() {
    let mut redis = RedisServer::start();
    let up = MockUpstream::start();
    let gw = start(&config(&up, Some(&redis), false));
    let key = create_key(&gw, json!({"name": "k", "user_id": "bot", "role": "user"}))["key"].as_str().unwrap().to_string();
    redis.kill();
    let r = gw.request("POST", "/admin/api-keys").bearer(&admin(&gw)).json(&json!({"name": "x", "user_id": "b", "role": "user"})).send();
    assert_eq!((r.status, r.error_code().as_str()), (503, "store_unavailable"));
    let r = gw.request("POST", "/admin/revocations").bearer(&admin(&gw)).json(&json!({"user_id": "bot", "reason": "r"})).send();
    assert_eq!((r.status, r.error_code().as_str()), (503, "store_unavailable"));
    assert_eq!(gw.get("/admin/api-keys").bearer(&admin(&gw)).send().status, 503);
    assert_eq!(with_key(&gw, "GET", "/profile", &key).status, 200, "the key still works on the local view");
    redis.restart();
    assert_eventually!(
        gw.request("POST", "/admin/revocations").bearer(&admin(&gw)).json(&json!({"user_id": "bot", "reason": "r"})).send().status == 201,
        "changes work again once Redis is back"
    );
    assert_eventually!(with_key(&gw, "GET", "/profile", &key).error_code() == "revoked", "and reach the request path");
}
