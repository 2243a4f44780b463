//! The gateway core, end to end: a real portcullis process, a real recording upstream.
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its reason

mod common;

use common::config::Config;

use common::{seed_config, MockUpstream, TestGateway, TEST_SECRET};
use portcullis::auth::tokens::TokenSpec;
use portcullis::auth::TokenKind;
use portcullis::clock::unix_now;
use std::time::Duration;

fn setup() -> (MockUpstream, TestGateway) {
    let up = MockUpstream::start();
    let gw = TestGateway::start(&seed_config(&up.url()));
    (up, gw)
}

#[test]
fn the_seed_matrix_admits_and_refuses_by_role_and_refused_requests_never_reach_the_upstream() {
    let (up, gw) = setup();
    // method, path, role, expected status
    let table = [
        ("POST", "/admin/settings", "admin", 200),
        ("POST", "/admin/settings", "user", 403),
        ("DELETE", "/projects/1", "admin", 200),
        ("DELETE", "/projects/1", "user", 403),
        ("GET", "/projects/1", "viewer", 200),
        ("GET", "/projects", "user", 200),
        ("GET", "/projects/1", "guest", 403),
        ("GET", "/profile", "guest", 200),
        ("GET", "/profile", "intruder", 403),
        ("GET", "/public/readme", "guest", 200),
        ("GET", "/nothing/here", "admin", 404),
        ("PUT", "/projects/1", "admin", 404),
    ];
    let mut admitted = 0;
    for (method, path, role, want) in table {
        let hits_before = up.hits();
        let r = gw.request(method, path).bearer(&gw.token("u1", role)).send();
        assert_eq!(r.status, want, "{method} {path} as {role}: {:?}", String::from_utf8_lossy(&r.body));
        if want == 200 {
            admitted += 1;
            assert_eq!(up.hits(), hits_before + 1, "{method} {path} should have been forwarded once");
            let seen = up.last();
            assert_eq!((seen.method.as_str(), seen.target.as_str()), (method, path));
        } else {
            assert_eq!(up.hits(), hits_before, "{method} {path} as {role} must not reach the upstream");
            assert_eq!(r.header("content-type"), Some("application/json"));
            let expected_code = if want == 403 { "forbidden" } else { "not_found" };
            assert_eq!(r.error_code(), expected_code);
            assert!(r.json()["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }
    assert_eq!(up.hits(), admitted);
}

#[test]
fn bad_tokens_are_401_with_a_challenge_and_never_forwarded() {
    let (up, gw) = setup();
    let tokens = gw.tokens();
    let expired = tokens
        .create_token_at(
            &TokenSpec {
                user_id: "u",
                role: Some("admin"),
                kind: TokenKind::Access,
                session_id: "s",
                ttl: Some(Duration::from_secs(60)),
                jti: None,
            },
            unix_now() - 3600,
        )
        .unwrap();
    let refresh = tokens.create_refresh_token("u", "s").unwrap();
    let good = gw.token("u", "admin");
    let (head, _) = good.rsplit_once('.').unwrap();
    let wrong_sig = format!("{head}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let unsigned = {
        let parts: Vec<&str> = good.split('.').collect();
        // {"alg":"none","typ":"JWT"}
        format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1])
    };
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "missing_token"),
        (Some("Bearer".into()), "invalid_token"),
        (Some("Basic dXNlcjpwYXNz".into()), "invalid_token"),
        (Some("Bearer not-a-jwt".into()), "invalid_token"),
        (Some(format!("Bearer {expired}")), "invalid_token"),
        (Some(format!("Bearer {refresh}")), "invalid_token"),
        (Some(format!("Bearer {wrong_sig}")), "invalid_token"),
        (Some(format!("Bearer {unsigned}")), "invalid_token"),
        (Some(format!("Bearer {head}.")), "invalid_token"),
    ];
    for (auth, code) in cases {
        let mut req = gw.get("/profile");
        if let Some(a) = &auth {
            req = req.header("Authorization", a);
        }
        let r = req.send();
        assert_eq!(r.status, 401, "{auth:?}");
        assert_eq!(r.error_code(), code, "{auth:?}");
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("Bearer") && challenge.contains(r#"error="invalid_token""#), "{challenge}");
    }
    // Two Authorization headers are refused, even if one of them is good.
    let r = gw.get("/profile").bearer(&good).header("Authorization", "Bearer x").send();
    assert_eq!(r.status, 401);
    assert_eq!(up.hits(), 0, "no rejected request may reach the upstream");
}

#[test]
fn identity_headers_come_only_from_the_verified_token() {
    let (up, gw) = setup();
    let token = gw.tokens().create_access_token("42", "viewer", "sess-42").unwrap();
    let r = gw
        .get("/projects/7")
        .bearer(&token)
        .header("X-User-Id", "1")
        .header("x-user-id", "2")
        .header("X-User-Role", "admin")
        .header("X-Session-Id", "forged")
        .send();
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(seen.all("x-user-id"), vec!["42"]);
    assert_eq!(seen.all("x-user-role"), vec!["viewer"]);
    assert_eq!(seen.all("x-session-id"), vec!["sess-42"]);
    assert!(seen.all("authorization").is_empty(), "the client's token must not be forwarded");

    // A public route strips forged identity headers and sets none.
    let r = gw.get("/public/x").header("X-User-Id", "1").header("X-User-Role", "admin").send();
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert!(seen.all("x-user-id").is_empty() && seen.all("x-user-role").is_empty() && seen.all("x-session-id").is_empty());
}

#[test]
fn a_connection_header_cannot_remove_or_resurrect_identity_headers() {
    let (up, gw) = setup();
    let token = gw.tokens().create_access_token("42", "user", "s").unwrap();
    let r = gw
        .get("/profile")
        .bearer(&token)
        .header("Connection", "close, X-User-Id, X-User-Role, X-Session-Id")
        .header("X-User-Id", "1")
        .send();
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(seen.all("x-user-id"), vec!["42"]);
    assert_eq!(seen.all("x-user-role"), vec!["user"]);
    assert_eq!(seen.all("x-session-id"), vec!["s"]);
    let r = gw.get("/public/a").header("Connection", "close, X-User-Id").header("X-User-Id", "1").send();
    assert_eq!(r.status, 200);
    assert!(up.last().all("x-user-id").is_empty());
}

#[test]
fn paths_are_judged_and_forwarded_in_normalized_form() {
    let (up, gw) = setup();
    let user = gw.token("u", "user");
    let admin = gw.token("a", "admin");
    for tricky in ["/projects/../admin/settings", "//admin/settings", "/%61dmin/settings", "/x/%2e%2e/admin//settings"] {
        let r = gw.request("POST", tricky).bearer(&user).send();
        assert_eq!(r.status, 403, "{tricky} must be judged as /admin/settings");
        let r = gw.request("POST", tricky).bearer(&admin).send();
        assert_eq!(r.status, 200, "{tricky}");
        assert_eq!(up.last().target, "/admin/settings", "the upstream sees the normalized path for {tricky}");
    }
    let r = gw.get("/public/./a/../b%7e?q=%2F..%2F").send();
    assert_eq!(r.status, 200);
    assert_eq!(up.last().target, "/public/b~?q=%2F..%2F", "the query string is passed through untouched");
    let hits = up.hits();
    for bad in ["/admin%2fsettings", "/public/a%5cb", "/public/a%00", "/public/a%zz", "/public/%"] {
        let r = gw.get(bad).bearer(&admin).send();
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.error_code(), "bad_path", "{bad}");
    }
    assert_eq!(up.hits(), hits, "bad paths never reach the upstream");
}

#[test]
fn request_ids_are_kept_when_well_formed_and_returned_to_the_client() {
    let (up, gw) = setup();
    let r = gw.get("/public/a").header("X-Request-Id", "trace-abc.123").send();
    assert_eq!(r.header("x-request-id"), Some("trace-abc.123"));
    assert_eq!(up.last().all("x-request-id"), vec!["trace-abc.123"]);
    let r = gw.get("/public/a").header("X-Request-Id", "has spaces <script>").send();
    let id = r.header("x-request-id").unwrap().to_string();
    assert_ne!(id, "has spaces <script>");
    assert_eq!(up.last().all("x-request-id"), vec![id.as_str()]);
    let r = gw.get("/public/a").send();
    assert!(r.header("x-request-id").is_some_and(|id| id.len() == 36));
    // Refusals carry one too.
    assert!(gw.get("/profile").send().header("x-request-id").is_some());
}

#[test]
fn bodies_and_methods_are_forwarded_and_connections_are_pooled() {
    let (up, gw) = setup();
    let admin = gw.token("a", "admin");
    let r =
        gw.request("POST", "/admin/settings").bearer(&admin).header("Content-Type", "application/json").body(r#"{"theme":"dark"}"#).send();
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), serde_json::json!({"ok": true}));
    assert_eq!(r.header("x-upstream"), Some("mock"));
    assert_eq!(up.last().body, br#"{"theme":"dark"}"#);
    for _ in 0..20 {
        assert_eq!(gw.get("/public/x").send().status, 200);
    }
    assert!(up.connections() < 10, "keep-alive pooling: {} upstream connections for 21 requests", up.connections());
}

#[test]
fn an_unreachable_upstream_is_a_json_502_and_a_slow_one_a_504() {
    let dead_port = common::free_port();
    let gw = TestGateway::start(&seed_config(&format!("http://127.0.0.1:{dead_port}")));
    let r = gw.get("/public/x").send();
    assert_eq!(r.status, 502);
    assert_eq!(r.error_code(), "upstream_unavailable");

    let (up, gw) = setup();
    up.set_delay(Duration::from_millis(2500)); // read_timeout_ms is 1000 in the test config
    let r = gw.get("/public/slow").send();
    assert_eq!(r.status, 504);
    assert_eq!(r.error_code(), "upstream_timeout");
}

#[test]
fn forward_authorization_passes_the_token_when_the_upstream_asks() {
    let up = MockUpstream::start();
    let config = Config::seed(&up.url()).set("upstreams.app.forward_authorization", "true").yaml();
    let gw = TestGateway::start(&config);
    let token = gw.token("u", "guest");
    assert_eq!(gw.get("/profile").bearer(&token).send().status, 200);
    assert_eq!(up.last().all("authorization"), vec![format!("Bearer {token}").as_str()]);
}

#[test]
fn the_admin_listener_answers_healthz() {
    let (_up, gw) = setup();
    let r = gw.admin_get("/healthz");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    assert_eq!(gw.admin_get("/nope").status, 404);
}

/// The test clock (debug builds) answers only in a process started with
/// `PORTCULLIS_TEST_CLOCK=1`; elsewhere the path is an unknown admin endpoint.
#[test]
fn the_test_clock_is_off_unless_asked_for() {
    let up = MockUpstream::start();
    let gw = TestGateway::start_with_env(&seed_config(&up.url()), &[("PORTCULLIS_TEST_CLOCK", "0")]);
    let post =
        |gw: &TestGateway, target: &str| common::client::send_raw(gw.admin, &common::Request::new(gw.admin, "POST", target).to_bytes());
    assert_eq!(post(&gw, "/test/clock?advance_seconds=3600").status, 404);
    let token = gw.token("u", "user");
    assert_eq!(gw.get("/profile").bearer(&token).send().status, 200, "the clock did not move");
    let (_up, on) = setup();
    assert_eq!(post(&on, "/test/clock?advance_seconds=x").status, 400);
    assert_eq!(post(&on, "/test/clock?advance_seconds=60").json()["offset_seconds"], 60);
    assert_eq!(post(&on, "/test/clock?advance_seconds=5").json()["offset_seconds"], 65);
}

#[test]
fn no_secret_or_token_reaches_the_logs() {
    let (_up, gw) = setup();
    let token = gw.token("u", "admin");
    let refresh = gw.tokens().create_refresh_token("u", "s").unwrap();
    gw.get("/profile").bearer(&token).send();
    gw.get("/profile").bearer(&refresh).send();
    gw.get(&format!("/public/x?token={token}")).send();
    gw.get("/nowhere").bearer(&token).send();
    let log = gw.log();
    assert!(log.contains("portcullis starting"), "the log was captured: {log}");
    for secret in [TEST_SECRET, token.as_str(), refresh.as_str()] {
        let leaks: Vec<&str> = log.lines().filter(|l| l.contains(secret)).collect();
        assert!(leaks.is_empty(), "a secret reached the log: {leaks:#?}");
    }
    let sig = token.rsplit('.').next().unwrap();
    assert!(!log.contains(sig), "a token signature reached the log");
}
