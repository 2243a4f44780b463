//! The gateway's own JSON endpoints (`/auth/*`, `/admin/users*`, `/admin/providers*`): the
//! request an endpoint reads, the answer it gives, its errors, and strict JSON body parsing.
//! No Pingora types: the proxy reads the body, admission has already authenticated and
//! authorized the caller, and the endpoint only does its work.
//!
//! Never puts a password, hash or token into an error message or a log line.

use http::Method;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::borrow::Cow;

use crate::audit::Origin;
use crate::policy::Identity;
use crate::store::StoreError;

/// The largest body the gateway's own endpoints read.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// One request to an endpoint, already read and admitted.
pub struct ApiRequest<'a> {
    pub method: &'a Method,
    /// The normalized path.
    pub path: &'a str,
    pub content_type: Option<&'a str>,
    pub user_agent: &'a str,
    pub client_ip: &'a str,
    pub body: &'a [u8],
    /// Who asked, for the audit trail.
    pub origin: Origin<'a>,
    /// The caller admission verified (None on the public endpoints).
    pub identity: Option<&'a Identity>,
}

impl ApiRequest<'_> {
    /// The path's segments after the leading `/`.
    pub fn segments(&self) -> Vec<&str> {
        self.path.trim_start_matches('/').split('/').collect()
    }

    /// The verified caller of an endpoint that needs one. Admission refuses such a request
    /// without a token, so a missing identity here answers as admission would.
    pub fn caller(&self) -> Result<&Identity, ApiError> {
        self.identity.ok_or_else(|| ApiError::new(401, "missing_token", "no bearer token was presented"))
    }
}

/// What an endpoint answers.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    pub status: u16,
    pub body: Value,
    /// For 401s: the `WWW-Authenticate` challenge is due.
    pub challenge: bool,
    /// Extra headers (Retry-After, RateLimit).
    pub headers: Vec<(&'static str, String)>,
}

/// A refused endpoint request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: Cow<'static, str>,
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    /// An error with a status, a stable code and a plain message.
    pub fn new(status: u16, code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError { status, code, message: message.into(), headers: Vec::new() }
    }

    /// A 400 `invalid_request`.
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(400, "invalid_request", message)
    }

    /// A 404 for a path under an endpoint family that names no endpoint.
    pub fn not_found() -> Self {
        Self::new(404, "not_found", "no such endpoint")
    }

    /// A 405 naming the methods that are allowed.
    pub fn method_not_allowed(allowed: &str) -> Self {
        Self::new(405, "method_not_allowed", format!("use {allowed}"))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::warn!(error = %e, "store operation failed");
        ApiError::new(503, "store_unavailable", "the session store is unavailable; try again shortly")
    }
}

/// An endpoint's result: a status and JSON body, or an error.
pub type Reply = Result<(u16, Value), ApiError>;

/// The answer for an endpoint's result.
pub fn answer(result: Reply) -> ApiResponse {
    match result {
        Ok((status, body)) => ApiResponse { status, body, challenge: false, headers: Vec::new() },
        Err(e) => ApiResponse {
            status: e.status,
            body: json!({ "error": e.code, "message": e.message }),
            challenge: e.status == 401,
            headers: e.headers,
        },
    }
}

/// Runs `f` if the request's method is `allowed`, else answers 405.
pub async fn only<F, Fut>(method: &Method, allowed: Method, f: F) -> Reply
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    if *method != allowed {
        return Err(ApiError::method_not_allowed(allowed.as_str()));
    }
    f().await
}

/// Parses a JSON body of type `T`; messages name the problem but never echo a value.
pub fn json_body<T: DeserializeOwned>(req: &ApiRequest<'_>) -> Result<T, ApiError> {
    let is_json =
        req.content_type.is_some_and(|ct| ct.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    if !is_json {
        return Err(ApiError::bad_request("the content type must be application/json"));
    }
    if req.body.len() > MAX_BODY_BYTES {
        return Err(ApiError::bad_request(format!("the body is larger than {MAX_BODY_BYTES} bytes")));
    }
    match req.body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(b'[' | b'"' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9') => return Err(ApiError::bad_request("the body must be a JSON object")),
        _ => {}
    }
    let mut de = serde_json::Deserializer::from_slice(req.body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner();
        let message = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof | serde_json::error::Category::Io => {
                format!("the body is not valid JSON (line {}, column {})", inner.line(), inner.column())
            }
            serde_json::error::Category::Data => {
                let text = inner.to_string();
                let quoted = |prefix: &str| text.strip_prefix(prefix).and_then(|r| r.split('`').next()).map(str::to_string);
                match (quoted("missing field `"), quoted("unknown field `")) {
                    (Some(field), _) => format!("missing field `{field}`"),
                    (None, Some(field)) => format!("unknown field `{field}`"),
                    (None, None) => format!("field `{}` has the wrong type", e.path()),
                }
            }
        };
        ApiError::bad_request(message)
    })
}
