//! Lowering of `server:`: listeners, process settings, trusted proxies, header limits, TLS.

use schemars::JsonSchema;
use serde::Deserialize;

use std::net::SocketAddr;
use std::path::Path;

use super::defaults;
use super::{problem, Problem, ServerSettings};
use crate::clientip::Cidr;

/// `server:`: listeners and Pingora's own process settings.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: String,
    pub admin_listen: String,
    pub threads: usize,
    pub grace_period_seconds: u64,
    pub graceful_shutdown_timeout_seconds: u64,
    pub pid_file: String,
    pub upgrade_sock: String,
    pub upstream_keepalive_pool_size: usize,
    /// Proxies whose `X-Forwarded-For` is believed (IPs or CIDRs); nobody's by default.
    pub trusted_proxies: Vec<String>,
    /// Requests whose header section is larger get 431.
    pub max_header_bytes: usize,
    /// Requests with more header fields get 431.
    pub max_header_count: usize,
    /// A request's whole header section must arrive within this (408 and close otherwise),
    /// whatever pace its bytes come at.
    pub header_timeout_ms: u64,
    /// Open client connections, in total (0 = no cap); more are closed at accept.
    pub max_connections: usize,
    /// Open client connections from one peer address (0 = no cap); more are closed at accept.
    pub max_connections_per_ip: usize,
    /// New client connections one peer address may open per second, with a burst of as many
    /// (0 = no limit); more are closed at accept, before a task is spawned for them.
    pub max_new_connections_per_ip_per_second: u32,
    /// TLS termination on `listen` (HTTP/2 via ALPN).
    pub tls: Option<RawTls>,
}

/// `server.tls:`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chain file.
    pub cert: String,
    /// PEM private key file.
    pub key: String,
    /// `"1.3"` (default) or `"1.2"`.
    #[serde(default = "defaults::tls_min")]
    pub min_version: String,
    /// Mutual TLS: client certificates signed by `ca`.
    #[serde(default)]
    pub client_auth: Option<RawClientAuth>,
}

/// `server.tls.client_auth:`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawClientAuth {
    /// PEM file of the CA (or CAs) client certificates must be signed by.
    pub ca: String,
    /// `required`: no handshake without a valid certificate; `optional`: a certificate is
    /// verified if sent, and routes may say `require_client_cert: true`.
    pub mode: String,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "127.0.0.1:8080".into(),
            admin_listen: "127.0.0.1:9901".into(),
            threads: 2,
            grace_period_seconds: 5,
            graceful_shutdown_timeout_seconds: 10,
            pid_file: "/tmp/portcullis.pid".into(),
            upgrade_sock: "/tmp/portcullis_upgrade.sock".into(),
            upstream_keepalive_pool_size: 128,
            trusted_proxies: Vec::new(),
            max_header_bytes: 32 * 1024,
            max_header_count: 100,
            header_timeout_ms: 10_000,
            max_connections: 10_000,
            max_connections_per_ip: 0,
            max_new_connections_per_ip_per_second: 0,
            tls: None,
        }
    }
}

/// TLS termination on the proxy listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListen {
    pub cert: String,
    pub key: String,
    /// True: TLS 1.3 only; false: TLS 1.2 and 1.3.
    pub tls13_only: bool,
    /// Mutual TLS: client certificates verified against this CA file.
    pub client_auth: Option<ClientAuth>,
}

/// `server.tls.client_auth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuth {
    /// PEM file of the CA(s) client certificates must be signed by.
    pub ca: String,
    /// No handshake without a valid certificate (else one is verified only if sent).
    pub required: bool,
}

pub(super) fn lower_server(s: &RawServer, source: &Path, p: &mut Vec<Problem>) -> Option<ServerSettings> {
    let addr = |path: &str, text: &str, p: &mut Vec<Problem>| -> Option<SocketAddr> {
        let parsed = text.parse::<SocketAddr>().ok();
        if parsed.is_none() {
            problem(p, path, "expected an IP address and port, like 127.0.0.1:8080");
        }
        parsed
    };
    let listen = addr("server.listen", &s.listen, p);
    let admin_listen = addr("server.admin_listen", &s.admin_listen, p);
    if listen.is_some() && listen == admin_listen {
        problem(p, "server.admin_listen", "the admin listener must not share the proxy listener's address");
    }
    if !(1..=1024).contains(&s.threads) {
        problem(p, "server.threads", "threads must be between 1 and 1024");
    }
    if s.upstream_keepalive_pool_size == 0 {
        problem(p, "server.upstream_keepalive_pool_size", "the pool size must be at least 1");
    }
    if s.max_header_bytes < 1024 || s.max_header_count < 8 {
        problem(p, "server", "`max_header_bytes` must be at least 1024 and `max_header_count` at least 8");
    }
    if !(100..=600_000).contains(&s.header_timeout_ms) {
        problem(p, "server.header_timeout_ms", "must be between 100 and 600000 (ten minutes)");
    }
    if s.max_connections_per_ip > 0 && s.max_connections > 0 && s.max_connections_per_ip > s.max_connections {
        problem(p, "server.max_connections_per_ip", "is larger than `max_connections`, so it can never apply");
    }
    if s.max_new_connections_per_ip_per_second > 100_000 {
        problem(p, "server.max_new_connections_per_ip_per_second", "must be at most 100000 (0 turns the limit off)");
    }
    let trusted_proxies = trusted_proxies(&s.trusted_proxies, p);
    let tls = match &s.tls {
        Some(t) => Some(tls(t, source, p)?),
        None => None,
    };
    Some(ServerSettings {
        listen: listen?,
        admin_listen: admin_listen?,
        threads: s.threads,
        grace_period_seconds: s.grace_period_seconds,
        graceful_shutdown_timeout_seconds: s.graceful_shutdown_timeout_seconds,
        pid_file: s.pid_file.clone(),
        upgrade_sock: s.upgrade_sock.clone(),
        upstream_keepalive_pool_size: s.upstream_keepalive_pool_size,
        trusted_proxies,
        max_header_bytes: s.max_header_bytes,
        max_header_count: s.max_header_count,
        header_timeout: std::time::Duration::from_millis(s.header_timeout_ms),
        max_connections: s.max_connections,
        max_connections_per_ip: s.max_connections_per_ip,
        max_new_connections_per_ip_per_second: s.max_new_connections_per_ip_per_second,
        tls,
    })
}

pub(super) fn trusted_proxies(raw: &[String], p: &mut Vec<Problem>) -> Vec<Cidr> {
    raw.iter()
        .enumerate()
        .filter_map(|(i, s)| s.parse::<Cidr>().map_err(|e| problem(p, &format!("server.trusted_proxies[{i}]"), e)).ok())
        .collect()
}

pub(super) fn tls(raw: &RawTls, source: &Path, p: &mut Vec<Problem>) -> Option<TlsListen> {
    let dir = source.parent().unwrap_or(Path::new("."));
    let tls13_only = match raw.min_version.as_str() {
        "1.3" => true,
        "1.2" => false,
        _ => {
            problem(p, "server.tls.min_version", "use \"1.3\" (default) or \"1.2\"");
            return None;
        }
    };
    let mut file = |key: &str, name: &str| {
        let path = dir.join(name);
        if !path.is_file() {
            problem(p, &format!("server.tls.{key}"), format!("cannot read `{}`", path.display()));
        }
        path.display().to_string()
    };
    let (cert, key) = (file("cert", &raw.cert), file("key", &raw.key));
    let client_auth = match &raw.client_auth {
        None => None,
        Some(c) => {
            let ca = file("client_auth.ca", &c.ca);
            match c.mode.as_str() {
                "required" => Some(ClientAuth { ca, required: true }),
                "optional" => Some(ClientAuth { ca, required: false }),
                _ => {
                    problem(p, "server.tls.client_auth.mode", "use `required` or `optional`");
                    return None;
                }
            }
        }
    };
    Some(TlsListen { cert, key, tls13_only, client_auth })
}
