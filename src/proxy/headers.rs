//! Header policy for what goes upstream and what goes back to the client: the forwarding
//! rewrite of upstream requests, and [`finish`], the one function that finishes the headers of
//! every response (upstream, provider chain or the gateway's own).
//!
//! Pingora keeps, beside each message's header map, a second map with every header name's
//! original spelling, and each insert or remove through its API updates both and parses the
//! name again: about half of what a header costs. The gateway edits the plain `http` parts
//! instead and writes header names in canonical case (standard names in Title-Case, others in
//! lower case), as Envoy and HAProxy do: header names are case-insensitive (RFC 9110, 5.1).

use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, HOST, STRICT_TRANSPORT_SECURITY, VARY};
use http::{request, response};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;

use super::upstream::Upstream;
use crate::admission::Identity;
use crate::cors::CorsPolicy;
use crate::policy::Credential;

/// Headers the gateway adds to every response that lacks them (the upstream's own values win).
pub const SECURITY_HEADERS: [(HeaderName, HeaderValue); 3] = [
    (HeaderName::from_static("x-content-type-options"), HeaderValue::from_static("nosniff")),
    (HeaderName::from_static("x-frame-options"), HeaderValue::from_static("DENY")),
    (HeaderName::from_static("referrer-policy"), HeaderValue::from_static("no-referrer")),
];

/// `Strict-Transport-Security` for responses served over TLS.
pub const HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000; includeSubDomains");

const X_USER_ID: HeaderName = HeaderName::from_static("x-user-id");
const X_USER_ROLE: HeaderName = HeaderName::from_static("x-user-role");
const X_SESSION_ID: HeaderName = HeaderName::from_static("x-session-id");
const X_API_KEY_ID: HeaderName = HeaderName::from_static("x-api-key-id");
const X_CLIENT_CERT_SUBJECT: HeaderName = HeaderName::from_static("x-client-cert-subject");
const X_PORTCULLIS_ASSERTION: HeaderName = HeaderName::from_static("x-portcullis-assertion");
const X_USER_ISSUER: HeaderName = HeaderName::from_static("x-user-issuer");
/// Where a client may present an API key instead of `Authorization`.
pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Headers that only the gateway may set: whatever a client sent under these names is dropped.
pub const IDENTITY_HEADERS: [HeaderName; 7] =
    [X_USER_ID, X_USER_ROLE, X_SESSION_ID, X_API_KEY_ID, X_CLIENT_CERT_SUBJECT, X_PORTCULLIS_ASSERTION, X_USER_ISSUER];

/// The client's request id if it is well formed (1-128 of `[A-Za-z0-9._:-]`), else a new one:
/// as text (logs, audit) and as the header value every response and upstream request carries
/// (made once, then shared).
pub fn request_id(req: &RequestHeader) -> (String, HeaderValue) {
    let mut sent = req.headers.get_all(X_REQUEST_ID).iter();
    if let (Some(v), None) = (sent.next(), sent.next()) {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-')) {
            // checked ASCII above
            return (String::from_utf8_lossy(b).into_owned(), v.clone());
        }
    }
    let mut buf = uuid::Uuid::encode_buffer();
    let text = String::from(uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf));
    let value = HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("-"));
    (text, value)
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

/// The single `X-Api-Key` value; several count as one malformed (empty) value.
pub fn api_key(req: &RequestHeader) -> Option<&[u8]> {
    let mut all = req.headers.get_all(X_API_KEY).iter();
    match (all.next(), all.next()) {
        (None, _) => None,
        (Some(v), None) => Some(v.as_bytes()),
        (Some(_), Some(_)) => Some(b""),
    }
}

/// Whether an `Authorization` value carries an API key (which never goes upstream).
fn carries_api_key(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    b.len() > 7 && b[..7].eq_ignore_ascii_case(b"bearer ") && b[7..].trim_ascii_start().starts_with(b"pcs_")
}

/// The request's declared body length (the guard has already refused anything but one number).
pub fn content_length(req: &RequestHeader) -> Option<u64> {
    req.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

/// A header value from text the gateway holds (ids, names, addresses).
pub fn value(s: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(s).or_err(ErrorType::InvalidHTTPHeader, "a header value the gateway writes is not valid")
}

/// Edits a request's headers and target as plain `http` parts; header names come out in
/// canonical case and the target as the URI's origin-form.
pub fn edit_request<T>(req: &mut RequestHeader, edit: impl FnOnce(&mut request::Parts) -> T) -> T {
    let end_stream = req.send_end_stream();
    let placeholder = RequestHeader::from(http::Request::new(()).into_parts().0);
    let mut parts = request::Parts::from(std::mem::replace(req, placeholder));
    let out = edit(&mut parts);
    *req = RequestHeader::from(parts);
    if let Some(end_stream) = end_stream {
        req.set_send_end_stream(end_stream);
    }
    out
}

/// Edits a response's headers as plain `http` parts; header names come out in canonical case.
pub fn edit_response<T>(resp: &mut ResponseHeader, edit: impl FnOnce(&mut response::Parts) -> T) -> T {
    let reason = resp.get_reason_phrase().filter(|r| Some(*r) != resp.status.canonical_reason()).map(str::to_owned);
    let placeholder = ResponseHeader::from(http::Response::new(()).into_parts().0);
    let mut parts = response::Parts::from(std::mem::replace(resp, placeholder));
    let out = edit(&mut parts);
    *resp = ResponseHeader::from(parts);
    if reason.is_some() {
        // Only the custom phrase is kept; a canonical one is what an unset phrase writes anyway.
        let _ = resp.set_reason_phrase(reason.as_deref());
    }
    out
}

/// What a response is finished with.
#[derive(Clone, Copy)]
pub struct Finish<'a> {
    pub request_id: &'a HeaderValue,
    /// Add the security headers (and HSTS over TLS) where the response has none of its own.
    pub harden: bool,
    /// Served over TLS.
    pub tls: bool,
    /// The CORS policy and the request's Origin, when CORS is configured.
    pub cors: Option<(&'a CorsPolicy, Option<&'a str>)>,
    /// `RateLimit-Policy` and `RateLimit` of the last limit the request passed.
    pub limits: Option<&'a (HeaderValue, HeaderValue)>,
}

/// Finishes a response's headers: the request id, the security headers and HSTS where absent,
/// CORS for an allowed origin (`Vary` appended to the response's own), RateLimit headers.
pub fn finish(h: &mut HeaderMap, f: &Finish<'_>) -> Result<()> {
    h.reserve(6);
    h.insert(X_REQUEST_ID, f.request_id.clone());
    if f.harden {
        for (name, v) in &SECURITY_HEADERS {
            h.entry(name).or_insert_with(|| v.clone());
        }
        if f.tls {
            h.entry(STRICT_TRANSPORT_SECURITY).or_insert(HSTS);
        }
    }
    if let Some((policy, state)) = f.limits {
        h.insert(RATELIMIT_POLICY, policy.clone());
        h.insert(RATELIMIT, state.clone());
    }
    if let Some((policy, origin)) = f.cors {
        for (name, v) in policy.response_headers(origin) {
            let (name, v) = (HeaderName::from_static(name), value(&v)?);
            if name == VARY {
                h.append(name, v); // keep the response's own Vary
            } else {
                h.insert(name, v);
            }
        }
    }
    Ok(())
}

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// What the upstream request is rewritten with.
pub struct Forwarding<'a> {
    pub path: Option<&'a str>,
    pub identity: Option<&'a Identity>,
    pub request_id: &'a HeaderValue,
    /// The peer's address as text (see [`crate::clientip::ip_text`]).
    pub client_ip: Option<&'a str>,
    /// Whether the client came over TLS (`X-Forwarded-Proto`).
    pub tls: bool,
    pub upstream: &'a Upstream,
    /// The signed identity assertion, for upstreams that asked for one.
    pub assertion: Option<HeaderValue>,
}

/// Applies the forwarding policy to the upstream request. Pingora has already removed
/// hop-by-hop headers and any header a client named in `Connection`, so what is set here stays.
pub fn rewrite_upstream_request(req: &mut RequestHeader, f: &Forwarding<'_>) -> Result<()> {
    edit_request(req, |parts| forward(parts, f))
}

fn forward(parts: &mut request::Parts, f: &Forwarding<'_>) -> Result<()> {
    // Always send origin-form with the normalized path (never a client's absolute-form).
    if f.path.is_some() || parts.uri.authority().is_some() {
        let path = f.path.unwrap_or(parts.uri.path());
        let target = match parts.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        };
        parts.uri = http::Uri::try_from(target).or_err(ErrorType::HTTPStatus(400), "normalized path is not a valid URI")?;
    }
    let h: &mut HeaderMap = &mut parts.headers;
    // One grow for everything set below, instead of one per insert that crosses a size class
    // (measured: without it the inserts here cost twice as much).
    h.reserve(8);
    // Whatever a client sent under the identity names goes: `insert` replaces every value under
    // a name, and the rest are removed (looked for in one pass over the names first, since a
    // request almost never carries them).
    if h.keys().any(|k| IDENTITY_HEADERS.contains(k) || k == X_API_KEY) {
        for name in IDENTITY_HEADERS {
            h.remove(name); // every value under the name
        }
        h.remove(X_API_KEY); // a credential for the gateway, never for the upstream
    }
    if let Some(id) = f.identity {
        h.insert(X_USER_ID, value(&id.user_id)?);
        if let Some(role) = &id.role {
            h.insert(X_USER_ROLE, value(role)?);
        }
        match &id.credential {
            Credential::Session { session_id, .. } => h.insert(X_SESSION_ID, value(session_id)?),
            Credential::ApiKey { id } => h.insert(X_API_KEY_ID, value(id)?),
            // A subject that is not plain ASCII is left out rather than failing the request.
            Credential::Certificate { subject } => value(subject).ok().and_then(|v| h.insert(X_CLIENT_CERT_SUBJECT, v)),
            Credential::External { provider, .. } => h.insert(X_USER_ISSUER, value(provider)?),
        };
    }
    if let Some(a) = &f.assertion {
        h.insert(X_PORTCULLIS_ASSERTION, a.clone());
    }
    if !f.upstream.forward_authorization || h.get(AUTHORIZATION).is_some_and(carries_api_key) {
        h.remove(AUTHORIZATION);
    }
    h.insert(X_REQUEST_ID, f.request_id.clone());
    if let Some(ip) = f.client_ip {
        let forwarded = match h.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(prior) => value(&format!("{prior}, {ip}"))?,
            None => value(ip)?,
        };
        h.insert(X_FORWARDED_FOR, forwarded);
    }
    h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(if f.tls { "https" } else { "http" }));
    if let Some(host) = &f.upstream.rewrite_host {
        h.insert(HOST, value(host)?);
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
            identity_assertion: false,
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
        let id = Identity::session("42", Some("viewer".into()), "sid", "j");
        let up = upstream(false);
        rewrite_upstream_request(
            &mut r,
            &Forwarding {
                path: None,
                identity: Some(&id),
                request_id: &HeaderValue::from_static("rid"),
                client_ip: None,
                tls: false,
                upstream: &up,
                assertion: None,
            },
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
    fn a_client_role_header_never_survives_an_identity_without_a_role() {
        let mut r = request("/p", &[("X-User-Role", "admin"), ("x-user-role", "root"), ("X-Session-Id", "forged")]);
        let id = Identity::session("7", None, "s", "j");
        let rid = HeaderValue::from_static("r");
        let up = upstream(false);
        let f =
            Forwarding { path: None, identity: Some(&id), request_id: &rid, client_ip: None, tls: false, upstream: &up, assertion: None };
        rewrite_upstream_request(&mut r, &f).unwrap();
        assert!(r.headers.get("x-user-role").is_none());
        assert_eq!(r.headers.get_all("x-session-id").iter().collect::<Vec<_>>(), ["s"]);
    }

    #[test]
    fn an_api_key_never_goes_upstream_and_its_id_does() {
        let key = "pcs_abcdefABCDEF_0123456789012345678901234567890123456789012ABCDEF";
        let key_identity = Identity {
            user_id: "bot".into(),
            role: Some("user".into()),
            credential: Credential::ApiKey { id: "abcdefABCDEF".into() },
            scopes: None,
        };
        let rid = HeaderValue::from_static("r");
        // Even an upstream that is sent Authorization never gets a key in it.
        let up = upstream(true);
        for (name, value) in [("X-Api-Key", key.to_string()), ("Authorization", format!("bearer  {key}"))] {
            let mut r = request("/p", &[(name, &value), ("X-Api-Key-Id", "forged"), ("X-Session-Id", "forged")]);
            let f = Forwarding {
                path: None,
                identity: Some(&key_identity),
                request_id: &rid,
                client_ip: None,
                tls: false,
                upstream: &up,
                assertion: None,
            };
            rewrite_upstream_request(&mut r, &f).unwrap();
            assert!(r.headers.iter().all(|(_, v)| !v.as_bytes().windows(8).any(|w| w == &key.as_bytes()[..8])), "{name}: {:?}", r.headers);
            assert_eq!(r.headers.get_all("x-api-key-id").iter().collect::<Vec<_>>(), ["abcdefABCDEF"]);
            assert!(r.headers.get("x-session-id").is_none());
            assert_eq!(r.headers.get("x-user-id").unwrap(), "bot");
        }
        // Anonymous requests lose a key header too.
        let mut r = request("/p", &[("x-api-key", key)]);
        let f = Forwarding { path: None, identity: None, request_id: &rid, client_ip: None, tls: false, upstream: &up, assertion: None };
        rewrite_upstream_request(&mut r, &f).unwrap();
        assert!(r.headers.get("x-api-key").is_none());
    }

    #[test]
    fn anonymous_requests_carry_no_identity_and_authorization_is_kept_when_asked() {
        let mut r = request("/p?q=1", &[("X-User-Id", "1"), ("Authorization", "Bearer t")]);
        let up = upstream(true);
        rewrite_upstream_request(
            &mut r,
            &Forwarding {
                path: Some("/n"),
                identity: None,
                request_id: &HeaderValue::from_static("r"),
                client_ip: Some("10.0.0.1"),
                tls: true,
                upstream: &up,
                assertion: None,
            },
        )
        .unwrap();
        assert!(r.headers.get("x-user-id").is_none());
        assert_eq!(r.headers.get("authorization").unwrap(), "Bearer t");
        assert_eq!(r.uri.to_string(), "/n?q=1");
        assert_eq!(r.headers.get("x-forwarded-for").unwrap(), "10.0.0.1");
        assert_eq!(r.headers.get("x-forwarded-proto").unwrap(), "https");
    }

    #[test]
    fn edited_messages_keep_everything_but_the_spelling_of_header_names() {
        let mut r = request("/a%20b?x=1", &[("X-Custom", "v1"), ("x-custom", "v2"), ("Host", "h")]);
        edit_request(&mut r, |p| p.headers.insert("x-new", HeaderValue::from_static("n")));
        assert_eq!(r.uri.to_string(), "/a%20b?x=1");
        assert_eq!(r.headers.get_all("x-custom").iter().collect::<Vec<_>>(), ["v1", "v2"]);
        assert_eq!(r.headers.get("x-new").unwrap(), "n");
        let mut wire = Vec::new();
        r.header_to_h1_wire(&mut wire);
        let wire = String::from_utf8(wire).unwrap();
        assert!(wire.contains("x-custom: v1\r\nx-custom: v2\r\n") && wire.contains("Host: h\r\n"), "{wire}");

        let mut resp = ResponseHeader::build(299, None).unwrap();
        resp.set_reason_phrase(Some("Fine")).unwrap();
        resp.append_header("X-Up", "1").unwrap();
        edit_response(&mut resp, |p| p.headers.insert(X_REQUEST_ID, HeaderValue::from_static("r")));
        assert_eq!((resp.status.as_u16(), resp.get_reason_phrase()), (299, Some("Fine")));
        assert_eq!(resp.headers.get("x-up").unwrap(), "1");
        assert_eq!(resp.headers.get("x-request-id").unwrap(), "r");
    }

    #[test]
    fn every_response_is_finished_the_same_way() {
        let cors = CorsPolicy {
            origins: vec!["https://app.example.com".into()],
            methods: vec!["GET".into()],
            headers: vec![],
            credentials: false,
            max_age_seconds: 60,
        };
        let limits = (HeaderValue::from_static("\"api_user\";q=3;w=60"), HeaderValue::from_static("\"api_user\";r=2;t=9"));
        let rid = HeaderValue::from_static("rid");
        let f = Finish {
            request_id: &rid,
            harden: true,
            tls: true,
            cors: Some((&cors, Some("https://app.example.com"))),
            limits: Some(&limits),
        };
        let mut h = HeaderMap::new();
        h.insert("x-frame-options", HeaderValue::from_static("SAMEORIGIN"));
        h.insert(VARY, HeaderValue::from_static("Accept"));
        finish(&mut h, &f).unwrap();
        assert_eq!(h.get("x-request-id").unwrap(), "rid");
        assert_eq!(h.get("x-frame-options").unwrap(), "SAMEORIGIN", "the response's own value wins");
        assert_eq!(h.get("x-content-type-options").unwrap(), "nosniff");
        assert_eq!(h.get(STRICT_TRANSPORT_SECURITY).unwrap(), HSTS);
        assert_eq!(h.get("access-control-allow-origin").unwrap(), "https://app.example.com");
        assert_eq!(h.get_all(VARY).iter().collect::<Vec<_>>(), ["Accept", "Origin"]);
        assert_eq!(h.get("ratelimit").unwrap(), "\"api_user\";r=2;t=9");

        // Over plain HTTP there is no HSTS; an upstream that opts out gets no security headers.
        let mut h = HeaderMap::new();
        finish(&mut h, &Finish { harden: false, tls: false, cors: None, ..f }).unwrap();
        assert!(h.get("x-content-type-options").is_none() && h.get(STRICT_TRANSPORT_SECURITY).is_none());
        assert_eq!(h.get("x-request-id").unwrap(), "rid");
        let mut h = HeaderMap::new();
        finish(&mut h, &Finish { tls: false, ..f }).unwrap();
        assert!(h.get(STRICT_TRANSPORT_SECURITY).is_none());
    }

    #[test]
    fn request_ids_are_kept_only_when_well_formed() {
        assert_eq!(request_id(&request("/", &[("x-request-id", "abc-123")])).0, "abc-123");
        assert_eq!(request_id(&request("/", &[("x-request-id", "abc-123")])).1, "abc-123");
        for bad in ["", "a b", "a\"b", &"x".repeat(129)] {
            let (got, value) = request_id(&request("/", &[("x-request-id", bad)]));
            assert_eq!(value, got.as_str());
            assert_ne!(got, bad);
            assert_eq!(got.len(), 36);
        }
        let two = request("/", &[("x-request-id", "a"), ("x-request-id", "b")]);
        assert_eq!(request_id(&two).0.len(), 36);
    }

    #[test]
    fn the_declared_body_length_is_read_from_one_number() {
        assert_eq!(content_length(&request("/", &[("content-length", "65536")])), Some(65536));
        assert_eq!(content_length(&request("/", &[("content-length", "0")])), Some(0));
        assert_eq!(content_length(&request("/", &[])), None);
        assert_eq!(content_length(&request("/", &[("content-length", "2, 2")])), None);
    }

    #[test]
    fn several_authorization_headers_are_one_malformed_value() {
        assert_eq!(authorization(&request("/", &[])), None);
        assert_eq!(authorization(&request("/", &[("authorization", "Bearer a")])), Some(&b"Bearer a"[..]));
        assert_eq!(authorization(&request("/", &[("authorization", "Bearer a"), ("authorization", "Bearer b")])), Some(&b""[..]));
    }
}
