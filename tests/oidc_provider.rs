//! A real OpenID Connect provider in front of the gateway: `oidc-provider` from npm (OpenID
//! Certified), issuing client-credentials access tokens as JWTs (RFC 9068) with keys it makes at
//! start, discovered through its `/.well-known/openid-configuration`. `scripts/ensure-deps`
//! installs Node.js and the package (`tests/oidc/package-lock.json`).
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its reason

mod common;

use common::config::Config;
use common::{free_port, MockUpstream, Request, TestGateway};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

/// A running oidc-provider. Killed on drop.
struct NodeIdp {
    child: Child,
    port: u16,
}

impl NodeIdp {
    fn start(alg: &str) -> Self {
        let port = free_port();
        let mut child = Command::new("node")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc/server.mjs"))
            .args([&port.to_string(), alg])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node (scripts/ensure-deps installs it)");
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        while line.trim() != "ready" {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "oidc-provider did not start (run scripts/ensure-deps)");
        }
        NodeIdp { child, port }
    }

    fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A client-credentials access token for `scope`.
    fn token(&self, scope: &str) -> String {
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode("ci-job:ci-job-secret-0123456789");
        let body = format!("grant_type=client_credentials&scope={}", scope.replace(' ', "%20"));
        let r = Request::new(SocketAddr::from(([127, 0, 0, 1], self.port)), "POST", "/token")
            .header("Authorization", &format!("Basic {basic}"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()["access_token"].as_str().unwrap().to_string()
    }
}

impl Drop for NodeIdp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn oidc_provider_tokens_are_verified_mapped_and_scoped() {
    for alg in ["ES256", "RS256", "PS256", "EdDSA"] {
        let idp = NodeIdp::start(alg);
        let up = MockUpstream::start();
        let provider = format!(
            "{{ issuer: \"{}\", discovery: true, audiences: [portcullis], algorithms: [{alg}], \
             claims: {{ user_id: sub, role: roles, scopes: scope }}, role_map: {{ gw-user: user }} }}",
            idp.issuer()
        );
        let config = Config::seed(&up.url()).set("identity_providers", &format!("{{ node: {provider} }}")).route(
            "projects-read",
            "require_scopes",
            "[projects.read]",
        );
        let gw = TestGateway::start(&config.yaml());
        let token = idp.token("projects.read");
        assert_eventually!(gw.get("/projects/1").bearer(&token).send().status == 200, "{alg}: the provider's token is accepted");
        let seen = up.last();
        assert_eq!(
            (seen.header("x-user-id"), seen.header("x-user-role"), seen.header("x-user-issuer")),
            (Some("ci-job"), Some("user"), Some("node"))
        );
        let r = gw.get("/projects/1").bearer(&idp.token("projects.write")).send();
        assert_eq!((r.status, r.error_code().as_str()), (403, "insufficient_scope"), "{alg}");
        assert_eq!(gw.request("DELETE", "/projects/1").bearer(&token).send().status, 403, "{alg}: a user may not delete");
        // Tampered: one byte of the payload changed.
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let mut payload = parts[1].clone().into_bytes();
        payload[10] = if payload[10] == b'A' { b'B' } else { b'A' };
        parts[1] = String::from_utf8(payload).unwrap();
        assert_eq!(gw.get("/projects/1").bearer(&parts.join(".")).send().status, 401, "{alg}: tampered");
    }
}
