//! Lowering of `upstreams:`: application upstreams, and the URL parsing providers share.

use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use super::defaults;
use super::{problem, Problem};
use crate::proxy::upstream::Upstream;

/// `upstreams.<name>:`: an application behind the gateway.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub url: String,
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    #[serde(default = "defaults::read_timeout_ms")]
    pub read_timeout_ms: u64,
    #[serde(default = "defaults::write_timeout_ms")]
    pub write_timeout_ms: u64,
    #[serde(default = "defaults::idle_timeout_seconds")]
    pub idle_timeout_seconds: u64,
    #[serde(default = "defaults::yes")]
    pub tls_verify: bool,
    #[serde(default)]
    pub sni: Option<String>,
    #[serde(default)]
    pub forward_authorization: bool,
    #[serde(default)]
    pub rewrite_host: bool,
    /// Add the gateway's security headers to this upstream's responses (where it set none).
    #[serde(default = "defaults::yes")]
    pub security_headers: bool,
    /// Add `X-Portcullis-Assertion`: a 60 s JWT signed with the gateway's current asymmetric
    /// key, naming this upstream as its audience.
    #[serde(default)]
    pub identity_assertion: bool,
}

/// `providers.NAME.health_check:`: a cheap probe (never a billed completion).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawHealthCheck {
    pub path: String,
    pub method: String,
    pub interval_seconds: u64,
    pub timeout_ms: u64,
}

impl Default for RawHealthCheck {
    fn default() -> Self {
        RawHealthCheck { path: "/v1/models".into(), method: "GET".into(), interval_seconds: 300, timeout_ms: 2000 }
    }
}

pub(super) fn lower_upstreams(raw: &BTreeMap<String, Option<RawUpstream>>, p: &mut Vec<Problem>) -> Vec<Option<Upstream>> {
    raw.iter().map(|(name, up)| up.as_ref().and_then(|u| lower_upstream(name, u, p))).collect()
}

/// A parsed `http(s)://host[:port]` target.
pub(super) struct UrlTarget {
    pub address: SocketAddr,
    pub tls: bool,
    pub host: String,
    pub host_header: String,
}

/// Parses and resolves an upstream or provider URL (no path, no credentials); problems at `path`.
pub(super) fn parse_url(url: &str, path: &str, p: &mut Vec<Problem>) -> Option<UrlTarget> {
    let bad = |p: &mut Vec<Problem>, why: &str| {
        problem(p, path, why);
        None
    };
    let Ok(uri) = url.parse::<http::Uri>() else {
        return bad(p, "not a valid URL: expected http://host:port or https://host:port");
    };
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return bad(p, "the URL scheme must be http or https"),
    };
    let Some(authority) = uri.authority() else {
        return bad(p, "the URL has no host");
    };
    if authority.as_str().contains('@') {
        return bad(p, "credentials in a URL are not supported");
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return bad(p, "the URL must not have a path or query: routes keep the request's path");
    }
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let address = match host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) => match (host.as_str(), port).to_socket_addrs().ok().and_then(|mut a| a.next()) {
            Some(a) => a,
            None => return bad(p, &format!("cannot resolve host `{host}`")),
        },
    };
    let host_header = if authority.port_u16().is_some() { authority.as_str().to_string() } else { host.clone() };
    Some(UrlTarget { address, tls, host, host_header })
}

pub(super) fn lower_upstream(name: &str, u: &RawUpstream, p: &mut Vec<Problem>) -> Option<Upstream> {
    let UrlTarget { address, tls, host, host_header } = parse_url(&u.url, &format!("upstreams.{name}.url"), p)?;
    for (key, v) in [
        ("connect_timeout_ms", u.connect_timeout_ms),
        ("read_timeout_ms", u.read_timeout_ms),
        ("write_timeout_ms", u.write_timeout_ms),
        ("idle_timeout_seconds", u.idle_timeout_seconds),
    ] {
        if v == 0 {
            problem(p, &format!("upstreams.{name}.{key}"), "a timeout must be greater than 0");
        }
    }
    Some(Upstream {
        name: name.to_string(),
        address,
        tls,
        sni: u.sni.clone().unwrap_or_else(|| host.clone()),
        host,
        verify_cert: u.tls_verify,
        connect_timeout: Duration::from_millis(u.connect_timeout_ms),
        read_timeout: Duration::from_millis(u.read_timeout_ms),
        write_timeout: Duration::from_millis(u.write_timeout_ms),
        idle_timeout: Duration::from_secs(u.idle_timeout_seconds),
        forward_authorization: u.forward_authorization,
        rewrite_host: u.rewrite_host.then_some(host_header),
        security_headers: u.security_headers,
        identity_assertion: u.identity_assertion,
    })
}
