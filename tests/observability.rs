//! Prometheus metrics on the admin listener.
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its reason

mod common;

use common::{seed_config, MockUpstream, TestGateway};
use std::process::Command;

#[test]
fn metrics_count_requests_by_route_and_status_with_bounded_labels() {
    let up = MockUpstream::start();
    let gw = TestGateway::start(&seed_config(&up.url()));
    let viewer = gw.token("user-1234", "viewer");
    for _ in 0..3 {
        assert_eq!(gw.get("/projects/7").bearer(&viewer).send().status, 200);
    }
    assert_eq!(gw.request("DELETE", "/projects/7").bearer(&viewer).send().status, 403);
    assert_eq!(gw.get("/projects/7").bearer("garbage").send().status, 401);
    assert_eq!(gw.get("/secret-path-xyz").send().status, 404);
    assert_eq!(
        gw.request("POST", "/auth/login").json(&serde_json::json!({"email": "a@b.c", "password": "wrong-password"})).send().status,
        401
    );

    let r = gw.admin_get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let text = String::from_utf8(r.body).unwrap();
    for line in [
        r#"portcullis_requests_total{method="GET",route="projects-read",status="200"} 3"#,
        r#"portcullis_requests_total{method="DELETE",route="project-delete",status="403"} 1"#,
        r#"portcullis_requests_total{method="GET",route="_unmatched",status="404"} 1"#,
        r#"portcullis_requests_total{method="POST",route="_gateway",status="401"} 1"#,
        r#"portcullis_request_duration_seconds_count{route="projects-read"} 4"#,
        r#"portcullis_authz_denied_total{route="project-delete"} 1"#,
        r#"portcullis_auth_failures_total{reason="malformed"} 1"#,
        r#"portcullis_logins_total{result="invalid_credentials"} 1"#,
        r#"portcullis_upstream_requests_total{outcome="ok",upstream="app"} 3"#,
        r#"portcullis_upstream_duration_seconds_count{upstream="app"} 3"#,
        r#"portcullis_build_info{version=""#,
        r#"portcullis_auth_failures_by_ip_class_total{ip_class="loopback"} 2"#,
        "portcullis_store_up 1",
    ] {
        assert!(text.contains(line), "missing {line}\n{text}");
    }
    assert!(!text.contains("portcullis_tls_cert_expiry_seconds"), "no certificate, no expiry series (it would read as expired)");
    for secret in ["user-1234", "secret-path-xyz", viewer.as_str(), "garbage", "a@b.c"] {
        assert!(!text.contains(secret), "a request value leaked into a metric label: {secret}");
    }
}

#[test]
fn upstream_failures_are_counted_by_outcome() {
    let dead = common::free_port();
    let gw = TestGateway::start(&seed_config(&format!("http://127.0.0.1:{dead}")));
    assert_eq!(gw.get("/public/x").send().status, 502);
    assert_eq!(gw.metric(r#"portcullis_upstream_requests_total{outcome="connect_error",upstream="app"}"#), Some(1.0));
    assert_eq!(gw.metric(r#"portcullis_requests_total{method="GET",route="docs",status="502"}"#), Some(1.0));
}

#[test]
fn the_output_passes_promtool() {
    let up = MockUpstream::start();
    let gw = TestGateway::start(&seed_config(&up.url()));
    gw.get("/public/a").send();
    gw.get("/profile").send();
    let body = gw.admin_get("/metrics").body;
    let promtool = Command::new("promtool").arg("--version").output();
    if promtool.is_err() {
        // scripts/ensure-deps installs promtool (Debian package `prometheus`); without it the
        // format is still checked by the other tests' exact-line assertions.
        eprintln!("promtool not installed: skipping the promtool check");
        return;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "promtool: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn metrics_can_be_switched_off() {
    let up = MockUpstream::start();
    let gw = TestGateway::start(&format!("{}\nmetrics: {{ enabled: false }}\n", seed_config(&up.url())));
    assert_eq!(gw.get("/public/a").send().status, 200);
    assert_eq!(gw.admin_get("/metrics").status, 404);
}

/// The alerting rules an on-call engineer gets (`docker/alerts.yml`) are valid, pass their unit
/// tests (`docker/alerts.test.yml`, promtool's own test runner) and name only series the gateway
/// exports.
#[test]
fn the_alert_rules_pass_their_promtool_unit_tests() {
    let docker = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docker");
    for args in [["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&docker)
            .output()
            .expect("promtool (scripts/ensure-deps installs the Debian package `prometheus`)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rules = std::fs::read_to_string(docker.join("alerts.yml")).unwrap();
    let source = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/metrics.rs")).unwrap();
    let mut names: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter_map(|w| w.strip_prefix("portcullis_"))
        .map(|w| w.trim_end_matches("_bucket"))
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        assert!(source.contains(&format!("\"{name}\"")), "alerts.yml names portcullis_{name}, which the gateway does not export");
    }
}
