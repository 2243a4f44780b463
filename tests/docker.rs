//! No Docker engine runs on our machines, so this checks what can be checked of docker/: the
//! compose file parses, everything it and the Dockerfile reference exists, and its ports, config
//! paths and scrape targets agree with the stack's gateway config.
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its reason

use serde_yaml::Value;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn compose() -> Value {
    let text = std::fs::read_to_string(repo().join("docker/docker-compose.yml")).unwrap();
    let mut v: Value = serde_yaml::from_str(&text).expect("docker-compose.yml parses");
    v.apply_merge().expect("merge keys resolve");
    v
}

fn service<'a>(c: &'a Value, name: &str) -> &'a Value {
    c["services"].get(name).unwrap_or_else(|| panic!("service {name} is missing"))
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

fn stack_config() -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(repo().join("docker/gateway.yaml")).unwrap()).unwrap()
}

/// Container ports published by a service ("HOST:CONTAINER").
fn container_ports(svc: &Value) -> Vec<u16> {
    svc["ports"].as_sequence().map(|s| s.iter().filter_map(|p| p.as_str()).map(port_of).collect()).unwrap_or_default()
}

#[test]
fn the_stack_has_every_service_and_builds_from_this_repo() {
    let c = compose();
    for name in ["redis", "portcullis-a", "portcullis-b", "app", "mock-llm", "prometheus"] {
        service(&c, name);
    }
    for name in ["portcullis-a", "portcullis-b", "app", "mock-llm"] {
        let build = &service(&c, name)["build"];
        let context = repo().join("docker").join(build["context"].as_str().unwrap());
        assert!(context.join("Cargo.toml").exists(), "{name} builds from this repo");
        assert!(context.join(build["dockerfile"].as_str().unwrap()).exists(), "{name}'s Dockerfile exists");
    }
    let env = &service(&c, "portcullis-a")["environment"];
    assert!(env["JWT_SECRET_KEY"].as_str().unwrap().contains("JWT_SECRET_KEY"), "the secret comes from the environment, not the file");
}

#[test]
fn everything_the_dockerfile_copies_exists_and_its_paths_agree() {
    let text = std::fs::read_to_string(repo().join("docker/Dockerfile")).unwrap();
    let mut copied_to = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| l.starts_with("COPY ") && !l.contains("--from")) {
        let parts: Vec<&str> = line.split_whitespace().skip(1).collect();
        let (dest, sources) = parts.split_last().unwrap();
        for src in sources {
            assert!(repo().join(src).exists(), "Dockerfile copies {src}, which does not exist");
        }
        copied_to.push(dest.to_string());
    }
    assert!(copied_to.iter().any(|d| d == "/etc/portcullis/gateway.yaml"));
    assert!(copied_to.iter().any(|d| d == "/etc/portcullis/users.yaml"), "the users file the config names is in the image");
    assert!(text.contains(r#"CMD ["run", "-c", "/etc/portcullis/gateway.yaml"]"#));
    assert!(text.contains("USER portcullis"), "runs as non-root");
    assert!(text.contains("ca-certificates"));
    let admin_port = port_of(stack_config()["server"]["admin_listen"].as_str().unwrap());
    assert!(text.contains(&format!("http://127.0.0.1:{admin_port}/healthz")), "HEALTHCHECK probes the admin listener");
    for bin in ["portcullis-echo", "portcullis-mock-llm"] {
        assert!(text.contains(&format!("/usr/local/bin/{bin}")), "{bin} is in the image");
        let used_by = compose()["services"].as_mapping().unwrap().values().any(|s| s["entrypoint"][0].as_str() == Some(bin));
        assert!(used_by, "{bin} is used by a service");
    }
}

#[test]
fn ports_and_scrape_targets_agree_with_the_stack_config() {
    let c = compose();
    let cfg = stack_config();
    let listen = port_of(cfg["server"]["listen"].as_str().unwrap());
    let admin = port_of(cfg["server"]["admin_listen"].as_str().unwrap());
    for name in ["portcullis-a", "portcullis-b"] {
        let ports = container_ports(service(&c, name));
        assert!(ports.contains(&listen) && ports.contains(&admin), "{name} publishes {ports:?}, config listens on {listen}/{admin}");
    }
    let prom: Value = serde_yaml::from_str(&std::fs::read_to_string(repo().join("docker/prometheus.yml")).unwrap()).unwrap();
    let targets: Vec<&str> =
        prom["scrape_configs"][0]["static_configs"][0]["targets"].as_sequence().unwrap().iter().filter_map(|t| t.as_str()).collect();
    assert_eq!(targets, vec![format!("portcullis-a:{admin}"), format!("portcullis-b:{admin}")]);
    assert_eq!(prom["scrape_configs"][0]["metrics_path"], "/metrics");
    let mounted = service(&c, "prometheus")["volumes"][0].as_str().unwrap();
    assert!(Path::new(&repo().join("docker")).join(mounted.split(':').next().unwrap()).exists());
    // The app service listens where the config's upstream points.
    let app_url = cfg["upstreams"]["app"]["url"].as_str().unwrap();
    let app_listen = service(&c, "app")["command"][0].as_str().unwrap();
    assert_eq!(app_url, format!("http://app:{}", port_of(app_listen)));
    assert!(cfg["store"]["redis_url"].as_str().unwrap().starts_with("redis://redis:"));
    // The mock LLM provider listens where the config's provider points.
    let llm_url = cfg["providers"]["mock-llm"]["url"].as_str().unwrap();
    let llm_listen = service(&c, "mock-llm")["command"][0].as_str().unwrap();
    assert_eq!(llm_url, format!("http://mock-llm:{}", port_of(llm_listen)));
}

#[test]
fn the_stack_config_is_valid_but_for_names_only_docker_resolves() {
    let path = repo().join("docker/gateway.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let env = |n: &str| (n == "JWT_SECRET_KEY").then(|| "x".repeat(40));
    match portcullis::config::parse(&text, &path, &env) {
        Ok(_) => {}
        Err(e) => {
            for d in &e.0 {
                let compose_names = ["app", "mock-llm"];
                assert!(
                    compose_names.iter().any(|n| d.message.contains(&format!("cannot resolve host `{n}`"))),
                    "unexpected problem in docker/gateway.yaml: {d}"
                );
            }
        }
    }
}

/// Grafana (official image) is provisioned with the Prometheus datasource and the dashboard;
/// Prometheus loads the alert rules. (Every dashboard query is run against a real Prometheus in
/// tests/observability.rs.)
#[test]
fn grafana_and_the_alert_rules_are_provisioned_into_the_stack() {
    let c = compose();
    let grafana = service(&c, "grafana");
    assert!(grafana["image"].as_str().unwrap().starts_with("grafana/grafana:"));
    for volume in grafana["volumes"].as_sequence().unwrap() {
        let (host, container) = volume.as_str().unwrap().split_once(':').unwrap();
        assert!(repo().join("docker").join(host).exists(), "{host} is mounted into Grafana but missing");
        assert!(container.starts_with("/etc/grafana/provisioning") || container.starts_with("/var/lib/grafana/dashboards"));
    }
    let provider: Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo().join("docker/grafana/provisioning/dashboards/portcullis.yml")).unwrap())
            .unwrap();
    assert_eq!(provider["providers"][0]["options"]["path"], "/var/lib/grafana/dashboards");
    let datasource: Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo().join("docker/grafana/provisioning/datasources/prometheus.yml")).unwrap())
            .unwrap();
    assert_eq!(datasource["datasources"][0]["url"], "http://prometheus:9090");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("docker/grafana/dashboards/portcullis.json")).unwrap()).unwrap();
    assert_eq!(dashboard["uid"], "portcullis");
    let prom: Value = serde_yaml::from_str(&std::fs::read_to_string(repo().join("docker/prometheus.yml")).unwrap()).unwrap();
    assert_eq!(prom["rule_files"][0], "/etc/prometheus/alerts.yml");
    let volumes: Vec<&str> = service(&c, "prometheus")["volumes"].as_sequence().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert!(volumes.contains(&"./alerts.yml:/etc/prometheus/alerts.yml:ro"), "{volumes:?}");
}

#[test]
fn the_first_start_builds_no_dev_dependencies() {
    // `scripts/run` (and the image) build the demo upstreams as the `portcullis-demo` package:
    // `cargo build --example` would compile criterion and proptest into a newcomer's first start.
    let run = std::fs::read_to_string(repo().join("scripts/run")).unwrap();
    let dockerfile = std::fs::read_to_string(repo().join("docker/Dockerfile")).unwrap();
    for (name, text) in [("scripts/run", &run), ("docker/Dockerfile", &dockerfile)] {
        let build = text.lines().find(|l| l.contains("cargo build")).unwrap_or_else(|| panic!("{name} builds"));
        assert!(!build.contains("--example"), "{name} builds no example: {build}");
        assert!(build.contains("-p portcullis-demo"), "{name} builds the demo package: {build}");
    }
    assert!(run.contains("target/release/echo ") && run.contains("target/release/mock_llm "), "scripts/run starts the demo binaries");
    let out = std::process::Command::new(env!("CARGO"))
        .args(["tree", "--offline", "--locked", "-p", "portcullis-demo", "-e", "normal,build", "--prefix", "none"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8_lossy(&out.stdout);
    for dev_only in ["criterion ", "proptest ", "portcullis v"] {
        assert!(!tree.lines().any(|l| l.starts_with(dev_only)), "the demo build pulls in {dev_only}");
    }
}
