//! A small HTTP GET over Pingora's connector, for identity providers' discovery documents and
//! key sets: the host resolved at each fetch (providers move), HTTPS verified against the
//! system's roots, a bounded body, a deadline.

use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use std::time::Duration;

/// The largest document read.
const MAX_BODY: usize = 1024 * 1024;

/// A fetched document: its body and its `Cache-Control`.
pub struct Fetched {
    pub body: Vec<u8>,
    pub cache_control: Option<String>,
}

/// The parts of an `http(s)://host[:port]/path` URL.
#[derive(Debug, PartialEq, Eq)]
pub struct Url {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
}

/// Parses an absolute http(s) URL; Err says what is wrong.
pub fn parse_url(url: &str) -> Result<Url, String> {
    let (tls, rest) = match url.split_once("://") {
        Some(("https", r)) => (true, r),
        Some(("http", r)) => (false, r),
        _ => return Err("must start with https:// (or http:// for a loopback host)".into()),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err("needs a host (and no user info)".into());
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => match p.parse::<u16>() {
            Ok(p) => (h, p),
            Err(_) => return Err("has a port that is not a number".into()),
        },
        _ => (authority, if tls { 443 } else { 80 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    if path.contains('#') || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("has a path that is not plain ASCII".into());
    }
    Ok(Url { tls, host, port, path: path.to_string() })
}

/// Whether a host is this machine (plain HTTP is accepted only for these).
pub fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// GETs `url` within `deadline`: 200 with a body of at most 1 MiB, or Err (never a body's text).
pub async fn get(connector: &Connector, url: &str, deadline: Duration) -> Result<Fetched, String> {
    let work = async {
        let u = parse_url(url)?;
        let addr = tokio::net::lookup_host((u.host.as_str(), u.port))
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", u.host))?
            .next()
            .ok_or_else(|| format!("{} has no address", u.host))?;
        let mut peer = HttpPeer::new(addr, u.tls, u.host.clone());
        peer.options.connection_timeout = Some(deadline);
        peer.options.read_timeout = Some(deadline);
        peer.options.verify_cert = true;
        peer.options.verify_hostname = true;
        let (mut session, _) = connector.get_http_session(&peer).await.map_err(|e| format!("connect: {:?}", e.etype()))?;
        let mut req = RequestHeader::build("GET", u.path.as_bytes(), None).map_err(|e| e.to_string())?;
        let host = if (u.tls && u.port == 443) || (!u.tls && u.port == 80) { u.host.clone() } else { format!("{}:{}", u.host, u.port) };
        for (k, v) in [("host", host.as_str()), ("accept", "application/json"), ("user-agent", "portcullis")] {
            req.insert_header(k, v).map_err(|e| e.to_string())?;
        }
        session.write_request_header(Box::new(req)).await.map_err(|_| "write error".to_string())?;
        session.finish_request_body().await.map_err(|_| "write error".to_string())?;
        session.read_response_header().await.map_err(|e| format!("no response: {:?}", e.etype()))?;
        let (status, cache_control) = match session.response_header() {
            Some(r) => (r.status.as_u16(), r.headers.get("cache-control").and_then(|v| v.to_str().ok()).map(str::to_string)),
            None => (0, None),
        };
        if status != 200 {
            return Err(format!("answered {status}"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = session.read_response_body().await.map_err(|e| format!("body: {:?}", e.etype()))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err("the document is larger than 1 MiB".into());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched { body, cache_control })
    };
    tokio::time::timeout(deadline, work).await.unwrap_or_else(|_| Err("timed out".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_split_and_checked() {
        let u = parse_url("https://idp.example/realms/main/.well-known/openid-configuration").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (true, "idp.example", 443, "/realms/main/.well-known/openid-configuration")
        );
        let u = parse_url("http://127.0.0.1:8080").unwrap();
        assert_eq!((u.tls, u.port, u.path.as_str()), (false, 8080, "/"));
        let u = parse_url("http://[::1]:9/k").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9));
        for bad in ["ftp://x", "idp.example", "https://", "https://u:p@h/", "https://h:xx/", "https://h/a b"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        assert!(is_loopback("127.0.0.2") && is_loopback("localhost") && is_loopback("::1"));
        assert!(!is_loopback("idp.example") && !is_loopback("10.0.0.1"));
    }
}
