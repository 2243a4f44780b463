//! One request path: every request the gateway serves, its own endpoints included, passes the
//! same phases (shape, CORS, admission, limits); every response, whoever produced it, is
//! finished the same way; every decision leaves the same audit record.
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its reason

mod common;

use common::{seed_config, Behavior, Connection, MockUpstream, TestGateway};
use serde_json::json;

fn with_audit_file(config: String) -> String {
    format!("{config}\naudit: {{ sink: file, file: audit.log }}\n")
}

#[test]
fn a_denial_keeps_the_connection_for_the_next_request() {
    let up = MockUpstream::start();
    let gw = TestGateway::start(&seed_config(&up.url()));
    let mut c = Connection::open(gw.addr);
    for (req, want) in [
        (gw.get("/profile"), 401), // no token
        (gw.request("DELETE", "/projects/1").bearer(&gw.token("u", "user")), 403),
        (gw.get("/nowhere"), 404),
        (gw.request("POST", "/profile").body("small body, drained"), 401), // a small body is drained
        (gw.get("/public/x"), 200),
    ] {
        let r = c.send(req).expect("the connection is still open");
        assert_eq!(r.status, want);
        assert_ne!(r.header("connection").map(str::to_ascii_lowercase).as_deref(), Some("close"), "after a {want}");
    }
    assert_eq!(up.hits(), 1);

    // A large body that was never read closes the connection instead of being drained.
    let mut c = Connection::open(gw.addr);
    let r = c.exchange(b"POST /profile HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000\r\n\r\npartial").expect("a reply");
    assert_eq!(r.status, 401);
    assert!(c.closed_by_server(), "the unread body is not drained: the connection closes");
}

#[test]
fn a_content_length_list_or_repeat_is_refused_closed_and_never_forwarded() {
    let up = MockUpstream::start();
    let gw = TestGateway::start(&seed_config(&up.url()));
    for raw in [
        &b"POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 2, 2\r\n\r\nab"[..],
        &b"POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 2,2\r\n\r\nab"[..],
        &b"POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab"[..],
    ] {
        let mut c = Connection::open(gw.addr);
        let r = c.exchange(raw).expect("a reply");
        assert_eq!((r.status, r.error_code().as_str()), (400, "bad_request"), "{}", String::from_utf8_lossy(raw));
        assert!(c.closed_by_server(), "the connection is closed after an ambiguous frame");
    }
    // A signed length never gets this far: Pingora's parser refuses it (400, closed) itself.
    let mut c = Connection::open(gw.addr);
    let r = c.exchange(b"POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: +2\r\n\r\nab").expect("a reply");
    assert_eq!(r.status, 400);
    assert!(c.closed_by_server());
    assert_eq!(up.hits(), 0, "nothing ambiguous was forwarded");
}

#[test]
fn the_gateways_endpoints_get_the_same_token_audit_and_per_ip_limit() {
    let up = MockUpstream::start();
    let config = with_audit_file(seed_config(&up.url())) + "rate_limits: { api: { per_ip_public: { requests: 3, per_seconds: 60 } } }\n";
    let gw = TestGateway::start(&config);
    let statuses: Vec<u16> = (0..5).map(|_| gw.get("/auth/me").bearer("guessed.token.value").send().status).collect();
    assert_eq!(statuses, vec![401, 401, 401, 429, 429], "token guessing on /auth is throttled like anywhere else");
    let rejected = || gw.audit_events().iter().filter(|e| e["event"] == "auth.token_rejected").count();
    assert_eventually!(rejected() == 3, "every token refusal on /auth is audited");
    assert_eq!(gw.metric(r#"portcullis_auth_failures_total{reason="malformed"}"#), Some(3.0));
    let r = gw.get("/admin/users").bearer(&gw.token("u", "user")).send();
    assert_eq!((r.status, r.error_code().as_str()), (403, "forbidden"));
}

#[test]
fn denied_access_events_say_who_was_refused_and_what_was_required() {
    let up = MockUpstream::start();
    let gw = TestGateway::start(&with_audit_file(seed_config(&up.url())));
    let token = gw.tokens().create_access_token("u-7", "user", "sess-7").unwrap();
    assert_eq!(gw.request("DELETE", "/projects/1").bearer(&token).send().status, 403);
    assert_eq!(gw.get("/projects/2").bearer(&token).send().status, 200);
    let access = |status: &str| gw.audit_events().into_iter().find(|e| e["event"] == "access" && e["status"] == status);
    assert_eventually!(access("denied").is_some() && access("granted").is_some(), "both decisions audited");
    let denied = access("denied").unwrap();
    assert_eq!(denied["user_id"], "u-7");
    let d = &denied["details"];
    assert_eq!(
        (d["role"].as_str(), d["session_id"].as_str(), d["route"].as_str(), d["method"].as_str()),
        (Some("user"), Some("sess-7"), Some("project-delete"), Some("DELETE"))
    );
    assert_eq!(
        (d["requirement"].as_str(), d["reason"].as_str(), d["status"].as_u64()),
        (Some("projects:delete"), Some("insufficient_role"), Some(403))
    );
    assert_eq!(d["path"], "/projects/1");
    let granted = access("granted").unwrap();
    assert_eq!((granted["user_id"].as_str(), granted["details"]["session_id"].as_str()), (Some("u-7"), Some("sess-7")));
    assert_eq!(granted["details"]["reason"], "authorized");
}

#[test]
fn cors_preflights_are_not_audited_as_denied_access() {
    let up = MockUpstream::start();
    let config = with_audit_file(seed_config(&up.url()))
        + "cors: { allowed_origins: [\"https://app.example.com\"], allowed_methods: [GET], allowed_headers: [authorization] }\n";
    let gw = TestGateway::start(&config);
    let r =
        gw.request("OPTIONS", "/profile").header("Origin", "https://app.example.com").header("Access-Control-Request-Method", "GET").send();
    assert_eq!(r.status, 204);
    assert_eq!(gw.get("/public/a").send().status, 200);
    assert_eventually!(gw.audit_events().iter().any(|e| e["event"] == "access"), "the later request is audited");
    let denied = gw.audit_events().iter().filter(|e| e["event"] == "access" && e["status"] == "denied").count();
    assert_eq!(denied, 0, "an allowed preflight is no denied access");
}

#[test]
fn provider_chain_responses_are_finished_like_every_other_response() {
    let (p1, app) = (MockUpstream::start(), MockUpstream::start());
    let config = seed_config(&app.url())
        + &format!(
            "  - {{ name: llm, path: \"/v1/**\", methods: [POST], require_role: user, chain: llm }}
providers:
  p1: {{ url: \"{}\", read_timeout_ms: 800 }}
provider_chains:
  llm: {{ primary: p1 }}
cors: {{ allowed_origins: [\"https://app.example.com\"], allowed_methods: [POST], allowed_headers: [authorization, content-type] }}
",
            p1.url()
        );
    let gw = TestGateway::start(&config);
    let r = gw
        .request("POST", "/v1/chat/completions")
        .bearer(&gw.token("u1", "user"))
        .header("Origin", "https://app.example.com")
        .json(&json!({"model": "m", "messages": []}))
        .send();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example.com"), "CORS on a provider's response");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(r.header("x-request-id").is_some());
    // And when every provider fails, the gateway's own reply is finished the same way.
    p1.set_behavior(Behavior::Status(503, None));
    let r = gw
        .request("POST", "/v1/chat/completions")
        .bearer(&gw.token("u1", "user"))
        .header("Origin", "https://app.example.com")
        .json(&json!({"model": "m"}))
        .send();
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example.com"), "status {}", r.status);
}

#[test]
fn series_with_known_labels_exist_at_zero_from_the_start() {
    let (p1, app) = (MockUpstream::start(), MockUpstream::start());
    let config =
        seed_config(&app.url()) + &format!("providers:\n  p1: {{ url: \"{}\" }}\nprovider_chains:\n  llm: {{ primary: p1 }}\n", p1.url());
    let gw = TestGateway::start(&config);
    for series in [
        r#"portcullis_config_reloads_total{result="success"}"#,
        r#"portcullis_config_reloads_total{result="error"}"#,
        r#"portcullis_auth_failures_total{reason="expired"}"#,
        r#"portcullis_auth_failures_total{reason="bad_signature"}"#,
        r#"portcullis_auth_failures_total{reason="revoked"}"#,
        r#"portcullis_logins_total{result="success"}"#,
        r#"portcullis_logins_total{result="invalid_credentials"}"#,
        r#"portcullis_provider_health{provider="p1",status="unhealthy"}"#,
    ] {
        assert_eq!(gw.metric(series), Some(0.0), "{series} is exported at 0 before its first event");
    }
}

#[test]
fn an_oversized_body_to_an_endpoint_is_400_and_closes_the_connection() {
    let up = MockUpstream::start();
    let gw = TestGateway::start(&seed_config(&up.url()));
    let big = format!(r#"{{"email":"a@example.com","password":"{}"}}"#, "x".repeat(20_000));
    let mut c = Connection::open(gw.addr);
    let r = c.send(gw.request("POST", "/auth/login").header("Content-Type", "application/json").body(big)).expect("a reply");
    assert_eq!((r.status, r.error_code().as_str()), (400, "invalid_request"));
    assert!(r.json()["message"].as_str().unwrap().contains("larger than"), "{:?}", r.json());
    assert!(c.closed_by_server(), "the unread rest of the body is not drained");
    // Declared too large and never sent: refused at once, never waited for.
    let mut c = Connection::open(gw.addr);
    let r = c
        .exchange(b"POST /auth/login HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{")
        .expect("a reply");
    assert_eq!(r.status, 400);
    assert!(c.closed_by_server());
}
