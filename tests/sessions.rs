//! Login, refresh, logout and sessions through the real gateway, on both store backends; two
//! instances sharing one Redis; Redis dying under traffic.
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its reason

mod common;

use common::config::Config;

use common::{redis_store, seed_config, seed_config_with_store, MockUpstream, RedisServer, Reply, TestGateway, TEST_SECRET};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const PASSWORD: &str = "demo-password-123";

fn login(gw: &TestGateway, email: &str) -> (String, String) {
    let r = gw.request("POST", "/auth/login").header("User-Agent", "phone/1.0").json(&json!({"email": email, "password": PASSWORD})).send();
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    (v["access_token"].as_str().unwrap().into(), v["refresh_token"].as_str().unwrap().into())
}

fn refresh(gw: &TestGateway, token: &str) -> Reply {
    gw.request("POST", "/auth/refresh").json(&json!({"refresh_token": token})).send()
}

/// The whole story on one gateway, whatever its store.
fn login_use_refresh_reuse_logout(gw: &TestGateway, up: &MockUpstream) {
    let id = gw.create_user("demo@example.com", PASSWORD, "viewer");
    let (access, refresh1) = login(gw, "demo@example.com");

    let r = gw.get("/projects/1").bearer(&access).send();
    assert_eq!(r.status, 200);
    assert_eq!(up.last().header("x-user-id"), Some(id.as_str()));

    let me = gw.get("/auth/me").bearer(&access).send().json();
    assert_eq!((me["user_id"].as_str(), me["role"].as_str()), (Some(id.as_str()), Some("viewer")));

    let r = refresh(gw, &refresh1);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let v = r.json();
    let (access2, refresh2) = (v["access_token"].as_str().unwrap().to_string(), v["refresh_token"].as_str().unwrap().to_string());
    assert_eq!(v["token_type"], "bearer");
    assert_eq!(gw.get("/projects/1").bearer(&access2).send().status, 200);

    let sessions = gw.get("/auth/sessions").bearer(&access2).send().json();
    let list = sessions["sessions"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!((list[0]["user_agent"].as_str(), list[0]["current"].as_bool()), (Some("phone/1.0"), Some(true)));

    // Reuse of a rotated refresh token ends the session: every token of it is refused.
    let r = refresh(gw, &refresh1);
    assert_eq!((r.status, r.error_code().as_str()), (401, "refresh_token_reused"));
    assert_eq!(refresh(gw, &refresh2).status, 401);
    assert_eq!(gw.get("/projects/1").bearer(&access2).send().status, 401);

    // A new login, then logout: its access token is refused on proxied routes at once.
    let (access3, refresh3) = login(gw, "demo@example.com");
    assert_eq!(gw.get("/projects/1").bearer(&access3).send().status, 200);
    let r = gw.request("POST", "/auth/logout").bearer(&access3).send();
    assert_eq!((r.status, r.json()), (200, json!({"status": "logged_out"})));
    let r = gw.get("/projects/1").bearer(&access3).send();
    assert_eq!((r.status, r.error_code().as_str()), (401, "invalid_token"));
    assert_eq!(refresh(gw, &refresh3).status, 401);

    // Logout-all across several devices.
    let (a, _) = login(gw, "demo@example.com");
    let (b, _) = login(gw, "demo@example.com");
    let r = gw.request("POST", "/auth/logout-all").bearer(&a).send();
    assert_eq!(r.json()["sessions_revoked"], 2);
    assert_eq!(gw.get("/projects/1").bearer(&b).send().status, 401);

    // One session of several can be ended from another; the list shows who is current.
    let (d1, _) = login(gw, "demo@example.com");
    let (d2, _) = login(gw, "demo@example.com");
    let list = gw.get("/auth/sessions").bearer(&d1).send().json();
    let other = list["sessions"].as_array().unwrap().iter().find(|s| s["current"] == false).unwrap()["id"].as_str().unwrap().to_string();
    assert_eq!(gw.request("DELETE", &format!("/auth/sessions/{other}")).bearer(&d1).send().status, 200);
    assert_eq!(gw.get("/projects/1").bearer(&d2).send().status, 401, "the ended session is refused");
    assert_eq!(gw.get("/projects/1").bearer(&d1).send().status, 200);

    // An admin changes the role: the session picks it up at its next refresh.
    let admin = gw.token("operator", "admin");
    let (_, r) = login(gw, "demo@example.com");
    let changed = gw.request("PATCH", &format!("/admin/users/{id}")).bearer(&admin).json(&json!({"role": "user"})).send();
    assert_eq!((changed.status, changed.json()["role"].as_str()), (200, Some("user")));
    let renewed = refresh(gw, &r).json();
    let me = gw.get("/auth/me").bearer(renewed["access_token"].as_str().unwrap()).send().json();
    assert_eq!(me["role"], "user");
    let users = gw.get("/admin/users").bearer(&admin).send().json();
    assert!(users["users"].as_array().unwrap().iter().any(|u| u["email"] == "demo@example.com" && u["role"] == "user"));

    // Deleting a user ends their sessions.
    let (c, _) = login(gw, "demo@example.com");
    assert_eq!(gw.request("DELETE", &format!("/admin/users/{id}")).bearer(&admin).send().status, 200);
    assert_eq!(gw.get("/projects/1").bearer(&c).send().status, 401);
    let r = gw.request("POST", "/auth/login").json(&json!({"email": "demo@example.com", "password": PASSWORD})).send();
    assert_eq!((r.status, r.error_code().as_str()), (401, "invalid_credentials"));
}

#[test]
fn the_session_story_with_the_memory_store() {
    let up = MockUpstream::start();
    let gw = TestGateway::start(&seed_config(&up.url()));
    login_use_refresh_reuse_logout(&gw, &up);
}

#[test]
fn the_session_story_with_the_redis_store() {
    let redis = RedisServer::start();
    let up = MockUpstream::start();
    let gw = TestGateway::start(&seed_config_with_store(&up.url(), &redis_store(&redis.url())));
    login_use_refresh_reuse_logout(&gw, &up);
    // Every key the gateway wrote has a TTL, except users (deleted explicitly).
    for key in redis.cli(&["KEYS", "portcullis:*"]).lines().filter(|k| !k.is_empty()) {
        let ttl: i64 = redis.cli(&["TTL", key]).trim().parse().unwrap();
        let permanent = key.starts_with("portcullis:{users}:");
        assert!(permanent || ttl > 0, "{key} has no TTL");
    }
}

#[test]
fn login_and_endpoint_errors_are_json_4xx_and_never_500() {
    let up = MockUpstream::start();
    let gw = TestGateway::start(&seed_config(&up.url()));
    gw.create_user("e@example.com", PASSWORD, "user");
    // method, path, content type, body, status, error code
    type Case = (&'static str, &'static str, Option<&'static str>, Vec<u8>, u16, &'static str);
    let cases: Vec<Case> = vec![
        ("POST", "/auth/login", Some("application/json"), b"{bad json".to_vec(), 400, "invalid_request"),
        ("POST", "/auth/login", Some("application/json"), br#"{"email":"e@example.com"}"#.to_vec(), 400, "invalid_request"),
        ("POST", "/auth/login", Some("text/plain"), br#"{"email":"e@example.com","password":"x"}"#.to_vec(), 400, "invalid_request"),
        ("POST", "/auth/login", Some("application/json"), vec![b' '; 17 * 1024], 400, "invalid_request"),
        (
            "POST",
            "/auth/login",
            Some("application/json"),
            br#"{"email":"e@example.com","password":"wrong-wrong"}"#.to_vec(),
            401,
            "invalid_credentials",
        ),
        (
            "POST",
            "/auth/login",
            Some("application/json"),
            br#"{"email":"nobody@example.com","password":"wrong-wrong"}"#.to_vec(),
            401,
            "invalid_credentials",
        ),
        ("POST", "/auth/refresh", Some("application/json"), br#"{"refresh_token":"nope"}"#.to_vec(), 401, "invalid_token"),
        ("GET", "/auth/login", None, Vec::new(), 405, "method_not_allowed"),
        ("GET", "/auth/unknown", None, Vec::new(), 404, "not_found"),
        ("POST", "/auth/logout", None, Vec::new(), 401, "missing_token"),
        ("GET", "/admin/users", None, Vec::new(), 401, "missing_token"),
    ];
    for (method, path, ct, body, status, code) in cases {
        let mut req = gw.request(method, path).body(body.clone());
        if let Some(ct) = ct {
            req = req.header("Content-Type", ct);
        }
        let r = req.send();
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (status, code),
            "{method} {path} {:?}",
            String::from_utf8_lossy(&body[..body.len().min(60)])
        );
        assert!(r.json()["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let viewer = gw.token("v", "viewer");
    assert_eq!(gw.get("/admin/users").bearer(&viewer).send().status, 403);
    assert_eq!(up.hits(), 0, "the gateway's own endpoints never reach the upstream");
}

#[test]
fn users_from_the_users_file_can_log_in() {
    let up = MockUpstream::start();
    let hash = {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("hash-password")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(format!("{PASSWORD}\n").as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.yaml");
    std::fs::write(&users, format!("users:\n  - {{ id: \"7\", email: file@example.com, role: admin, password_hash: \"{hash}\" }}\n"))
        .unwrap();
    let config = format!("{}\nusers: {{ file: \"{}\" }}\n", seed_config(&up.url()), users.display());
    let gw = TestGateway::start(&config);
    let (access, _) = login(&gw, "file@example.com");
    assert_eq!(gw.request("POST", "/admin/settings").bearer(&access).send().status, 200);
    let listed = gw.get("/admin/users").bearer(&access).send().json();
    assert_eq!(listed["users"][0]["source"], "file");
}

/// Two gateway processes on one Redis: a session made on one is honoured by the other, and a
/// logout on one is refused by the other almost at once (pub/sub, no per-request Redis call).
#[test]
fn two_instances_share_sessions_and_revocations() {
    let redis = RedisServer::start();
    let up = MockUpstream::start();
    let config = seed_config_with_store(&up.url(), &redis_store(&redis.url()));
    let a = TestGateway::start(&config);
    let b = TestGateway::start(&config);
    a.create_user("both@example.com", PASSWORD, "user");

    let mut delays = Vec::new();
    for _ in 0..5 {
        let (access, _) = login(&a, "both@example.com");
        assert_eq!(b.get("/profile").bearer(&access).send().status, 200, "B honours A's session");
        assert_eq!(b.request("POST", "/auth/logout").bearer(&access).send().status, 200);
        let start = Instant::now();
        while a.get("/profile").bearer(&access).send().status != 401 {
            assert!(start.elapsed() < Duration::from_secs(5), "A never learned of B's logout");
        }
        delays.push(start.elapsed());
    }
    delays.sort();
    let median = delays[delays.len() / 2];
    println!("cross-instance revocation delay: median {median:?}, max {:?} (over 5 logouts)", delays[delays.len() - 1]);
    assert!(median < Duration::from_secs(1), "revocation took {median:?} to reach the other instance");

    // A refresh token rotated on A and replayed on B is reuse.
    let (_, r1) = login(&a, "both@example.com");
    assert_eq!(refresh(&a, &r1).status, 200);
    let r = refresh(&b, &r1);
    assert_eq!((r.status, r.error_code().as_str()), (401, "refresh_token_reused"));
}

/// Proxied requests never wait on Redis: steady-state traffic costs zero Redis commands.
#[test]
fn proxied_requests_cost_no_redis_round_trip() {
    let redis = RedisServer::start();
    let up = MockUpstream::start();
    let config = Config::seed(&up.url()).redis(&redis.url()).set("sessions.activity_flush_seconds", "3600").yaml();
    let gw = TestGateway::start(&config);
    gw.create_user("quiet@example.com", PASSWORD, "user");
    let (access, _) = login(&gw, "quiet@example.com");
    // Wait until the login's own writes are over: two INFO calls in a row, nothing in between.
    assert_eventually!(redis.commands_processed().abs_diff(redis.commands_processed()) <= 1, "Redis is quiet");
    let before = redis.commands_processed();
    for _ in 0..200 {
        assert_eq!(gw.get("/profile").bearer(&access).send().status, 200);
    }
    let after = redis.commands_processed();
    // INFO itself counts as one command per call.
    assert!(after - before <= 2, "{} Redis commands for 200 proxied requests", after - before);
}

#[test]
fn a_redis_outage_keeps_proxied_traffic_flowing_and_recovers_by_itself() {
    let mut redis = RedisServer::start();
    let up = MockUpstream::start();
    let gw = TestGateway::start(&seed_config_with_store(&up.url(), &redis_store(&redis.url())));
    gw.create_user("o@example.com", PASSWORD, "user");
    let (access, refresh_token) = login(&gw, "o@example.com");
    let (revoked, _) = login(&gw, "o@example.com");
    assert_eq!(gw.request("POST", "/auth/logout").bearer(&revoked).send().status, 200);
    assert_eq!(gw.admin_get("/readyz").status, 200);

    redis.kill();
    assert_eventually!(gw.admin_get("/readyz").status == 503, "readyz reports the outage");
    assert_eq!(gw.admin_get("/readyz").json()["reason"], "store_unavailable");
    for _ in 0..20 {
        assert_eq!(gw.get("/profile").bearer(&access).send().status, 200, "traffic flows on the cached view");
        assert_eq!(gw.get("/profile").bearer(&revoked).send().status, 401, "the cached view still refuses revoked sessions");
    }
    let r = gw.request("POST", "/auth/login").json(&json!({"email": "o@example.com", "password": PASSWORD})).send();
    assert_eq!((r.status, r.error_code().as_str()), (503, "store_unavailable"));
    assert_eq!(refresh(&gw, &refresh_token).status, 503);
    assert_eq!(gw.request("POST", "/auth/logout").bearer(&access).send().status, 503);

    redis.restart();
    assert_eventually!(gw.admin_get("/readyz").status == 200, "readyz recovers by itself");
    // Nothing was lost: the session made before the outage still refreshes.
    let r = refresh(&gw, &refresh_token);
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(gw.get("/profile").bearer(&revoked).send().status, 401);
    login(&gw, "o@example.com");
}

#[test]
fn deny_mode_refuses_authenticated_traffic_while_redis_is_down() {
    let mut redis = RedisServer::start();
    let up = MockUpstream::start();
    let config = format!("{}\nsessions: {{ on_store_outage: deny }}\n", seed_config_with_store(&up.url(), &redis_store(&redis.url())));
    let gw = TestGateway::start(&config);
    let token = gw.token("u", "user");
    assert_eq!(gw.get("/profile").bearer(&token).send().status, 200);
    redis.kill();
    assert_eventually!(gw.get("/profile").bearer(&token).send().status == 503, "deny mode refuses");
    assert_eq!(gw.get("/public/x").send().status, 200, "public routes need no session");
    redis.restart();
    assert_eventually!(gw.get("/profile").bearer(&token).send().status == 200, "and recovers");
}

#[test]
fn no_password_hash_or_token_reaches_the_logs() {
    let redis = RedisServer::start();
    let up = MockUpstream::start();
    let gw = TestGateway::start(&seed_config_with_store(&up.url(), &redis_store(&redis.url())));
    let id = gw.create_user("secret@example.com", PASSWORD, "user");
    let (access, refresh_token) = login(&gw, "secret@example.com");
    let r = refresh(&gw, &refresh_token).json();
    gw.request("POST", "/auth/login").json(&json!({"email": "secret@example.com", "password": "wrong-password-here"})).send();
    gw.request("POST", "/auth/logout").bearer(&access).send();
    let hash = redis.cli(&["HGET", &format!("portcullis:{{users}}:user:{id}"), "password_hash"]).trim().to_string();
    assert!(hash.starts_with("$argon2id$"));
    let log = gw.log();
    let new_access = r["access_token"].as_str().unwrap();
    for secret in [PASSWORD, "wrong-password-here", hash.as_str(), access.as_str(), refresh_token.as_str(), new_access, TEST_SECRET] {
        let leaks: Vec<&str> = log.lines().filter(|l| l.contains(secret)).collect();
        assert!(leaks.is_empty(), "a secret reached the log: {leaks:#?}");
    }
    let _: Value = r;
}
