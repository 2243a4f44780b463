//! Hardened HTTP: security headers, CORS, request-shape limits, smuggling, TLS termination.
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its reason

mod common;

use common::config::Config;

use common::client::send_raw;
use common::{seed_config, MockUpstream, TestGateway};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

#[test]
fn security_headers_are_on_every_response_and_the_upstreams_own_win() {
    let up = MockUpstream::start();
    let gw = TestGateway::start(&seed_config(&up.url()));
    for r in [gw.get("/public/x").send(), gw.get("/profile").send(), gw.get("/nowhere").send(), gw.request("POST", "/auth/login").send()] {
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "status {}", r.status);
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
        assert!(r.header("strict-transport-security").is_none(), "no HSTS over plain HTTP");
    }
    let r = gw.request("POST", "/auth/login").json(&serde_json::json!({"email": "a@b.c", "password": "x"})).send();
    assert_eq!(r.header("cache-control"), Some("no-store"));

    let up2 = MockUpstream::start();
    let config = Config::seed(&up2.url()).set("upstreams.app.security_headers", "false").yaml();
    let gw2 = TestGateway::start(&config);
    let r = gw2.get("/public/x").send();
    assert!(r.header("x-frame-options").is_none(), "switched off for an upstream that needs its own");
}

#[test]
fn cors_preflights_are_answered_by_the_gateway() {
    let up = MockUpstream::start();
    let config = format!(
        "{}\ncors: {{ allowed_origins: [\"https://app.example.com\"], allowed_methods: [GET, POST], allowed_headers: [authorization, content-type], allow_credentials: true }}\n",
        seed_config(&up.url())
    );
    let gw = TestGateway::start(&config);
    let r = gw
        .request("OPTIONS", "/profile")
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "authorization")
        .send();
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert!(r.header("access-control-allow-methods").unwrap().contains("POST"));
    let r =
        gw.request("OPTIONS", "/profile").header("Origin", "https://evil.example").header("Access-Control-Request-Method", "GET").send();
    assert_eq!((r.status, r.error_code().as_str()), (403, "cors_denied"));
    // Actual requests: the allowed origin is echoed, even on a refusal, so the browser can read it.
    let r = gw.get("/profile").header("Origin", "https://app.example.com").send();
    assert_eq!(r.status, 401);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example.com"));
    let r = gw.get("/public/a").header("Origin", "https://evil.example").send();
    assert_eq!(r.status, 200);
    assert!(r.header("access-control-allow-origin").is_none());
    assert_eq!(up.hits(), 1, "preflights never reach the upstream");
}

#[test]
fn a_wildcard_origin_with_credentials_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.yaml");
    std::fs::write(&path, "cors: { allowed_origins: [\"*\"], allow_credentials: true }\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "-c"])
        .arg(&path)
        .env("JWT_SECRET_KEY", common::TEST_SECRET)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("cors.allow_credentials: a wildcard origin"));
}

#[test]
fn smuggling_shapes_and_oversized_headers_never_reach_the_upstream() {
    let up = MockUpstream::start();
    let config = Config::seed(&up.url()).set("server.max_header_bytes", "4096").set("server.max_header_count", "20").yaml();
    let gw = TestGateway::start(&config);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "CL and TE",
            b"POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n"
                .to_vec(),
            400,
        ),
        (
            "two CLs",
            b"POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\nConnection: close\r\n\r\nabcde".to_vec(),
            400,
        ),
        (
            "TE not chunked",
            b"POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n0\r\n\r\n".to_vec(),
            400,
        ),
        (
            "too many headers",
            {
                let mut r = b"GET /public/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n".to_vec();
                for i in 0..30 {
                    r.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
                }
                r.extend_from_slice(b"\r\n");
                r
            },
            431,
        ),
        (
            "header too large",
            format!("GET /public/x HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\nConnection: close\r\n\r\n", "v".repeat(5000)).into_bytes(),
            431,
        ),
    ];
    for (name, raw, want) in cases {
        let r = send_raw(gw.addr, &raw);
        assert_eq!(r.status, want, "{name}");
    }
    assert_eq!(up.hits(), 0, "nothing reached the upstream");
    assert_eq!(gw.get("/public/x").send().status, 200);
}

fn make_cert(dir: &std::path::Path) {
    common::pki::self_signed(dir, "/CN=localhost", Some("DNS:localhost,IP:127.0.0.1"), "key.pem", "cert.pem");
}

/// A gateway terminating TLS with a fresh self-signed certificate (`tls_extra` is added to the
/// `server.tls` mapping), its upstream `up`, and the directory holding `cert.pem`.
fn tls_gateway(up: &MockUpstream, tls_extra: &str) -> (TestGateway, tempfile::TempDir) {
    tls_gateway_with(Config::seed(&up.url()), tls_extra)
}

/// A gateway for `config` terminating TLS with a fresh self-signed certificate.
fn tls_gateway_with(config: Config, tls_extra: &str) -> (TestGateway, tempfile::TempDir) {
    let certs = tempfile::tempdir().unwrap();
    make_cert(certs.path());
    let tls = format!(
        "{{ cert: \"{}\", key: \"{}\"{tls_extra} }}",
        certs.path().join("cert.pem").display(),
        certs.path().join("key.pem").display()
    );
    (TestGateway::start(&config.set("server.tls", &tls).yaml()), certs)
}

/// Sends raw HTTP/1.1 over TLS and returns the whole answer, lower-cased.
fn tls_exchange(gw: &TestGateway, ca: &std::path::Path, request: &str) -> String {
    let mut s = tls_connect(gw.addr, ca, None, b"\x08http/1.1").expect("TLS handshake");
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).to_lowercase()
}

/// The served certificate's expiry is exported for the expiry alert (`docker/alerts.yml`).
#[test]
fn the_served_certificates_expiry_is_a_metric() {
    let up = MockUpstream::start();
    let (gw, _certs) = tls_gateway(&up, "");
    let left = gw.metric("portcullis_tls_cert_expiry_seconds").expect("exported with TLS");
    // `make_cert` makes a certificate valid for one day.
    assert!((86_000.0..=86_400.0).contains(&left), "{left}");
}

#[test]
fn over_tls_every_kind_of_response_carries_hsts() {
    let (provider, app) = (MockUpstream::start(), MockUpstream::start());
    let config = Config::seed(&app.url())
        .add_route("{ name: llm, path: \"/v1/**\", methods: [POST], require_role: user, chain: llm }")
        .set("providers", &format!("{{ p1: {{ url: \"{}\" }} }}", provider.url()))
        .set("provider_chains", "{ llm: { primary: p1 } }");
    let (gw, certs) = tls_gateway_with(config, "");
    let ca = certs.path().join("cert.pem");
    let token = gw.token("u1", "user");
    let body = r#"{"model":"m"}"#;
    let chain = format!(
        "POST /v1/chat HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    for (what, request) in [
        ("a provider's response", chain),
        ("a gateway refusal", "GET /profile HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_string()),
        ("a gateway endpoint", "GET /auth/nothing HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_string()),
    ] {
        let answer = tls_exchange(&gw, &ca, &request);
        assert!(answer.starts_with("http/1.1 "), "{what}: {answer}");
        assert!(answer.contains("strict-transport-security: max-age="), "{what} carries HSTS: {answer}");
    }
    assert_eq!(provider.hits(), 1);
}

fn tls_connect(
    addr: std::net::SocketAddr,
    ca: &std::path::Path,
    max: Option<pingora::tls::ssl::SslVersion>,
    alpn: &[u8],
) -> Result<pingora::tls::ssl::SslStream<TcpStream>, String> {
    use pingora::tls::ssl::{SslConnector, SslMethod};
    let mut b = SslConnector::builder(SslMethod::tls()).map_err(|e| e.to_string())?;
    b.set_ca_file(ca).map_err(|e| e.to_string())?;
    b.set_max_proto_version(max).map_err(|e| e.to_string())?;
    b.set_alpn_protos(alpn).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    b.build().connect("localhost", tcp).map_err(|e| e.to_string())
}

#[test]
fn tls_terminates_with_tls13_and_offers_http2() {
    use pingora::tls::ssl::SslVersion;
    let up = MockUpstream::start();
    let (gw, certs) = tls_gateway(&up, "");
    let ca = certs.path().join("cert.pem");

    let mut s = tls_connect(gw.addr, &ca, None, b"\x08http/1.1").expect("TLS handshake");
    assert_eq!(s.ssl().version_str(), "TLSv1.3");
    s.write_all(b"GET /public/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("strict-transport-security: max-age="), "HSTS over TLS: {text}");

    let h2 = tls_connect(gw.addr, &ca, None, b"\x02h2\x08http/1.1").expect("TLS handshake");
    assert_eq!(h2.ssl().selected_alpn_protocol(), Some(&b"h2"[..]), "HTTP/2 via ALPN");

    assert!(tls_connect(gw.addr, &ca, Some(SslVersion::TLS1_2), b"\x08http/1.1").is_err(), "TLS 1.2 is refused by default");
    assert!(
        TcpStream::connect(gw.addr)
            .and_then(|mut t| {
                t.write_all(b"GET /public/x HTTP/1.1\r\nHost: a\r\n\r\n")?;
                let mut buf = [0u8; 16];
                t.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
                let n = t.read(&mut buf)?;
                Ok(!buf[..n].starts_with(b"HTTP/1.1 200"))
            })
            .unwrap_or(true),
        "plain HTTP is not served on the TLS listener"
    );
}

#[test]
fn tls_12_can_be_allowed_by_config() {
    use pingora::tls::ssl::SslVersion;
    let up = MockUpstream::start();
    let (gw, certs) = tls_gateway(&up, ", min_version: \"1.2\"");
    let s = tls_connect(gw.addr, &certs.path().join("cert.pem"), Some(SslVersion::TLS1_2), b"\x08http/1.1").expect("TLS 1.2 allowed");
    assert_eq!(s.ssl().version_str(), "TLSv1.2");
}

#[test]
fn https_upstreams_verify_certificates_by_default() {
    // The upstream is another gateway terminating TLS with a self-signed certificate.
    let up = MockUpstream::start();
    let (tls_upstream, _certs) = tls_gateway(&up, "");
    let url = format!("https://localhost:{}", tls_upstream.addr.port());

    let verifying = TestGateway::start(&seed_config(&url));
    let r = verifying.get("/public/x").send();
    assert_eq!((r.status, r.error_code().as_str()), (502, "upstream_unavailable"), "an untrusted certificate is refused by default");
    assert_eq!(up.hits(), 0);

    let trusting = TestGateway::start(&Config::seed(&url).set("upstreams.app.tls_verify", "false").yaml());
    let r = trusting.get("/public/x").send();
    assert_eq!(r.status, 200, "HTTPS to the upstream works when verification is switched off");
    assert_eq!(up.hits(), 1);
}
