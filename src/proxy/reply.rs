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

/// Writes `reject` as the response; a failure to write means the client is gone.
pub async fn send(session: &mut Session, reject: &Reject, request_id: &str) {
    // A refused request's body is not read; do not try to reuse the connection after it.
    session.set_keepalive(None);
    write(session, reject.status, error_body(reject.code, &reject.message), reject.challenges(), request_id).await;
}

/// Writes an endpoint's answer.
pub async fn send_api(session: &mut Session, reply: &ApiResponse, request_id: &str) {
    write(session, reply.status, Bytes::from(reply.body.to_string()), reply.challenge, request_id).await;
}

async fn write(session: &mut Session, status: u16, body: Bytes, challenge: bool, request_id: &str) {
    let header = match build_header(status, challenge, request_id, body.len()) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "cannot build an error reply");
            return;
        }
    };
    let head_only = session.req_header().method == http::Method::HEAD;
    if session.write_response_header(Box::new(header), head_only).await.is_ok() && !head_only {
        let _ = session.write_response_body(Some(body), true).await;
    }
}

fn build_header(status: u16, challenge: bool, request_id: &str, len: usize) -> Result<ResponseHeader> {
    let mut h = ResponseHeader::build(status, Some(6))?;
    h.insert_header("content-type", "application/json")?;
    h.insert_header("content-length", len.to_string())?;
    h.insert_header("cache-control", "no-store")?;
    h.insert_header("x-content-type-options", "nosniff")?;
    h.insert_header("x-request-id", request_id)?;
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
    Some(Reject { status, code, message: Cow::Borrowed(message), reason, route: None })
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
