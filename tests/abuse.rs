//! Brute force, lockout and rate limits through the real gateway, alone and as two instances on
//! one Redis.
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its reason

mod common;

use common::config::Config;

use common::{redis_store, seed_config, seed_config_with_store, MockUpstream, RedisServer, Reply, TestGateway};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PASSWORD: &str = "victim-password-123";

fn login_from(gw: &TestGateway, ip: &str, email: &str, password: &str) -> Reply {
    gw.request("POST", "/auth/login").header("X-Forwarded-For", ip).json(&json!({"email": email, "password": password})).send()
}

fn with_security(base: String, extra: &str) -> String {
    format!("{base}\naudit: {{ sink: file, file: audit.log }}\n{extra}\n")
}

#[test]
fn brute_force_from_rotating_ips_locks_the_account_then_it_recovers() {
    let up = MockUpstream::start();
    let config = with_security(
        Config::seed(&up.url()).set("server.trusted_proxies", r#"["127.0.0.1"]"#).yaml(),
        "rate_limits: { login: { per_ip: { requests: 10, per_seconds: 60 }, per_account: { requests: 1000, per_seconds: 60 } } }\nlockout: { after_failures: 5, base_seconds: 3, max_seconds: 6 }",
    );
    let gw = TestGateway::start(&config);
    gw.create_user("victim@example.com", PASSWORD, "user");

    let mut statuses = Vec::new();
    for i in 0..50 {
        let ip = format!("198.51.100.{}", i + 1); // a new client IP each time, through the trusted proxy
        let r = login_from(&gw, &ip, "victim@example.com", "wrong-password-guess");
        statuses.push((r.status, r.error_code()));
    }
    assert!(statuses[..5].iter().all(|(s, c)| *s == 401 && c == "invalid_credentials"), "{statuses:?}");
    assert!(statuses[5..].iter().all(|(s, c)| *s == 429 && c == "account_locked"), "locked after 5 failures: {statuses:?}");

    let r = login_from(&gw, "203.0.113.1", "victim@example.com", PASSWORD);
    assert_eq!((r.status, r.error_code().as_str()), (429, "account_locked"), "refused while locked, even with the right password");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3).contains(&retry), "Retry-After {retry}");

    // Accepted once the lockout ends (polled from ever new addresses, so the per-IP login limit
    // is not what answers).
    let mut attempt = 0;
    let started = std::time::Instant::now();
    assert_eventually!(
        {
            attempt += 1;
            login_from(&gw, &format!("203.0.114.{}", attempt % 250), "victim@example.com", PASSWORD).status == 200
        },
        "accepted after the lockout"
    );
    assert!(started.elapsed() + Duration::from_millis(1100) >= Duration::from_secs(retry), "not before Retry-After");

    assert_eventually!(gw.audit_events().iter().any(|e| e["event"] == "auth.login" && e["status"] == "success"), "the success is audited");
    let events = gw.audit_events();
    let count = |kind: &str, reason: &str| {
        events.iter().filter(|e| e["event"] == kind && (reason.is_empty() || e["details"]["reason"] == reason)).count()
    };
    assert_eq!(count("auth.login", "invalid_credentials"), 5);
    assert_eq!(count("auth.lockout", ""), 1);
    // 45 during the attack, the right password once while locked, and every poll but the last.
    assert_eq!(count("auth.login", "account_locked"), 46 + (attempt - 1));
    let ips: std::collections::HashSet<&str> =
        events.iter().filter(|e| e["event"] == "auth.login").filter_map(|e| e["client_ip"].as_str()).collect();
    assert!(ips.contains("198.51.100.7"), "the client IP from the trusted proxy's X-Forwarded-For is recorded");
}

#[test]
fn without_trusted_proxies_forwarded_for_is_ignored_and_the_per_ip_limit_bites() {
    let up = MockUpstream::start();
    let config = with_security(seed_config(&up.url()), "rate_limits: { login: { per_ip: { requests: 10, per_seconds: 60 } } }");
    let gw = TestGateway::start(&config);
    gw.create_user("victim@example.com", PASSWORD, "user");
    let mut codes = Vec::new();
    for i in 0..15 {
        let r = login_from(&gw, &format!("198.51.100.{i}"), "victim@example.com", "wrong-password-guess");
        codes.push(r.status);
        if r.status == 429 {
            assert_eq!(r.error_code(), "rate_limited");
            assert!(r.header("retry-after").is_some());
            assert!(r.header("ratelimit-policy").unwrap().contains("q=10;w=60"), "{:?}", r.header("ratelimit-policy"));
            assert!(r.header("ratelimit").unwrap().contains("r=0"));
        }
    }
    assert_eq!(codes.iter().filter(|c| **c == 401).count(), 10, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 429).count(), 5, "{codes:?}");
    let events = gw.audit_events();
    assert!(events.iter().all(|e| e["client_ip"] != "198.51.100.3"), "X-Forwarded-For from an untrusted peer is not believed");
}

#[test]
fn unauthenticated_requests_are_throttled_per_ip_and_limits_are_advertised() {
    let up = MockUpstream::start();
    let config = with_security(
        seed_config(&up.url()),
        "rate_limits: { api: { per_ip_public: { requests: 5, per_seconds: 60 }, per_user: { requests: 3, per_seconds: 60 } } }",
    );
    let gw = TestGateway::start(&config);
    let statuses: Vec<u16> = (0..8).map(|_| gw.get("/profile").bearer("guessed.token.value").send().status).collect();
    assert_eq!(statuses, vec![401, 401, 401, 401, 401, 429, 429, 429], "token guessing is throttled");
    let token = gw.token("u1", "user");
    let r = gw.get("/profile").bearer(&token).send();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-policy"), Some(r#""api_user";q=3;w=60"#));
    let state = r.header("ratelimit").unwrap();
    assert!(state.starts_with(r#""api_user";r=2;t="#), "{state}");
    assert_eq!(gw.get("/profile").bearer(&token).send().status, 200);
    assert_eq!(gw.get("/profile").bearer(&token).send().status, 200);
    let r = gw.get("/profile").bearer(&token).send();
    assert_eq!((r.status, r.error_code().as_str()), (429, "rate_limited"));
    assert_eq!(gw.metric(r#"portcullis_rate_limited_total{limit="api_user"}"#), Some(1.0));
    assert_eq!(up.hits(), 3, "refused requests never reach the upstream");
}

#[test]
fn two_instances_share_login_and_api_limits() {
    let redis = RedisServer::start();
    let up = MockUpstream::start();
    let config = with_security(
        seed_config_with_store(&up.url(), &redis_store(&redis.url())),
        "rate_limits: { login: { per_ip: { requests: 6, per_seconds: 60 } }, api: { per_user: { requests: 200, per_seconds: 30 } } }",
    );
    let a = Arc::new(TestGateway::start(&config));
    let b = Arc::new(TestGateway::start(&config));

    // Login limit: exact across instances.
    let codes: Vec<u16> =
        (0..10).map(|i| login_from(if i % 2 == 0 { &a } else { &b }, "x", "nobody@example.com", "wrong-password!").status).collect();
    assert_eq!(codes.iter().filter(|c| **c == 401).count(), 6, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 429).count(), 4, "{codes:?}");

    // API limit: both instances hammered with one user's token until 500 attempts (well past the
    // limit of 200) have been made, however fast this machine is (15 s at most).
    let token = a.token("shared-user", "user");
    let (allowed, attempts) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(15);
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let (gw, token, allowed, attempts) =
                (if i % 2 == 0 { a.clone() } else { b.clone() }, token.clone(), allowed.clone(), attempts.clone());
            std::thread::spawn(move || {
                // At least 1.5 s as well: shares spent near the limit are refreshed by the next
                // sync (every 100 ms), so the last requests of the limit need a few syncs.
                while Instant::now() < deadline
                    && (attempts.fetch_add(1, Ordering::Relaxed) < 500 || started.elapsed() < Duration::from_millis(1500))
                {
                    if gw.get("/profile").bearer(&token).send().status == 200 {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let allowed = allowed.load(Ordering::Relaxed);
    let overshoot = allowed as f64 / 200.0 - 1.0;
    println!("two instances, limit 200 per 30 s: {allowed} allowed ({:+.1}%)", overshoot * 100.0);

    assert!(allowed >= 190, "the limit was (nearly) reached: {allowed}");
    assert!(allowed <= 220, "two instances together stay within 10% of the limit: {allowed}");
}

#[test]
fn a_route_can_name_its_own_limit() {
    let up = MockUpstream::start();
    let config = Config::seed(&up.url())
        .route("profile", "rate_limit", "heavy")
        .set("rate_limits.routes.heavy", "{ requests: 2, per_seconds: 60 }")
        .yaml();
    let gw = TestGateway::start(&config);
    let token = gw.token("u", "user");
    assert_eq!(gw.get("/profile").bearer(&token).send().status, 200);
    let r = gw.get("/profile").bearer(&token).send();
    assert_eq!((r.status, r.header("ratelimit-policy")), (200, Some(r#""heavy";q=2;w=60"#)));
    let r = gw.get("/profile").bearer(&token).send();
    assert_eq!((r.status, r.error_code().as_str()), (429, "rate_limited"));
    assert_eq!(gw.get("/public/x").send().status, 200, "other routes are not limited by it");
    // Another user has a limit of their own.
    assert_eq!(gw.get("/profile").bearer(&gw.token("v", "user")).send().status, 200);
}
