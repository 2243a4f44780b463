//! The security audit log: complete under load, no secrets, file rotation, Redis stream sink,
//! sampling, and counted (never silent) loss.
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its reason

mod common;

use common::{redis_store, seed_config, seed_config_with_store, MockUpstream, RedisServer, TestGateway, TEST_SECRET};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

fn events(path: &std::path::Path) -> Vec<Value> {
    common::audit_lines(path)
}

fn file_config(up: &MockUpstream, extra: &str) -> String {
    format!("{}\naudit: {{ sink: file, file: audit.log{extra} }}\n", seed_config(&up.url()))
}

#[test]
fn every_request_yields_exactly_one_access_event_and_no_secret() {
    let up = MockUpstream::start();
    let gw = Arc::new(TestGateway::start(&file_config(&up, "")));
    let admin = gw.token("operator", "admin");
    gw.request("POST", "/admin/users")
        .bearer(&admin)
        .json(&json!({"email": "a@example.com", "password": "audit-password-123", "role": "viewer"}))
        .send();
    let login = gw.request("POST", "/auth/login").json(&json!({"email": "a@example.com", "password": "audit-password-123"})).send().json();
    let (access, refresh) = (login["access_token"].as_str().unwrap().to_string(), login["refresh_token"].as_str().unwrap().to_string());
    gw.request("POST", "/auth/login").json(&json!({"email": "a@example.com", "password": "wrong-password-xyz"})).send();

    const PER_THREAD: usize = 125;
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let (gw, access) = (gw.clone(), access.clone());
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    match (t + i) % 4 {
                        0 => gw.get("/projects/1").bearer(&access).send(),               // granted
                        1 => gw.request("DELETE", "/projects/1").bearer(&access).send(), // 403
                        2 => gw.get("/profile").bearer("bad.token.here").send(),         // 401
                        _ => gw.get("/nowhere").send(),                                  // 404
                    };
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let path = gw.dir().join("audit.log");
    let n = 4 * PER_THREAD;
    assert_eventually!(events(&path).iter().filter(|e| e["event"] == "access").count() == n, "exactly {n} access events");
    let all = events(&path);
    let access_events: Vec<&Value> = all.iter().filter(|e| e["event"] == "access").collect();
    assert_eq!(access_events.len(), n);
    assert_eq!(access_events.iter().filter(|e| e["status"] == "granted").count(), n / 4);
    assert_eq!(access_events.iter().filter(|e| e["status"] == "denied").count(), 3 * n / 4);
    for e in &all {
        for k in ["timestamp", "event", "status", "user_id", "request_id", "client_ip", "user_agent", "details"] {
            assert!(e.get(k).is_some(), "{k} missing in {e}");
        }
    }
    let granted = access_events.iter().find(|e| e["status"] == "granted").unwrap();
    assert_eq!(granted["details"]["route"], "projects-read");
    assert_eq!(granted["details"]["requirement"], "projects:read");
    assert_eq!(granted["details"]["path"], "/projects/1");
    assert_eq!(granted["details"]["status"], 200);
    assert!(all.iter().any(|e| e["event"] == "auth.token_rejected" && e["details"]["reason"] == "malformed"));
    assert!(all.iter().any(|e| e["event"] == "auth.login" && e["details"]["reason"] == "invalid_credentials"));
    assert!(all.iter().any(|e| e["event"] == "admin.user_created"));

    gw.request("POST", "/auth/refresh").json(&json!({"refresh_token": refresh})).send();
    gw.request("POST", "/auth/logout").bearer(&access).send();
    assert_eventually!(events(&path).iter().any(|e| e["event"] == "auth.logout"), "logout audited");

    // Grep everything the run wrote for every secret it used.
    let audit_text = std::fs::read_to_string(&path).unwrap();
    let log = gw.log();
    for secret in [TEST_SECRET, "audit-password-123", "wrong-password-xyz", access.as_str(), refresh.as_str(), admin.as_str()] {
        assert!(!audit_text.contains(secret), "a secret reached the audit log");
        assert!(!log.contains(secret), "a secret reached the log");
    }
    assert!(!audit_text.contains("$argon2"), "a password hash reached the audit log");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn the_audit_file_is_reopened_on_sighup_for_rotation() {
    let up = MockUpstream::start();
    let gw = TestGateway::start(&file_config(&up, ""));
    let path = gw.dir().join("audit.log");
    gw.get("/public/a").send();
    assert_eventually!(events(&path).len() == 1, "first event written");
    let rotated = gw.dir().join("audit.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    gw.signal("HUP");
    assert_eventually!(gw.log().contains("audit file reopened"), "the writer reopened the file");
    gw.get("/public/b").send();
    let access = |p: &std::path::Path| events(p).iter().filter(|e| e["event"] == "access").count();
    assert_eventually!(access(&path) == 1, "a new file is started after SIGHUP");
    assert_eq!(access(&rotated), 1, "the rotated file keeps what it had");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn granted_access_can_be_sampled_but_denials_never_are() {
    let up = MockUpstream::start();
    let gw = TestGateway::start(&file_config(&up, ", sample_granted: 0.25"));
    for _ in 0..40 {
        gw.get("/public/a").send();
        gw.get("/profile").send();
    }
    let path = gw.dir().join("audit.log");
    assert_eventually!(events(&path).iter().filter(|e| e["event"] == "access" && e["status"] == "denied").count() == 40, "every denial");
    assert_eq!(events(&path).iter().filter(|e| e["event"] == "access" && e["status"] == "granted").count(), 10, "a quarter of the grants");
}

#[test]
fn the_redis_stream_sink_gets_every_event_and_an_outage_is_counted() {
    let mut redis = RedisServer::start();
    let up = MockUpstream::start();
    let config = format!(
        "{}\naudit: {{ sink: redis, stream: \"audit-test\", max_len: 1000 }}\n",
        seed_config_with_store(&up.url(), &redis_store(&redis.url()))
    );
    let gw = TestGateway::start(&config);
    for _ in 0..20 {
        gw.get("/public/a").send();
    }
    assert_eventually!(redis.cli(&["XLEN", "audit-test"]).trim() == "20", "20 events in the stream");
    let entry = redis.cli(&["XRANGE", "audit-test", "-", "+", "COUNT", "1"]);
    assert!(entry.contains("\"event\":\"access\""), "{entry}");

    redis.kill();
    for _ in 0..10 {
        gw.get("/public/a").send();
    }
    assert_eventually!(gw.metric("portcullis_audit_dropped_total").unwrap_or(0.0) >= 10.0, "the loss is counted");
    assert!(gw.log().contains("audit events lost"), "and logged");
}
