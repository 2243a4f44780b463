//! What a provider receives: its peer, and the request built from the client's (the client's
//! method, normalized path, query and content headers; the provider's host and key instead of
//! the client's credentials). Keys never reach a log, metric or error.

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use std::time::Duration;

use super::{Provider, ProviderAuth};
use crate::peer::{self, PeerSpec};

/// Client headers that carry credentials or identity, never sent to a provider.
const STRIPPED: [&str; 12] = [
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "cookie",
    "x-user-id",
    "x-user-role",
    "x-session-id",
    "connection",
    "keep-alive",
    "te",
    "upgrade",
];

/// The Pingora peer for a provider.
pub fn provider_peer(p: &Provider) -> HttpPeer {
    peer::build(&PeerSpec {
        address: p.address,
        tls: p.tls,
        sni: &p.sni,
        verify_cert: p.verify_cert,
        connect_timeout: p.connect_timeout,
        read_timeout: p.read_timeout,
        write_timeout: p.read_timeout,
        idle_timeout: Duration::from_secs(60),
    })
}

/// The body as read so far, and whether more remains to be streamed (too large to buffer).
pub struct Body {
    pub bytes: Bytes,
    pub more: bool,
}

/// The request a provider receives: the client's method, normalized path and query and its
/// content headers; the provider's host and key instead of the client's credentials.
pub fn provider_request(client: &RequestHeader, path: &str, provider: &Provider, body: &Body, request_id: &str) -> Result<RequestHeader> {
    let target = match client.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut req = RequestHeader::build(client.method.clone(), target.as_bytes(), Some(client.headers.len() + 4))?;
    for (name, value) in client.headers.iter() {
        let n = name.as_str();
        let own_header = matches!(&provider.auth, ProviderAuth::Header(h, _) if h == n);
        if STRIPPED.contains(&n) || own_header || name == HOST || name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        req.append_header(name.clone(), value.clone())?;
    }
    req.insert_header(HOST, &provider.host_header)?;
    match &provider.auth {
        ProviderAuth::None => {}
        ProviderAuth::Bearer(key) => {
            let mut v = b"Bearer ".to_vec();
            v.extend_from_slice(key.expose());
            req.insert_header(
                AUTHORIZATION,
                http::HeaderValue::from_bytes(&v).or_err(InternalError, "provider key is not a header value")?,
            )?;
        }
        ProviderAuth::Header(name, key) => {
            req.insert_header(
                name.clone(),
                http::HeaderValue::from_bytes(key.expose()).or_err(InternalError, "provider key is not a header value")?,
            )?;
        }
    }
    req.insert_header("x-request-id", request_id)?;
    if body.more {
        match client.headers.get(CONTENT_LENGTH) {
            Some(cl) => req.insert_header(CONTENT_LENGTH, cl.clone())?,
            None => req.insert_header(TRANSFER_ENCODING, "chunked")?,
        }
    } else if !body.bytes.is_empty() || client.headers.contains_key(CONTENT_LENGTH) {
        req.insert_header(CONTENT_LENGTH, body.bytes.len().to_string())?;
    }
    Ok(req)
}

/// Seconds from a `Retry-After` header (delta-seconds form).
pub fn retry_after_ms(resp: &ResponseHeader) -> u64 {
    resp.headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(1_000, |s| s.saturating_mul(1000))
}
