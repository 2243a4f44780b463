//! The admission decision for one request: normalize the path, find the route (a gateway
//! endpoint or a configured route), authenticate, check the session, authorize. Pure (no I/O,
//! no Pingora types): the proxy adapts a request to [`admit`] and turns a [`Reject`] into a JSON
//! reply. Every request the gateway serves, its own endpoints included, is judged here.

use http::Method;
use std::borrow::Cow;
use std::sync::Arc;

use crate::auth::sessions::{SessionVeto, Sessions};
use crate::auth::{bearer_token, TokenError, TokenManager};
use crate::clock::unix_now;
pub use crate::policy::Identity;
use crate::policy::{path, Access, Policy, Route, RouteId};

/// A request that may proceed to its route's target.
#[derive(Debug)]
pub struct Admitted<'a> {
    pub id: RouteId,
    pub route: &'a Route,
    /// The normalized path (borrowed when the request's path was already canonical).
    pub path: Cow<'a, str>,
    /// None on public routes.
    pub identity: Option<Arc<Identity>>,
}

/// A refused request, with what admission had learned before refusing (for metrics and the
/// audit trail: which route, and who, when known).
#[derive(Debug)]
pub struct Refused {
    pub reject: Reject,
    pub route: Option<RouteId>,
    /// The normalized path, once normalization succeeded.
    pub path: Option<String>,
    pub identity: Option<Arc<Identity>>,
}

/// What the client is told when the gateway refuses a request, and why (for logs, metrics and
/// the audit trail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub status: u16,
    /// Stable public error code, e.g. `invalid_token`.
    pub code: &'static str,
    /// Plain human text for the client; never a token or any other secret.
    pub message: Cow<'static, str>,
    /// A finer reason for audit and metrics (e.g. `expired`, `bad_signature`).
    pub reason: &'static str,
    /// Extra response headers (Retry-After, RateLimit, ...).
    pub headers: Vec<(&'static str, String)>,
    /// The connection must close after the reply (the request's framing cannot be trusted).
    pub close: bool,
}

impl Reject {
    /// A refusal with a status, public code, message and audit reason.
    pub fn new(status: u16, code: &'static str, message: impl Into<Cow<'static, str>>, reason: &'static str) -> Self {
        Reject { status, code, message: message.into(), reason, headers: Vec::new(), close: false }
    }

    /// A 401 for a token problem.
    pub fn unauthenticated(e: &TokenError) -> Self {
        let code = if *e == TokenError::Missing { "missing_token" } else { "invalid_token" };
        Reject::new(401, code, e.to_string(), e.reason())
    }

    /// Whether the reply must carry `WWW-Authenticate` (RFC 6750).
    pub fn challenges(&self) -> bool {
        self.status == 401
    }

    fn refused(self, route: Option<RouteId>, path: Option<&str>, identity: Option<Arc<Identity>>) -> Box<Refused> {
        Box::new(Refused { reject: self, route, path: path.map(str::to_string), identity })
    }
}

/// Why a 401 that is not about the token itself: the session behind a valid token has ended.
pub const REVOKED: &str = "revoked";

/// The local session check for an authenticated request (revocation, store outage policy).
pub trait SessionGate {
    /// Ok if requests of this session may proceed.
    fn check(&self, session_id: &str) -> Result<(), SessionVeto>;
}

impl SessionGate for Sessions {
    fn check(&self, session_id: &str) -> Result<(), SessionVeto> {
        Sessions::check(self, session_id, unix_now())
    }
}

/// Decides whether a request may proceed. `authorization` is the single `Authorization` header
/// value (callers pass an empty value when there were several).
pub fn admit<'a>(
    policy: &'a Policy,
    tokens: &TokenManager,
    sessions: &dyn SessionGate,
    method: &Method,
    raw_path: &'a str,
    authorization: Option<&[u8]>,
) -> Result<Admitted<'a>, Box<Refused>> {
    let path = path::normalize(raw_path).map_err(|e| Reject::new(400, "bad_path", e.to_string(), "bad_path").refused(None, None, None))?;
    let Some((id, route)) = policy.find(method, &path) else {
        return Err(Reject::new(404, "not_found", "no route matches this request", "no_route").refused(None, Some(&path), None));
    };
    if route.access == Access::Public {
        return Ok(Admitted { id, route, path, identity: None });
    }
    let identity = authenticate(tokens, authorization).map_err(|e| Reject::unauthenticated(&e).refused(Some(id), Some(&path), None))?;
    let refuse = |reject: Reject| reject.refused(Some(id), Some(&path), Some(identity.clone()));
    match sessions.check(&identity.session_id) {
        Ok(()) => {}
        Err(SessionVeto::Revoked) => return Err(refuse(Reject::new(401, "invalid_token", "the session has ended", REVOKED))),
        Err(SessionVeto::StoreUnavailable) => {
            return Err(refuse(Reject::new(
                503,
                "store_unavailable",
                "the session store is unavailable; try again shortly",
                "store_unavailable",
            )))
        }
    }
    let level = identity.role.as_deref().and_then(|r| policy.roles.level(r));
    if !route.access.allows(level) {
        let message = match &route.access {
            Access::Role { role, .. } => format!("this route requires the role `{role}` or higher"),
            Access::Permission { resource, action, .. } => format!("this route requires the permission `{resource}:{action}`"),
            Access::Public | Access::Authenticated => String::new(),
        };
        return Err(refuse(Reject::new(403, "forbidden", message, "insufficient_role")));
    }
    Ok(Admitted { id, route, path, identity: Some(identity) })
}

/// Verifies the bearer access token and returns who it speaks for.
pub fn authenticate(tokens: &TokenManager, authorization: Option<&[u8]>) -> Result<Arc<Identity>, TokenError> {
    tokens.authenticate(bearer_token(authorization)?)
}

#[cfg(test)]
mod tests;
