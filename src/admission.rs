//! The admission decision for one request: normalize the path, find the route, authenticate,
//! authorize. Pure (no I/O, no Pingora types): the proxy adapts a request to [`admit`] and turns
//! a [`Reject`] into a JSON reply.

use http::Method;
use std::borrow::Cow;

use crate::auth::api::is_api_path;
use crate::auth::sessions::{SessionVeto, Sessions};
use crate::auth::tokens::unix_now;
pub use crate::auth::tokens::Identity;
use crate::auth::{bearer_token, TokenError, TokenManager};
use crate::policy::{path, Access, Policy, Route};
use std::sync::Arc;

/// A request that may go upstream.
#[derive(Debug)]
pub struct Admitted<'a> {
    pub route_index: usize,
    pub route: &'a Route,
    /// The normalized path (borrowed when the request's path was already canonical).
    pub path: Cow<'a, str>,
    /// None on public routes.
    pub identity: Option<Arc<Identity>>,
}

/// A refused request: what the client is told, and why (for logs and the audit trail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub status: u16,
    /// Stable public error code, e.g. `invalid_token`.
    pub code: &'static str,
    /// Plain human text for the client; never a token or any other secret.
    pub message: Cow<'static, str>,
    /// A finer reason for audit and metrics (e.g. `expired`, `bad_signature`).
    pub reason: &'static str,
    /// The matched route's name and index, when one matched.
    pub route: Option<(usize, String)>,
    /// Extra response headers (Retry-After, RateLimit, ...).
    pub headers: Vec<(&'static str, String)>,
}

impl Reject {
    /// A refusal with a status, public code, message and audit reason.
    pub fn new(status: u16, code: &'static str, message: impl Into<Cow<'static, str>>, reason: &'static str) -> Self {
        Reject { status, code, message: message.into(), reason, route: None, headers: Vec::new() }
    }

    fn on(mut self, index: usize, route: &Route) -> Self {
        self.route = Some((index, route.name.clone()));
        self
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
}

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

/// Where an admitted request goes.
#[derive(Debug)]
pub enum Destination<'a> {
    /// To the route's upstream.
    Upstream(Admitted<'a>),
    /// To the gateway's own endpoints (`/auth/*`, `/admin/users*`) at this normalized path.
    Api(Cow<'a, str>),
}

/// Decides whether a request may go upstream. `authorization` is the single `Authorization`
/// header value (callers pass an empty value when there were several).
pub fn admit<'a>(
    policy: &'a Policy,
    tokens: &TokenManager,
    sessions: &dyn SessionGate,
    method: &Method,
    raw_path: &'a str,
    authorization: Option<&[u8]>,
) -> Result<Destination<'a>, Reject> {
    let path = path::normalize(raw_path).map_err(|e| Reject::new(400, "bad_path", e.to_string(), "bad_path"))?;
    if is_api_path(&path) {
        return Ok(Destination::Api(path));
    }
    let Some((route_index, route)) = policy.route(method, &path) else {
        return Err(Reject::new(404, "not_found", "no route matches this request", "no_route"));
    };
    if route.access == Access::Public {
        return Ok(Destination::Upstream(Admitted { route_index, route, path, identity: None }));
    }
    let identity = authenticate(tokens, authorization).map_err(|e| Reject::unauthenticated(&e).on(route_index, route))?;
    match sessions.check(&identity.session_id) {
        Ok(()) => {}
        Err(SessionVeto::Revoked) => {
            return Err(Reject::new(401, "invalid_token", "the session has ended", "revoked").on(route_index, route))
        }
        Err(SessionVeto::StoreUnavailable) => {
            return Err(Reject::new(503, "store_unavailable", "the session store is unavailable; try again shortly", "store_unavailable")
                .on(route_index, route))
        }
    }
    let level = identity.role.as_deref().and_then(|r| policy.roles.level(r));
    if !route.access.allows(level) {
        let message = match &route.access {
            Access::Role { role, .. } => format!("this route requires the role `{role}` or higher"),
            Access::Permission { resource, action, .. } => format!("this route requires the permission `{resource}:{action}`"),
            Access::Public => String::new(),
        };
        return Err(Reject::new(403, "forbidden", message, "insufficient_role").on(route_index, route));
    }
    Ok(Destination::Upstream(Admitted { route_index, route, path, identity: Some(identity) }))
}

/// Verifies the bearer access token and returns who it speaks for.
pub fn authenticate(tokens: &TokenManager, authorization: Option<&[u8]>) -> Result<Arc<Identity>, TokenError> {
    tokens.authenticate(bearer_token(authorization)?)
}

#[cfg(test)]
mod tests;
