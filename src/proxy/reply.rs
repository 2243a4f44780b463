//! The gateway's own JSON replies: `{"error": "<code>", "message": "<text>"}`.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::borrow::Cow;

use crate::admission::Reject;
use crate::auth::api::ApiResponse;

/// The JSON error body.
pub fn error_body(code: &str, message: &str) -> Bytes {
    Bytes::from(serde_json::json!({ "error": code, "message": message }).to_string())
}

/// Headers the gateway adds to every response (the upstream's own values win).
pub const SECURITY_HEADERS: [(&str, &str); 3] =
    [("x-content-type-options", "nosniff"), ("x-frame-options", "DENY"), ("referrer-policy", "no-referrer")];

/// `Strict-Transport-Security` for responses served over TLS.
pub const HSTS: &str = "max-age=31536000; includeSubDomains";

/// Writes `reject` as the response; a failure to write means the client is gone.
pub async fn send(session: &mut Session, reject: &Reject, request_id: &str, extra: &[(&'static str, String)]) {
    // A refused request's body is not read; do not try to reuse the connection after it.
    session.set_keepalive(None);
    write(session, reject.status, Some(error_body(reject.code, &reject.message)), reject.challenges(), request_id, extra).await;
}

/// Writes an endpoint's answer.
pub async fn send_api(session: &mut Session, reply: &ApiResponse, request_id: &str, extra: &[(&'static str, String)]) {
    write(session, reply.status, Some(Bytes::from(reply.body.to_string())), reply.challenge, request_id, extra).await;
}

/// Writes a bodiless answer (a CORS preflight's 204).
pub async fn send_empty(session: &mut Session, status: u16, request_id: &str, extra: &[(&'static str, String)]) {
    write(session, status, None, false, request_id, extra).await;
}

async fn write(
    session: &mut Session,
    status: u16,
    body: Option<Bytes>,
    challenge: bool,
    request_id: &str,
    extra: &[(&'static str, String)],
) {
    let header = match build_header(status, challenge, request_id, body.as_ref().map_or(0, Bytes::len), body.is_some(), extra) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "cannot build an error reply");
            return;
        }
    };
    let head_only = session.req_header().method == http::Method::HEAD || body.is_none();
    if session.write_response_header(Box::new(header), head_only).await.is_ok() && !head_only {
        let _ = session.write_response_body(body, true).await;
    }
}

fn build_header(
    status: u16,
    challenge: bool,
    request_id: &str,
    len: usize,
    has_body: bool,
    extra: &[(&'static str, String)],
) -> Result<ResponseHeader> {
    let mut h = ResponseHeader::build(status, Some(8 + extra.len()))?;
    if has_body {
        h.insert_header("content-type", "application/json")?;
    }
    h.insert_header("content-length", len.to_string())?;
    h.insert_header("cache-control", "no-store")?;
    for (name, value) in SECURITY_HEADERS {
        h.insert_header(name, value)?;
    }
    h.insert_header("x-request-id", request_id)?;
    for (name, value) in extra {
        h.append_header(*name, value)?;
    }
    if challenge {
        h.insert_header("www-authenticate", r#"Bearer realm="portcullis", error="invalid_token""#)?;
    }
    Ok(h)
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
}
