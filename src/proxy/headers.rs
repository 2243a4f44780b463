//! Request-header policy for what goes upstream.

use http::header::{AUTHORIZATION, HOST};
use pingora::http::RequestHeader;
use pingora::prelude::*;
use std::net::IpAddr;

use crate::admission::Identity;
use crate::config::Upstream;

/// Headers that only the gateway may set: whatever a client sent under these names is dropped.
pub const IDENTITY_HEADERS: [&str; 3] = ["x-user-id", "x-user-role", "x-session-id"];

/// The client's request id if it is well formed (1-128 of `[A-Za-z0-9._:-]`), else a new one.
pub fn request_id(req: &RequestHeader) -> String {
    let mut sent = req.headers.get_all("x-request-id").iter();
    if let (Some(v), None) = (sent.next(), sent.next()) {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-')) {
            // checked ASCII above
            return String::from_utf8_lossy(b).into_owned();
        }
    }
    uuid::Uuid::new_v4().to_string()
}

/// The single `Authorization` header value; several count as one malformed (empty) value.
pub fn authorization(req: &RequestHeader) -> Option<&[u8]> {
    let mut all = req.headers.get_all(AUTHORIZATION).iter();
    match (all.next(), all.next()) {
        (None, _) => None,
        (Some(v), None) => Some(v.as_bytes()),
        (Some(_), Some(_)) => Some(b""),
    }
}

/// What the upstream request is rewritten with.
pub struct Forwarding<'a> {
    pub path: Option<&'a str>,
    pub identity: Option<&'a Identity>,
    pub request_id: &'a str,
    pub client_ip: Option<IpAddr>,
    pub upstream: &'a Upstream,
}

/// Applies the forwarding policy to the upstream request. Pingora has already removed
/// hop-by-hop headers and any header a client named in `Connection`, so what is set here stays.
pub fn rewrite_upstream_request(req: &mut RequestHeader, f: &Forwarding<'_>) -> Result<()> {
    // Always send origin-form with the normalized path (never a client's absolute-form).
    if f.path.is_some() || req.uri.authority().is_some() {
        let path = f.path.unwrap_or(req.uri.path());
        let target = match req.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        };
        let uri = http::Uri::try_from(target).or_err(ErrorType::HTTPStatus(400), "normalized path is not a valid URI")?;
        req.set_uri(uri);
    }
    for name in IDENTITY_HEADERS {
        while req.remove_header(name).is_some() {}
    }
    if let Some(id) = f.identity {
        req.insert_header("x-user-id", &id.user_id)?;
        if let Some(role) = &id.role {
            req.insert_header("x-user-role", role)?;
        }
        req.insert_header("x-session-id", &id.session_id)?;
    }
    if !f.upstream.forward_authorization {
        while req.remove_header(&AUTHORIZATION).is_some() {}
    }
    req.insert_header("x-request-id", f.request_id)?;
    if let Some(ip) = f.client_ip {
        let forwarded = match req.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prior) => format!("{prior}, {ip}"),
            None => ip.to_string(),
        };
        req.insert_header("x-forwarded-for", forwarded)?;
    }
    req.insert_header("x-forwarded-proto", "http")?;
    if let Some(host) = &f.upstream.rewrite_host {
        req.insert_header(HOST, host)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn upstream(forward_authorization: bool) -> Upstream {
        Upstream {
            name: "app".into(),
            address: "127.0.0.1:1".parse().unwrap(),
            tls: false,
            host: "127.0.0.1".into(),
            sni: "127.0.0.1".into(),
            verify_cert: true,
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            forward_authorization,
            rewrite_host: None,
            security_headers: true,
        }
    }

    fn request(target: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", target.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn identity_headers_are_replaced_by_verified_values() {
        let mut r = request(
            "/p",
            &[("X-User-Id", "1"), ("x-user-id", "2"), ("X-User-Role", "admin"), ("X-Session-Id", "s"), ("Authorization", "Bearer t")],
        );
        let id = Identity { user_id: "42".into(), role: Some("viewer".into()), session_id: "sid".into() };
        let up = upstream(false);
        rewrite_upstream_request(
            &mut r,
            &Forwarding { path: None, identity: Some(&id), request_id: "rid", client_ip: None, upstream: &up },
        )
        .unwrap();
        let all = |n: &str| r.headers.get_all(n).iter().map(|v| v.to_str().unwrap().to_string()).collect::<Vec<_>>();
        assert_eq!(all("x-user-id"), vec!["42"]);
        assert_eq!(all("x-user-role"), vec!["viewer"]);
        assert_eq!(all("x-session-id"), vec!["sid"]);
        assert!(all("authorization").is_empty());
        assert_eq!(all("x-request-id"), vec!["rid"]);
    }

    #[test]
    fn anonymous_requests_carry_no_identity_and_authorization_is_kept_when_asked() {
        let mut r = request("/p?q=1", &[("X-User-Id", "1"), ("Authorization", "Bearer t")]);
        let up = upstream(true);
        rewrite_upstream_request(
            &mut r,
            &Forwarding { path: Some("/n"), identity: None, request_id: "r", client_ip: Some("10.0.0.1".parse().unwrap()), upstream: &up },
        )
        .unwrap();
        assert!(r.headers.get("x-user-id").is_none());
        assert_eq!(r.headers.get("authorization").unwrap(), "Bearer t");
        assert_eq!(r.uri.to_string(), "/n?q=1");
        assert_eq!(r.headers.get("x-forwarded-for").unwrap(), "10.0.0.1");
    }

    #[test]
    fn request_ids_are_kept_only_when_well_formed() {
        assert_eq!(request_id(&request("/", &[("x-request-id", "abc-123")])), "abc-123");
        for bad in ["", "a b", "a\"b", &"x".repeat(129)] {
            let got = request_id(&request("/", &[("x-request-id", bad)]));
            assert_ne!(got, bad);
            assert_eq!(got.len(), 36);
        }
        let two = request("/", &[("x-request-id", "a"), ("x-request-id", "b")]);
        assert_eq!(request_id(&two).len(), 36);
    }

    #[test]
    fn several_authorization_headers_are_one_malformed_value() {
        assert_eq!(authorization(&request("/", &[])), None);
        assert_eq!(authorization(&request("/", &[("authorization", "Bearer a")])), Some(&b"Bearer a"[..]));
        assert_eq!(authorization(&request("/", &[("authorization", "Bearer a"), ("authorization", "Bearer b")])), Some(&b""[..]));
    }
}
