//! `deploy/kubernetes/`: the manifests say what docs/operations.md promises (two replicas, probes on the
//! admin listener, non-root with a read-only root filesystem, a preStop that lets the drain
//! finish, a PodDisruptionBudget), and the ConfigMap's gateway.yaml is one the gateway accepts.
//! The ConfigMap's `..data` symlink swap itself is tested in tests/reload.rs.
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its reason

use serde_yaml::Value;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

fn manifest(name: &str) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(dir().join(name)).unwrap()).unwrap()
}

#[test]
fn the_deployment_runs_two_hardened_replicas_that_drain_before_they_stop() {
    let d = manifest("deployment.yaml");
    assert_eq!(d["kind"], "Deployment");
    assert_eq!(d["spec"]["replicas"], 2);
    let pod = &d["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert!(pod["securityContext"]["runAsUser"].as_u64().unwrap() > 0);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    // The config is mounted as a directory (a subPath mount would never see an update).
    let mounts = c["volumeMounts"].as_sequence().unwrap();
    let config = mounts.iter().find(|m| m["name"] == "config").unwrap();
    assert_eq!(config["mountPath"], "/etc/portcullis");
    assert!(config.get("subPath").is_none());
    assert!(mounts.iter().any(|m| m["mountPath"] == "/tmp"), "a writable /tmp for the pid file and the upgrade socket");
    assert_eq!(c["args"][2], "/etc/portcullis/gateway.yaml");
    // preStop, then SIGTERM's grace period and the drain, all within the termination grace.
    let pre_stop: u64 = c["lifecycle"]["preStop"]["exec"]["command"][1].as_str().unwrap().parse().unwrap();
    let gw: Value = serde_yaml::from_str(manifest("configmap.yaml")["data"]["gateway.yaml"].as_str().unwrap()).unwrap();
    let drain =
        gw["server"]["grace_period_seconds"].as_u64().unwrap() + gw["server"]["graceful_shutdown_timeout_seconds"].as_u64().unwrap();
    assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() > pre_stop + drain);
    for key in ["pid_file", "upgrade_sock"] {
        assert!(gw["server"][key].as_str().unwrap().starts_with("/tmp/"), "{key} must be on the writable /tmp");
    }
}

#[test]
fn the_service_budget_and_kustomization_fit_the_deployment() {
    let selector = &manifest("deployment.yaml")["spec"]["selector"]["matchLabels"];
    let svc = manifest("service.yaml");
    assert_eq!(&svc["spec"]["selector"], selector);
    let pdb = manifest("pdb.yaml");
    assert_eq!((pdb["kind"].as_str(), &pdb["spec"]["selector"]["matchLabels"]), (Some("PodDisruptionBudget"), selector));
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    let k = manifest("kustomization.yaml");
    let listed: Vec<&str> = k["resources"].as_sequence().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    for f in ["configmap.yaml", "deployment.yaml", "service.yaml", "pdb.yaml"] {
        assert!(listed.contains(&f), "{f} is not in the kustomization");
    }
}

#[test]
fn the_configmaps_gateway_yaml_is_valid_but_for_names_only_the_cluster_resolves() {
    let text = manifest("configmap.yaml")["data"]["gateway.yaml"].as_str().unwrap().to_string();
    let env = |n: &str| (n == "JWT_SECRET_KEY").then(|| "x".repeat(40));
    if let Err(e) = portcullis::config::parse(&text, std::path::Path::new("gateway.yaml"), &env) {
        for d in &e.0 {
            assert!(d.message.contains("cannot resolve host `app`"), "unexpected problem in the ConfigMap's gateway.yaml: {d}");
        }
    }
}
