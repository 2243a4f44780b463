//! The admission decision for one request: normalize the path, find the route (a gateway
//! endpoint or a configured route), authenticate (a token, an API key or a client certificate),
//! check the denylist and the session, authorize (role, permission, scopes). Pure (no I/O,
//! no Pingora types): the proxy adapts a request to [`admit`] and turns a [`Reject`] into a JSON
//! reply. Every request the gateway serves, its own endpoints included, is judged here.

use http::Method;
use std::borrow::Cow;
use std::sync::Arc;

use crate::apikey::{self, KeyHasher, PresentedKey};
use crate::auth::credentials::Credentials;
use crate::auth::denylist::Subject;
use crate::auth::idp::ExternalError;
use crate::auth::issuers::Issuers;
use crate::auth::keys::{KeyEntry, KeyRefusal};
use crate::auth::sessions::{SessionVeto, Sessions};
use crate::auth::{bearer_bytes, bearer_token, TokenError, TokenManager};
use crate::clientcert::{CertMap, ClientCert};
use crate::clock::unix_now;
pub use crate::policy::Identity;
use crate::policy::{path, Access, Credential, Policy, Roles, Route, RouteId};

/// A request that may proceed to its route's target.
#[derive(Debug)]
pub struct Admitted<'a> {
    pub id: RouteId,
    pub route: &'a Route,
    /// The normalized path (borrowed when the request's path was already canonical).
    pub path: Cow<'a, str>,
    /// None on public routes.
    pub identity: Option<Arc<Identity>>,
    /// The API key the request was admitted with (for its own rate limit).
    pub api_key: Option<Arc<KeyEntry>>,
}

/// A refused request, with what admission had learned before refusing (for metrics and the
/// audit trail: which route, and who, when known).
#[derive(Debug)]
pub struct Refused {
    pub reject: Reject,
    /// The external issuer whose keys lacked the token's `kid`: a refetch may admit it.
    pub refetch: Option<String>,
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
        Box::new(Refused { reject: self, refetch: None, route, path: path.map(str::to_string), identity })
    }
}

/// Why a 401 that is not about the token itself: the session behind a valid token has ended,
/// or an admin put the credential on the denylist.
pub const REVOKED: &str = "revoked";

/// Every reason a presented API key is refused for (metrics declare them up front).
pub const KEY_REASONS: [&str; 3] = ["malformed_key", "unknown_key", "expired_key"];

/// What a client presented to prove who it is, picked out of the request.
#[derive(Debug, Default, Clone, Copy)]
pub struct Presented<'a> {
    /// The single `Authorization` value (empty when several were sent).
    pub authorization: Option<&'a [u8]>,
    /// The single `X-Api-Key` value (empty when several were sent).
    pub api_key: Option<&'a [u8]>,
    /// The TLS client certificate the handshake verified.
    pub client_cert: Option<&'a ClientCert>,
}

/// Which kind of credential a request was judged on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presenting {
    Token,
    ApiKey,
    Certificate,
}

impl Presented<'_> {
    /// The credential admission reads, by precedence: an API key in `X-Api-Key`; else the
    /// `Authorization` bearer (an API key or a token); else whatever `X-Api-Key` holds (a
    /// malformed key); else a mapped client certificate. So an `X-Api-Key` that is not ours
    /// (an SDK's own provider key) never hides the token in `Authorization`.
    pub fn kind(&self) -> Option<Presenting> {
        match self.key_text() {
            Some(_) => Some(Presenting::ApiKey),
            None if self.authorization.is_some() => Some(Presenting::Token),
            None => self.client_cert.map(|_| Presenting::Certificate),
        }
    }

    /// The API key to check, if the request is judged on one (see [`Self::kind`]).
    fn key_text(&self) -> Option<&[u8]> {
        let header_key = self.api_key.filter(|k| k.trim_ascii_start().starts_with(apikey::PREFIX.as_bytes()));
        header_key
            .or_else(|| self.authorization.and_then(key_in_bearer).map(str::as_bytes))
            .or_else(|| self.api_key.filter(|_| self.authorization.is_none()))
    }
}

/// The key in an `Authorization: Bearer pcs_...` value.
fn key_in_bearer(value: &[u8]) -> Option<&str> {
    let token = bearer_bytes(Some(value)).ok().filter(|t| t.starts_with(apikey::PREFIX.as_bytes()))?;
    std::str::from_utf8(token).ok()
}

/// The verifiers of the current config.
#[derive(Clone, Copy)]
pub struct Verifiers<'a> {
    pub tokens: &'a TokenManager,
    /// None when `api_keys` is not configured: every key is refused.
    pub key_hasher: Option<&'a KeyHasher>,
    pub certs: &'a CertMap,
}

/// The local checks on a verified credential: sessions, API keys and the denylist, each a view
/// kept current in the background (never a store round trip).
pub trait Gate {
    /// Ok if requests of this login session may proceed.
    fn session(&self, session_id: &str) -> Result<(), SessionVeto>;
    /// The key a well-formed presented key is, if known, matching and unexpired.
    fn api_key(&self, hasher: &KeyHasher, key: PresentedKey<'_>) -> Result<Arc<KeyEntry>, KeyRefusal>;
    /// The denylist subject that cuts `identity` off, if any.
    fn denied(&self, identity: &Identity) -> Option<Subject>;
    /// An external provider's verdict on a bearer token whose `iss` names one (None: the token
    /// is the gateway's own to verify). Err carries the issuer.
    fn external(&self, _token: &str, _roles: &Roles) -> Option<Result<Arc<Identity>, (ExternalError, String)>> {
        None
    }
}

/// The gateway's gate: its session machinery and its credential views.
pub struct Local<'a> {
    pub sessions: &'a Sessions,
    pub credentials: &'a Credentials,
    pub issuers: &'a Issuers,
}

impl Gate for Local<'_> {
    fn session(&self, session_id: &str) -> Result<(), SessionVeto> {
        self.sessions.check(session_id, unix_now())
    }

    fn api_key(&self, hasher: &KeyHasher, key: PresentedKey<'_>) -> Result<Arc<KeyEntry>, KeyRefusal> {
        self.credentials.authenticate_key(hasher, key, unix_now())
    }

    fn denied(&self, identity: &Identity) -> Option<Subject> {
        self.credentials.denies(identity, unix_now())
    }

    fn external(&self, token: &str, roles: &Roles) -> Option<Result<Arc<Identity>, (ExternalError, String)>> {
        self.issuers.authenticate(token, roles, unix_now())
    }
}

/// Decides whether a request may proceed.
pub fn admit<'a>(
    policy: &'a Policy,
    verifiers: &Verifiers<'_>,
    gate: &dyn Gate,
    method: &Method,
    raw_path: &'a str,
    presented: &Presented<'_>,
) -> Result<Admitted<'a>, Box<Refused>> {
    let path = path::normalize(raw_path).map_err(|e| Reject::new(400, "bad_path", e.to_string(), "bad_path").refused(None, None, None))?;
    let Some((id, route)) = policy.find(method, &path) else {
        return Err(Reject::new(404, "not_found", "no route matches this request", "no_route").refused(None, Some(&path), None));
    };
    if route.require_client_cert && presented.client_cert.is_none() {
        let message = "this route requires a verified TLS client certificate";
        return Err(Reject::new(403, "client_certificate_required", message, "no_client_cert").refused(Some(id), Some(&path), None));
    }
    if route.access == Access::Public {
        return Ok(Admitted { id, route, path, identity: None, api_key: None });
    }
    let (identity, api_key) = authenticate_any(verifiers, gate, &policy.roles, presented).map_err(|(reject, refetch)| {
        let mut refused = reject.refused(Some(id), Some(&path), None);
        refused.refetch = refetch;
        refused
    })?;
    let refuse = |reject: Reject| reject.refused(Some(id), Some(&path), Some(identity.clone()));
    if let Some(subject) = gate.denied(&identity) {
        let message = format!("this credential has been revoked (by {})", subject.as_str());
        return Err(refuse(Reject::new(401, "revoked", message, REVOKED)));
    }
    if let Some(session_id) = identity.session_id() {
        match gate.session(session_id) {
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
    let missing = identity.missing_scopes(&route.require_scopes);
    if !missing.is_empty() {
        let mut reject =
            Reject::new(403, "insufficient_scope", format!("this route requires the scope `{}`", missing.join(" ")), "insufficient_scope");
        let scope = route.require_scopes.join(" ");
        reject.headers.push(("www-authenticate", format!(r#"Bearer realm="portcullis", error="insufficient_scope", scope="{scope}""#)));
        return Err(refuse(reject));
    }
    Ok(Admitted { id, route, path, identity: Some(identity), api_key })
}

/// Who a credential speaks for, and the API key it was, if it was one.
type Authenticated = (Arc<Identity>, Option<Arc<KeyEntry>>);

/// Verifies whichever credential the request presents (see [`Presented::kind`]). A refusal
/// may name the external issuer whose keys lacked the token's `kid` (a refetch may admit it).
fn authenticate_any(
    verifiers: &Verifiers<'_>,
    gate: &dyn Gate,
    roles: &Roles,
    presented: &Presented<'_>,
) -> Result<Authenticated, (Reject, Option<String>)> {
    let refused = |r: Reject| (r, None);
    if let Some(bytes) = presented.key_text() {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| refused(invalid_key("the API key holds characters a key never has", "malformed_key")))?;
        let key = apikey::parse(text.trim()).map_err(|e| refused(invalid_key(e.to_string(), "malformed_key")))?;
        let Some(hasher) = verifiers.key_hasher else {
            return Err(refused(invalid_key("API keys are not enabled on this gateway", "unknown_key")));
        };
        let entry = gate.api_key(hasher, key).map_err(|r| refused(invalid_key(r.message(), r.reason())))?;
        return Ok((entry.identity.clone(), Some(entry)));
    }
    if presented.authorization.is_none() {
        if let Some(identity) = presented.client_cert.and_then(|c| Some((c, verifiers.certs.identify(c)?))).map(|(c, who)| Identity {
            user_id: who.user_id.clone(),
            role: Some(who.role.clone()),
            credential: Credential::Certificate { subject: c.subject.clone() },
            scopes: None,
        }) {
            return Ok((Arc::new(identity), None));
        }
    }
    let token = bearer_token(presented.authorization).map_err(|e| refused(Reject::unauthenticated(&e)))?;
    // One of the gateway's own tokens seen before: no provider needs to look at it.
    if let Some(hit) = verifiers.tokens.cached_at(token, unix_now()) {
        return hit.map(|i| (i, None)).map_err(|e| refused(Reject::unauthenticated(&e)));
    }
    match gate.external(token, roles) {
        None => verifiers.tokens.authenticate(token).map(|i| (i, None)).map_err(|e| refused(Reject::unauthenticated(&e))),
        Some(Ok(identity)) => Ok((identity, None)),
        Some(Err((ExternalError::Token(e), _))) => Err(refused(Reject::unauthenticated(&e))),
        Some(Err((ExternalError::UnknownKid, iss))) => Err((Reject::unauthenticated(&TokenError::UnknownKey), Some(iss))),
        Some(Err((ExternalError::NoRole, _))) => {
            Err(refused(Reject::new(403, "forbidden", "the identity provider's token maps to no role of this gateway", "no_role")))
        }
    }
}

/// A 401 `invalid_api_key`.
fn invalid_key(message: impl Into<Cow<'static, str>>, reason: &'static str) -> Reject {
    Reject::new(401, "invalid_api_key", message, reason)
}

/// Verifies the bearer access token and returns who it speaks for.
pub fn authenticate(tokens: &TokenManager, authorization: Option<&[u8]>) -> Result<Arc<Identity>, TokenError> {
    tokens.authenticate(bearer_token(authorization)?)
}

#[cfg(test)]
mod tests;
