//! Mutual TLS through the real gateway, with certificates made at test time by `openssl`: a
//! client CA, clients it signed (one by subject, one by SAN URI), and a rogue CA's client.
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its reason

mod common;

use common::config::Config;
use common::pki::{openssl, self_signed};
use common::{MockUpstream, TestGateway};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};

/// A CA (`{name}-ca.pem`, `{name}-ca.key`).
fn make_ca(dir: &Path, name: &str) {
    let (key, cert) = (format!("{name}-ca.key"), format!("{name}-ca.pem"));
    self_signed(dir, &format!("/CN={name} test CA"), None, &key, &cert);
}

/// A client certificate `{name}.pem` / `{name}.key` signed by the CA `ca`, with `subj` and an
/// optional SAN URI.
fn make_client(dir: &Path, ca: &str, name: &str, subj: &str, uri: Option<&str>) {
    let (key, csr, cert) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
    openssl(
        &["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", subj, "-keyout", &key, "-out", &csr],
        dir,
    );
    let ext = format!("{name}.ext");
    let san = uri.map(|u| format!("subjectAltName=URI:{u}\n")).unwrap_or_default();
    std::fs::write(dir.join(&ext), format!("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n{san}")).unwrap();
    let (ca_cert, ca_key) = (format!("{ca}-ca.pem"), format!("{ca}-ca.key"));
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_cert,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ],
        dir,
    );
}

/// Every certificate the tests use, in one directory.
fn pki() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    self_signed(d, "/CN=localhost", Some("DNS:localhost,IP:127.0.0.1"), "server.key", "server.pem");
    make_ca(d, "clients");
    make_ca(d, "rogue");
    make_client(d, "clients", "bot", "/O=Example/CN=build-bot", None);
    make_client(d, "clients", "ci", "/CN=runner-7", Some("spiffe://example.org/ci"));
    make_client(d, "clients", "stranger", "/CN=stranger", None);
    make_client(d, "rogue", "forged", "/O=Example/CN=build-bot", None);
    dir
}

fn gateway(up: &MockUpstream, pki: &Path, mode: &str) -> TestGateway {
    let tls = format!(
        "{{ cert: \"{}\", key: \"{}\", client_auth: {{ ca: \"{}\", mode: {mode} }} }}",
        pki.join("server.pem").display(),
        pki.join("server.key").display(),
        pki.join("clients-ca.pem").display()
    );
    let config = Config::seed(&up.url())
        .set("server.tls", &tls)
        .set(
            "client_certs",
            r#"{ map: { "CN=build-bot,O=Example": { user_id: build-bot, role: user }, "spiffe://example.org/ci": { user_id: ci, role: viewer } } }"#,
        )
        .set("audit", "{ sink: file, file: audit.log }")
        .add_route("{ name: machines, path: \"/machines/**\", require_role: guest, require_client_cert: true, upstream: app }");
    TestGateway::start(&config.yaml())
}

/// One HTTP/1.1 request over TLS, presenting the client certificate `client` (a name in `pki`);
/// the answer's status, or the TLS failure.
fn exchange(gw: &TestGateway, pki: &Path, client: Option<&str>, request: &str) -> Result<u16, String> {
    use pingora::tls::ssl::{SslConnector, SslFiletype, SslMethod};
    let mut b = SslConnector::builder(SslMethod::tls()).map_err(|e| e.to_string())?;
    b.set_ca_file(pki.join("server.pem")).map_err(|e| e.to_string())?;
    if let Some(name) = client {
        let cert: PathBuf = pki.join(format!("{name}.pem"));
        b.set_certificate_file(&cert, SslFiletype::PEM).map_err(|e| e.to_string())?;
        b.set_private_key_file(pki.join(format!("{name}.key")), SslFiletype::PEM).map_err(|e| e.to_string())?;
    }
    let tcp = TcpStream::connect(gw.addr).map_err(|e| e.to_string())?;
    let mut s = b.build().connect("localhost", tcp).map_err(|e| e.to_string())?;
    // In TLS 1.3 the server judges the client's certificate after the client's handshake is
    // done: a refusal shows as an alert on the first read.
    s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.strip_prefix("HTTP/1.1 ").and_then(|r| r.get(..3)).and_then(|c| c.parse().ok()).ok_or_else(|| format!("no HTTP answer: {text:?}"))
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
}

#[test]
fn required_client_certificates_are_checked_in_the_handshake_and_become_identities() {
    let pki = pki();
    let up = MockUpstream::start();
    let gw = gateway(&up, pki.path(), "required");
    assert!(exchange(&gw, pki.path(), None, &get("/public/x")).is_err(), "no certificate: no handshake");
    assert!(exchange(&gw, pki.path(), Some("forged"), &get("/public/x")).is_err(), "another CA's certificate: no handshake");
    assert_eq!(up.hits(), 0);

    assert_eq!(exchange(&gw, pki.path(), Some("bot"), &get("/profile")), Ok(200));
    let seen = up.last();
    assert_eq!(seen.header("x-user-id"), Some("build-bot"));
    assert_eq!(seen.header("x-user-role"), Some("user"));
    assert_eq!(seen.header("x-client-cert-subject"), Some("CN=build-bot,O=Example"));
    assert_eq!(exchange(&gw, pki.path(), Some("bot"), &get("/projects/1")), Ok(200), "user may read projects");
    assert_eq!(exchange(&gw, pki.path(), Some("ci"), &get("/profile")), Ok(200), "mapped by its SAN URI");
    assert_eq!(up.last().header("x-user-id"), Some("ci"));
    let delete = "DELETE /projects/1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    assert_eq!(exchange(&gw, pki.path(), Some("ci"), delete), Ok(403), "a viewer may not delete");
    assert_eq!(exchange(&gw, pki.path(), Some("stranger"), &get("/profile")), Ok(401), "a valid but unmapped certificate is no identity");
    assert_eq!(exchange(&gw, pki.path(), Some("stranger"), &get("/public/x")), Ok(200));
    // The certificate's subject is in the audit trail.
    assert_eventually!(
        gw.audit_events().iter().any(|e| e["details"]["client_cert"] == "CN=build-bot,O=Example" && e["user_id"] == "build-bot"),
        "the access event names the certificate"
    );
}

#[test]
fn optional_client_certificates_let_routes_require_one() {
    let pki = pki();
    let up = MockUpstream::start();
    let gw = gateway(&up, pki.path(), "optional");
    assert_eq!(exchange(&gw, pki.path(), None, &get("/public/x")), Ok(200), "no certificate is fine here");
    assert_eq!(exchange(&gw, pki.path(), None, &get("/machines/a")), Ok(403));
    assert_eq!(exchange(&gw, pki.path(), Some("bot"), &get("/machines/a")), Ok(200));
    assert!(exchange(&gw, pki.path(), Some("forged"), &get("/public/x")).is_err(), "a certificate that is sent must verify");
    // A token still works without a certificate; the route that wants one still wants one.
    let token = gw.token("u1", "user");
    let with_token =
        |path: &str| format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    assert_eq!(exchange(&gw, pki.path(), None, &with_token("/profile")), Ok(200));
    assert_eq!(exchange(&gw, pki.path(), None, &with_token("/machines/a")), Ok(403));
}

#[test]
fn client_certificate_settings_without_client_auth_are_refused() {
    let up = MockUpstream::start();
    let text = Config::seed(&up.url())
        .set("client_certs", r#"{ map: { "CN=x": { user_id: x, role: user } } }"#)
        .add_route("{ name: m, path: \"/m\", public: true, require_client_cert: true, upstream: app }")
        .yaml();
    let parsed =
        portcullis::config::parse(&text, Path::new("gateway.yaml"), &|n| (n == "JWT_SECRET_KEY").then(|| common::TEST_SECRET.to_string()));
    let errors = parsed.err().expect("refused").to_string();
    assert!(errors.contains("client_certs") && errors.contains("require_client_cert"), "{errors}");
}
