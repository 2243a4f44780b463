//! The one adapter that writes every reply the gateway makes itself: refusals, endpoint answers,
//! CORS preflights, proxy failures. JSON bodies are `{"error": "<code>", "message": "<text>"}` for
//! errors; headers are finished by [`super::headers::finish`] like any other response's.
//!
//! Whether the connection stays open is decided here too: a reply to a request whose body is
//! already read (or small enough to drain) keeps it; a reply to a request whose framing is in
//! doubt, or whose large body was never read, closes it.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::borrow::Cow;

use super::{headers, RequestCtx};
use crate::admission::Reject;
use crate::api::ApiResponse;

/// The most request body the gateway drains to keep a connection after replying without
/// reading it (HAProxy and Envoy drain a little too, then close).
pub const MAX_DRAIN_BYTES: u64 = 64 * 1024;

/// A reply the gateway writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    /// A JSON body (None: no body).
    pub body: Option<Bytes>,
    /// The reply's own headers (Retry-After, RateLimit, CORS preflight answers, ...); they win
    /// over anything the finishing step would add under the same name.
    pub headers: Vec<(&'static str, String)>,
    /// `WWW-Authenticate` is due (RFC 6750).
    pub challenge: bool,
    /// Close the connection after the reply.
    pub close: bool,
}

impl Reply {
    /// A bodiless reply (a CORS preflight's 204).
    pub fn empty(status: u16, headers: Vec<(&'static str, String)>) -> Self {
        Reply { status, body: None, headers, challenge: false, close: false }
    }
}

impl From<&Reject> for Reply {
    fn from(r: &Reject) -> Self {
        Reply {
            status: r.status,
            body: Some(error_body(r.code, &r.message)),
            headers: r.headers.clone(),
            challenge: r.challenges(),
            close: r.close,
        }
    }
}

impl From<ApiResponse> for Reply {
    fn from(a: ApiResponse) -> Self {
        Reply { status: a.status, body: Some(Bytes::from(a.body.to_string())), headers: a.headers, challenge: a.challenge, close: false }
    }
}

/// The JSON error body.
pub fn error_body(code: &str, message: &str) -> Bytes {
    Bytes::from(serde_json::json!({ "error": code, "message": message }).to_string())
}

/// Writes `reply` as the response; a failure to write means the client is gone.
pub async fn send(session: &mut Session, ctx: &RequestCtx, reply: Reply) {
    if reply.close || !drained(session).await {
        session.set_keepalive(None);
    }
    let header = match build(&reply, ctx) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "cannot build a reply");
            return;
        }
    };
    let head_only = session.req_header().method == http::Method::HEAD || reply.body.is_none();
    if session.write_response_header(Box::new(header), head_only).await.is_ok() && !head_only {
        let _ = session.write_response_body(reply.body, true).await;
    }
}

/// Whether the request's body is all read, so the connection can serve another request after
/// this reply: it already was, or it was small and of known length and is drained now.
/// (Pingora closes a connection whose request body is unfinished when the response starts.)
async fn drained(session: &mut Session) -> bool {
    if session.is_body_done() {
        return true;
    }
    let small = headers::content_length(session.req_header()).is_some_and(|n| n <= MAX_DRAIN_BYTES)
        && !session.req_header().headers.contains_key(http::header::TRANSFER_ENCODING);
    small && session.drain_request_body().await.is_ok()
}

fn build(reply: &Reply, ctx: &RequestCtx) -> Result<ResponseHeader> {
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = http::StatusCode::from_u16(reply.status).or_err(InternalError, "a reply status is not valid")?;
    let h = &mut parts.headers;
    h.reserve(12 + reply.headers.len());
    if reply.body.is_some() {
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    let len = reply.body.as_ref().map_or(0, Bytes::len);
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if reply.challenge {
        h.insert(WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer realm="portcullis", error="invalid_token""#));
    }
    // The gateway's own replies are always hardened, whatever the route's upstream asks for.
    headers::finish(h, &headers::Finish { harden: true, ..ctx.finishing() })?;
    for (name, value) in &reply.headers {
        let name = HeaderName::from_static(name);
        if name == http::header::VARY {
            h.append(name, headers::value(value)?);
        } else {
            h.insert(name, headers::value(value)?);
        }
    }
    Ok(ResponseHeader::from(parts))
}

/// The reply for a request that failed after admission; None when the client is gone.
pub fn for_error(e: &Error) -> Option<Reject> {
    let (status, code, message, reason): (u16, &'static str, &'static str, &'static str) = match e.etype() {
        ErrorType::HTTPStatus(s) if *s >= 400 => (*s, "request_failed", "the request could not be handled", "http_status"),
        ErrorType::ConnectTimedout
        | ErrorType::ConnectRefused
        | ErrorType::ConnectNoRoute
        | ErrorType::ConnectError
        | ErrorType::SocketError => (502, "upstream_unavailable", "the upstream service cannot be reached", "connect"),
        ErrorType::TLSHandshakeFailure | ErrorType::TLSHandshakeTimedout | ErrorType::InvalidCert | ErrorType::HandshakeError => {
            (502, "upstream_unavailable", "the upstream service cannot be reached securely", "tls")
        }
        ErrorType::ReadTimedout | ErrorType::WriteTimedout if e.esource() == &ErrorSource::Upstream => {
            (504, "upstream_timeout", "the upstream service did not answer in time", "timeout")
        }
        _ => match e.esource() {
            ErrorSource::Upstream => (502, "bad_gateway", "the upstream service failed to answer", "upstream_error"),
            ErrorSource::Downstream => match e.etype() {
                ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed => return None,
                _ => (400, "bad_request", "the request is malformed", "bad_request"),
            },
            ErrorSource::Internal | ErrorSource::Unset => (500, "internal_error", "the gateway failed to handle the request", "internal"),
        },
    };
    Some(Reject::new(status, code, Cow::Borrowed(message), reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_proxy_failures_to_stable_codes() {
        let connect = Error::new(ErrorType::ConnectRefused).into_up();
        assert_eq!(for_error(&connect).map(|r| (r.status, r.code)), Some((502, "upstream_unavailable")));
        let timeout = Error::new(ErrorType::ReadTimedout).into_up();
        assert_eq!(for_error(&timeout).map(|r| (r.status, r.code)), Some((504, "upstream_timeout")));
        let gone = Error::new(ErrorType::ConnectionClosed).into_down();
        assert_eq!(for_error(&gone), None);
        let internal = Error::new(ErrorType::InternalError).into_in();
        assert_eq!(for_error(&internal).map(|r| r.status), Some(500));
    }

    #[test]
    fn bodies_are_json_with_code_and_message() {
        let v: serde_json::Value = serde_json::from_slice(&error_body("forbidden", "no \"way\"")).unwrap();
        assert_eq!(v, serde_json::json!({"error": "forbidden", "message": "no \"way\""}));
    }

    #[test]
    fn refusals_become_replies_that_keep_their_headers_and_challenge() {
        let mut r = Reject::new(429, "rate_limited", "slow down", "rate_limited");
        r.headers.push(("retry-after", "3".into()));
        let reply = Reply::from(&r);
        assert_eq!((reply.status, reply.challenge, reply.close), (429, false, false));
        assert_eq!(reply.headers, vec![("retry-after", "3".to_string())]);
        let r = Reject::new(401, "missing_token", "no token", "missing");
        assert!(Reply::from(&r).challenge);
        let mut r = Reject::new(400, "bad_request", "framing", "ambiguous_framing");
        r.close = true;
        assert!(Reply::from(&r).close);
    }
}
