//! Prometheus metrics on the admin listener.
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its reason

mod common;

use common::{seed_config, MockUpstream, TestGateway};
use std::process::Command;
use std::time::Duration;

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
    // Every family is declared in src/metrics.rs or src/metrics/*.rs.
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut source = std::fs::read_to_string(src.join("metrics.rs")).unwrap();
    for f in std::fs::read_dir(src.join("metrics")).unwrap() {
        source += &std::fs::read_to_string(f.unwrap().path()).unwrap();
    }
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

/// Every query of the Grafana dashboard (`docker/grafana/dashboards/portcullis.json`) returns
/// data from a real Prometheus that scraped a real gateway after a scripted run: traffic,
/// refusals, logins and a lockout, a failover between two providers, LLM calls.
#[test]
fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    use common::llm::{MockLlm, Mode};
    let (oa, an) = (MockLlm::start(Mode::OpenAi), MockLlm::start(Mode::Anthropic));
    let up = MockUpstream::start();
    let config = format!(
        "{}  - {{ name: llm, path: \"/v1/**\", methods: [POST], require_role: viewer, chain: llm }}
providers:
  oa: {{ url: \"{}\", api: openai }}
  an: {{ url: \"{}\", api: anthropic, api_key_env: AN_KEY }}
provider_chains: {{ llm: {{ primary: oa, fallbacks: [an] }} }}
lockout: {{ after_failures: 2, base_seconds: 60, max_seconds: 120 }}
audit: {{ sink: file, file: audit.log }}
",
        seed_config(&up.url()),
        oa.url(),
        an.url()
    );
    let gw = TestGateway::start_with_env(&config, &[("AN_KEY", "sk-ant-test")]);
    // Prometheus scraping the admin listener every second.
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\nscrape_configs:\n  - job_name: portcullis\n    static_configs: [{{ targets: [\"{}\"] }}]\n",
            gw.admin
        ),
    )
    .unwrap();
    let prom = Command::new("prometheus")
        .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("prometheus (scripts/ensure-deps installs the Debian package `prometheus`)");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(prom);
    let prom_addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let query = |q: &str| -> serde_json::Value {
        let target = format!("/api/v1/query?query={}", urlencode(q));
        common::Request::new(prom_addr, "GET", &target).send().json()
    };
    assert!(
        common::eventually(Duration::from_secs(20), || std::net::TcpStream::connect(prom_addr).is_ok()),
        "prometheus did not start listening"
    );
    assert_eventually!(common::Request::new(prom_addr, "GET", "/-/ready").send().status == 200, "prometheus is ready");
    // The scripted run, spread over a few scrapes.
    let viewer = gw.token("v", "viewer");
    gw.create_user("dash@example.com", "dash-password-123", "user");
    oa.fail_with(503);
    // Scrapes of the gateway Prometheus has stored: the rounds below are spread over scrapes by
    // waiting for two more after each (the first may have begun before the round's requests).
    let scrapes =
        || query("count_over_time(up[10m])")["data"]["result"][0]["value"][1].as_str().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    for round in 0..4 {
        assert_eq!(gw.get("/projects/1").bearer(&viewer).send().status, 200);
        assert_eq!(gw.get("/projects/1").bearer("not-a-token").send().status, 401);
        assert_eq!(gw.request("DELETE", "/projects/1").bearer(&viewer).send().status, 403);
        let login = |password: &str| {
            gw.request("POST", "/auth/login").json(&serde_json::json!({"email": "dash@example.com", "password": password})).send().status
        };
        if round == 0 {
            assert_eq!(login("dash-password-123"), 200);
        }
        login("wrong-password-1");
        let chat = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(gw.request("POST", "/v1/chat/completions").bearer(&viewer).json(&chat).send().status, 200);
        let before = scrapes();
        assert_eventually!(scrapes() >= before + 2, "prometheus scraped the gateway after round {round}");
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/grafana/dashboards/portcullis.json"))
            .unwrap(),
    )
    .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 15);
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap().replace("$__rate_interval", "1m").replace("$__range", "5m");
            let answer = || query(&expr);
            assert_eventually!(
                answer()["status"] == "success" && answer()["data"]["result"].as_array().is_some_and(|r| !r.is_empty()),
                "panel {:?}: `{expr}` returned no data: {}",
                panel["title"],
                answer()
            );
        }
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
