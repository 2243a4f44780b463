//! Lowering of `server:`: listeners, process settings, trusted proxies, header limits, TLS.

use std::net::SocketAddr;
use std::path::Path;

use super::raw::{RawServer, RawTls};
use super::{problem, Problem, ServerSettings};
use crate::clientip::Cidr;

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
