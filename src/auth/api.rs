//! The endpoints the gateway serves itself: `/auth/*` (login, refresh, logout, sessions, me) and
//! `/admin/users*`. JSON in and out; no Pingora types (the proxy adapts requests to [`handle`]).
//!
//! Never puts a password, hash or token into an error message or a log line.

use http::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::sync::Arc;

use super::passwords::{PasswordError, Passwords};
use super::sessions::{RoleChange, SessionVeto, Sessions};
use super::tokens::{new_id, unix_now, TokenError, TokenKind, TokenManager};
use super::users::{Source, User, UserDirectory};
use crate::admission::{authenticate, Identity};
use crate::audit::{Audit, Event, Origin};
use crate::config::providers::{Chain, Provider};
use crate::config::security::RateLimitSettings;
use crate::metrics::Metrics;
use crate::policy::Roles;
use crate::providers::health::{self, Status};
use crate::providers::tracker::{now_ms, override_change, Tracker};
use crate::ratelimit::{self, Decision, Limit, Limiter, LockoutPolicy};
use crate::store::{Rotation, SessionRecord, StoreError, UserRecord};
use crate::timefmt::rfc3339;

/// The largest body the gateway's own endpoints read.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Whether a (normalized) path belongs to the gateway's own endpoints.
pub fn is_api_path(path: &str) -> bool {
    let under = |p: &str| path == p || path.strip_prefix(p).is_some_and(|rest| rest.starts_with('/'));
    under("/auth") || under("/admin/users") || under("/admin/providers")
}

/// One request to an endpoint, already read.
pub struct ApiRequest<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub content_type: Option<&'a str>,
    pub user_agent: &'a str,
    pub client_ip: &'a str,
    pub authorization: Option<&'a [u8]>,
    pub body: &'a [u8],
    /// Who asked, for the audit trail.
    pub origin: Origin<'a>,
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
    fn new(status: u16, code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError { status, code, message: message.into(), headers: Vec::new() }
    }

    fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(400, "invalid_request", message)
    }

    fn invalid_token(e: &TokenError) -> Self {
        Self::new(401, "invalid_token", e.to_string())
    }

    fn not_found() -> Self {
        Self::new(404, "not_found", "no such endpoint")
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::warn!(error = %e, "store operation failed");
        ApiError::new(503, "store_unavailable", "the session store is unavailable; try again shortly")
    }
}

impl From<PasswordError> for ApiError {
    fn from(e: PasswordError) -> Self {
        match e {
            PasswordError::Busy => ApiError::new(503, "busy", "too many logins are in progress; try again shortly"),
            PasswordError::Internal => ApiError::new(500, "internal_error", "password processing failed"),
        }
    }
}

/// Everything the endpoints need: the current config's pieces and the long-lived services.
pub struct ApiContext<'a> {
    pub tokens: &'a TokenManager,
    pub roles: &'a Roles,
    pub users: &'a UserDirectory,
    pub sessions: &'a Sessions,
    pub passwords: &'a Passwords,
    /// Role required for `/admin/users*`.
    pub admin_role: &'a str,
    /// How long a revocation must stay in force: the access token lifetime plus leeway.
    pub revocation_ttl: u64,
    pub metrics: Option<&'a Metrics>,
    pub limiter: &'a Limiter,
    pub rate_limits: &'a RateLimitSettings,
    pub lockout: Option<LockoutPolicy>,
    pub audit: Option<&'a Audit>,
    pub tracker: Option<&'a Tracker>,
    pub providers: &'a [Provider],
    pub chains: &'a [Chain],
}

/// Serves one endpoint request.
pub async fn handle(cx: &ApiContext<'_>, req: &ApiRequest<'_>) -> ApiResponse {
    let result = route(cx, req).await;
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

type Reply = Result<(u16, Value), ApiError>;

async fn route(cx: &ApiContext<'_>, req: &ApiRequest<'_>) -> Reply {
    let segments: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let m = req.method;
    match segments.as_slice() {
        ["auth", "login"] => only(m, Method::POST, || login(cx, req)).await,
        ["auth", "refresh"] => only(m, Method::POST, || refresh(cx, req)).await,
        ["auth", "logout"] => only(m, Method::POST, || logout(cx, req)).await,
        ["auth", "logout-all"] => only(m, Method::POST, || logout_all(cx, req)).await,
        ["auth", "me"] => only(m, Method::GET, || me(cx, req)).await,
        ["auth", "sessions"] => only(m, Method::GET, || list_sessions(cx, req)).await,
        ["auth", "sessions", id] if !id.is_empty() => only(m, Method::DELETE, || revoke_session(cx, req, id)).await,
        ["admin", "users"] => match *m {
            Method::GET => list_users(cx, req).await,
            Method::POST => create_user(cx, req).await,
            _ => Err(method_not_allowed("GET, POST")),
        },
        ["admin", "providers"] => only(m, Method::GET, || list_providers(cx, req)).await,
        ["admin", "providers", name, "status"] if !name.is_empty() => only(m, Method::POST, || override_provider(cx, req, name)).await,
        ["admin", "users", id] if !id.is_empty() => match *m {
            Method::PATCH => update_user(cx, req, id).await,
            Method::DELETE => delete_user(cx, req, id).await,
            _ => Err(method_not_allowed("PATCH, DELETE")),
        },
        _ => Err(ApiError::not_found()),
    }
}

async fn only<F, Fut>(method: &Method, allowed: Method, f: F) -> Reply
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    if *method != allowed {
        return Err(method_not_allowed(allowed.as_str()));
    }
    f().await
}

fn method_not_allowed(allowed: &str) -> ApiError {
    ApiError::new(405, "method_not_allowed", format!("use {allowed}"))
}

// === request helpers ===

/// Parses a JSON body of type `T`; messages name the problem but never echo a value.
fn json_body<T: DeserializeOwned>(req: &ApiRequest<'_>) -> Result<T, ApiError> {
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
                match text.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
                    Some(field) => format!("missing field `{field}`"),
                    None => format!("field `{}` has the wrong type", e.path()),
                }
            }
        };
        ApiError::bad_request(message)
    })
}

/// The caller of an authenticated endpoint (bearer access token, not revoked).
fn caller(cx: &ApiContext<'_>, req: &ApiRequest<'_>) -> Result<Arc<Identity>, ApiError> {
    let identity = authenticate(cx.tokens, req.authorization).map_err(|e| {
        let code = if e == TokenError::Missing { "missing_token" } else { "invalid_token" };
        ApiError::new(401, code, e.to_string())
    })?;
    match cx.sessions.check(&identity.session_id, unix_now()) {
        Ok(()) => Ok(identity),
        Err(SessionVeto::Revoked) => Err(ApiError::new(401, "invalid_token", "the session has ended")),
        Err(SessionVeto::StoreUnavailable) => Err(StoreError::Unavailable("deny mode".into()).into()),
    }
}

fn admin(cx: &ApiContext<'_>, req: &ApiRequest<'_>) -> Result<Arc<Identity>, ApiError> {
    let identity = caller(cx, req)?;
    let level = identity.role.as_deref().and_then(|r| cx.roles.level(r));
    match (level, cx.roles.level(cx.admin_role)) {
        (Some(l), Some(min)) if l >= min => Ok(identity),
        _ => Err(ApiError::new(403, "forbidden", format!("this endpoint requires the role `{}`", cx.admin_role))),
    }
}

fn token_reply(access: String, refresh: String, expires_in: u64) -> Reply {
    Ok((200, json!({ "access_token": access, "refresh_token": refresh, "token_type": "bearer", "expires_in": expires_in })))
}

fn store_failed(cx: &ApiContext<'_>, e: StoreError) -> ApiError {
    cx.sessions.set_store_healthy(false);
    if let Some(m) = cx.metrics {
        m.store_error("api");
    }
    e.into()
}

/// Emits an audit event about this request.
fn audit(cx: &ApiContext<'_>, req: &ApiRequest<'_>, kind: &'static str, status: &'static str, user: Option<&str>, details: Value) {
    if let Some(a) = cx.audit {
        a.emit(Event::new(kind, status, user, req.origin, details));
    }
}

/// A 429 for an exceeded login limit, counted and audited.
fn limited(cx: &ApiContext<'_>, req: &ApiRequest<'_>, name: &'static str, limit: Limit, d: &Decision) -> ApiError {
    if let Some(m) = cx.metrics {
        m.rate_limited(name);
    }
    audit(cx, req, "ratelimit.hit", "denied", None, json!({ "limit": name, "retry_after": d.retry_after_seconds }));
    let mut e = ApiError::new(429, "rate_limited", "too many login attempts; retry later");
    e.headers.extend(ratelimit::headers(name, limit, d));
    e.headers.push(("retry-after", d.retry_after_seconds.to_string()));
    e
}

fn count_login(cx: &ApiContext<'_>, result: &'static str) {
    if let Some(m) = cx.metrics {
        m.login(result);
    }
}

// === /auth ===

#[derive(Deserialize)]
struct LoginBody {
    email: String,
    password: String,
}

async fn login(cx: &ApiContext<'_>, req: &ApiRequest<'_>) -> Reply {
    let body: LoginBody = json_body(req)?;
    let account = body.email.trim().to_lowercase();
    // Per client IP (credential stuffing from one place), then per account (a distributed attack
    // on one account): both exact, in the store.
    if let Some(limit) = cx.rate_limits.login_ip {
        let d = cx.limiter.exact(&format!("login_ip:{}", req.client_ip), limit).await.map_err(|e| store_failed(cx, e))?;
        if !d.allowed {
            count_login(cx, "rate_limited");
            return Err(limited(cx, req, "login_ip", limit, &d));
        }
    }
    if let Some(limit) = cx.rate_limits.login_account {
        let d = cx.limiter.exact(&format!("login_account:{account}"), limit).await.map_err(|e| store_failed(cx, e))?;
        if !d.allowed {
            count_login(cx, "rate_limited");
            return Err(limited(cx, req, "login_account", limit, &d));
        }
    }
    let store = cx.sessions.store.as_ref();
    if cx.lockout.is_some() {
        let state = store.lockout_state(&account).await.map_err(|e| store_failed(cx, e))?;
        let now = unix_now();
        if state.locked_until > now {
            // Locked: refused even with the right password, and the password is not checked.
            count_login(cx, "locked");
            if let Some(m) = cx.metrics {
                m.rate_limited("account_locked");
            }
            audit(cx, req, "auth.login", "failure", None, json!({ "reason": "account_locked", "account": account }));
            let mut e = ApiError::new(429, "account_locked", "this account is temporarily locked after failed logins; retry later");
            e.headers.push(("retry-after", (state.locked_until - now).to_string()));
            return Err(e);
        }
    }
    let outcome = login_checked(cx, req, body).await;
    match &outcome {
        Ok((_, v)) => {
            count_login(cx, "success");
            if cx.lockout.is_some() {
                store.login_succeeded(&account).await.map_err(|e| store_failed(cx, e))?;
            }
            audit(cx, req, "auth.login", "success", v["user_id"].as_str(), json!({ "session_id": v["session_id"] }));
        }
        Err(e) if e.code == "invalid_credentials" => {
            count_login(cx, "invalid_credentials");
            audit(cx, req, "auth.login", "failure", None, json!({ "reason": "invalid_credentials", "account": account }));
            if let Some(policy) = cx.lockout {
                let now = unix_now();
                let state = store.login_failed(&account, policy, now).await.map_err(|e| store_failed(cx, e))?;
                if state.locked_until > now && state.failures == 0 {
                    audit(
                        cx,
                        req,
                        "auth.lockout",
                        "locked",
                        None,
                        json!({ "account": account, "seconds": state.locked_until - now, "lockouts": state.lockouts }),
                    );
                }
            }
        }
        Err(_) => count_login(cx, "error"),
    }
    // The user and session ids were only carried for the audit trail.
    outcome.map(|(status, mut v)| {
        if let Some(o) = v.as_object_mut() {
            o.remove("user_id");
            o.remove("session_id");
        }
        (status, v)
    })
}

async fn login_checked(cx: &ApiContext<'_>, req: &ApiRequest<'_>, body: LoginBody) -> Reply {
    let user = cx.users.by_email(cx.sessions.store.as_ref(), body.email.trim()).await.map_err(|e| store_failed(cx, e))?;
    let ok = cx.passwords.verify(body.password, user.as_ref().map(|u| u.password_hash.clone())).await?;
    let user = match (ok, user) {
        (true, Some(u)) => u,
        _ => return Err(ApiError::new(401, "invalid_credentials", "the email or password is wrong")),
    };
    let now = unix_now();
    let session_id = new_id();
    let pair = cx
        .tokens
        .create_token_pair(&user.id, &user.role, &session_id)
        .map_err(|_| ApiError::new(500, "internal_error", "token signing failed"))?;
    let record = SessionRecord {
        id: session_id,
        user_id: user.id.clone(),
        created_at: now,
        last_activity: now,
        expires_at: now + cx.sessions.settings.absolute_timeout.as_secs(),
        user_agent: req.user_agent.chars().take(256).collect(),
        ip: req.client_ip.to_string(),
        refresh_jti: pair.refresh_jti.clone(),
    };
    cx.sessions.store.create_session(&record, cx.sessions.settings.idle_timeout.as_secs(), now).await.map_err(|e| store_failed(cx, e))?;
    tracing::info!(user_id = %user.id, session_id = %record.id, "login");
    let (status, mut v) = token_reply(pair.access_token, pair.refresh_token, pair.expires_in)?;
    v["user_id"] = json!(user.id);
    v["session_id"] = json!(record.id);
    Ok((status, v))
}

#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

async fn refresh(cx: &ApiContext<'_>, req: &ApiRequest<'_>) -> Reply {
    let body: RefreshBody = json_body(req)?;
    let claims = cx.tokens.verify(body.refresh_token.trim(), TokenKind::Refresh).map_err(|e| ApiError::invalid_token(&e))?;
    let now = unix_now();
    let store = cx.sessions.store.as_ref();
    let ended = || ApiError::new(401, "invalid_token", "the session has ended");
    if cx.sessions.revocations.is_revoked(&claims.sid, now) {
        return Err(ended());
    }
    let Some(user) = cx.users.by_id(store, &claims.user_id).await.map_err(|e| store_failed(cx, e))? else {
        let _ = cx.sessions.revoke(std::slice::from_ref(&claims.sid), now + cx.revocation_ttl, now).await;
        return Err(ended());
    };
    let next_jti = new_id();
    let idle = cx.sessions.settings.idle_timeout.as_secs();
    match store.rotate_refresh(&claims.sid, &claims.jti, &next_jti, now, idle).await.map_err(|e| store_failed(cx, e))? {
        Rotation::Rotated => {}
        Rotation::Missing => return Err(ended()),
        Rotation::Reused => {
            // RFC 9700 4.14.2: a rotated refresh token presented again means it leaked; end the session.
            tracing::warn!(user_id = %claims.user_id, session_id = %claims.sid, "refresh token reuse: session revoked");
            audit(cx, req, "auth.refresh_reuse", "revoked", Some(&claims.user_id), json!({ "session_id": claims.sid }));
            cx.sessions.revoke(std::slice::from_ref(&claims.sid), now + cx.revocation_ttl, now).await.map_err(|e| store_failed(cx, e))?;
            return Err(ApiError::new(401, "refresh_token_reused", "this refresh token was already used; the session has been ended"));
        }
    }
    let fail = |_| ApiError::new(500, "internal_error", "token signing failed");
    let access = cx.tokens.create_access_token(&user.id, &user.role, &claims.sid).map_err(fail)?;
    let refresh = cx.tokens.create_refresh_token_with_jti(&user.id, &claims.sid, &next_jti).map_err(fail)?;
    audit(cx, req, "auth.refresh", "success", Some(&user.id), json!({ "session_id": claims.sid }));
    token_reply(access, refresh, cx.tokens.access_ttl().as_secs())
}

async fn logout(cx: &ApiContext<'_>, req: &ApiRequest<'_>) -> Reply {
    let id = caller(cx, req)?;
    let now = unix_now();
    cx.sessions.revoke(std::slice::from_ref(&id.session_id), now + cx.revocation_ttl, now).await.map_err(|e| store_failed(cx, e))?;
    tracing::info!(user_id = %id.user_id, session_id = %id.session_id, "logout");
    audit(cx, req, "auth.logout", "success", Some(&id.user_id), json!({ "session_id": id.session_id }));
    Ok((200, json!({ "status": "logged_out" })))
}

async fn logout_all(cx: &ApiContext<'_>, req: &ApiRequest<'_>) -> Reply {
    let id = caller(cx, req)?;
    let revoked = revoke_all_of(cx, &id.user_id, Some(&id.session_id)).await?;
    tracing::info!(user_id = %id.user_id, sessions = revoked, "logout-all");
    audit(cx, req, "auth.logout_all", "success", Some(&id.user_id), json!({ "sessions_revoked": revoked }));
    Ok((200, json!({ "status": "logged_out", "sessions_revoked": revoked })))
}

/// Revokes every session of a user (plus `also`, the caller's own, even if the store lost it).
async fn revoke_all_of(cx: &ApiContext<'_>, user_id: &str, also: Option<&str>) -> Result<usize, ApiError> {
    let mut ids: Vec<String> =
        cx.sessions.store.sessions_of(user_id).await.map_err(|e| store_failed(cx, e))?.into_iter().map(|s| s.id).collect();
    if let Some(own) = also {
        if !ids.iter().any(|s| s == own) {
            ids.push(own.to_string());
        }
    }
    let now = unix_now();
    if !ids.is_empty() {
        cx.sessions.revoke(&ids, now + cx.revocation_ttl, now).await.map_err(|e| store_failed(cx, e))?;
    }
    Ok(ids.len())
}

async fn me(cx: &ApiContext<'_>, req: &ApiRequest<'_>) -> Reply {
    let id = caller(cx, req)?;
    Ok((200, json!({ "user_id": id.user_id, "role": id.role, "session_id": id.session_id })))
}

async fn list_sessions(cx: &ApiContext<'_>, req: &ApiRequest<'_>) -> Reply {
    let id = caller(cx, req)?;
    let sessions = cx.sessions.store.sessions_of(&id.user_id).await.map_err(|e| store_failed(cx, e))?;
    let list: Vec<Value> = sessions
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "created_at": rfc3339(s.created_at),
                "last_activity": rfc3339(s.last_activity),
                "user_agent": s.user_agent,
                "ip": s.ip,
                "current": s.id == id.session_id,
            })
        })
        .collect();
    Ok((200, json!({ "sessions": list })))
}

async fn revoke_session(cx: &ApiContext<'_>, req: &ApiRequest<'_>, session_id: &str) -> Reply {
    let id = caller(cx, req)?;
    let session = cx.sessions.store.session(session_id).await.map_err(|e| store_failed(cx, e))?;
    match session {
        Some(s) if s.user_id == id.user_id => {
            let now = unix_now();
            cx.sessions.revoke(std::slice::from_ref(&s.id), now + cx.revocation_ttl, now).await.map_err(|e| store_failed(cx, e))?;
            audit(cx, req, "auth.session_revoked", "success", Some(&id.user_id), json!({ "session_id": s.id }));
            Ok((200, json!({ "status": "revoked" })))
        }
        // Someone else's session is indistinguishable from no session.
        _ => Err(ApiError::new(404, "not_found", "no such session")),
    }
}

// === /admin/users ===

fn user_json(u: &User) -> Value {
    json!({
        "id": u.id,
        "email": u.email,
        "role": u.role,
        "created_at": u.created_at.map(rfc3339),
        "source": u.source,
    })
}

async fn list_users(cx: &ApiContext<'_>, req: &ApiRequest<'_>) -> Reply {
    admin(cx, req)?;
    let users = cx.users.all(cx.sessions.store.as_ref()).await.map_err(|e| store_failed(cx, e))?;
    Ok((200, json!({ "users": users.iter().map(user_json).collect::<Vec<_>>() })))
}

#[derive(Deserialize)]
struct NewUser {
    email: String,
    password: String,
    role: String,
}

fn valid_email(email: &str) -> bool {
    let parts: Vec<&str> = email.split('@').collect();
    email.len() <= 254 && parts.len() == 2 && !parts[0].is_empty() && parts[1].contains('.') && !email.contains(char::is_whitespace)
}

async fn create_user(cx: &ApiContext<'_>, req: &ApiRequest<'_>) -> Reply {
    let by = admin(cx, req)?;
    let body: NewUser = json_body(req)?;
    let email = body.email.trim().to_string();
    if !valid_email(&email) {
        return Err(ApiError::bad_request("`email` is not a valid email address"));
    }
    if cx.roles.level(&body.role).is_none() {
        return Err(ApiError::bad_request(format!("unknown role `{}`", body.role)));
    }
    cx.passwords.check_policy(&body.password, &email).map_err(|e| ApiError::bad_request(format!("password rejected: {e}")))?;
    let store = cx.sessions.store.as_ref();
    if cx.users.by_email(store, &email).await.map_err(|e| store_failed(cx, e))?.is_some() {
        return Err(ApiError::new(409, "user_exists", "a user with this email already exists"));
    }
    let record =
        UserRecord { id: new_id(), email, role: body.role, password_hash: cx.passwords.hash(body.password).await?, created_at: unix_now() };
    if !store.create_user(&record).await.map_err(|e| store_failed(cx, e))? {
        return Err(ApiError::new(409, "user_exists", "a user with this email already exists"));
    }
    tracing::info!(by = %by.user_id, user_id = %record.id, role = %record.role, "user created");
    audit(cx, req, "admin.user_created", "success", Some(&by.user_id), json!({ "target_user": record.id, "role": record.role }));
    Ok((201, user_json(&record.into())))
}

#[derive(Deserialize)]
struct UserChange {
    role: String,
}

async fn update_user(cx: &ApiContext<'_>, req: &ApiRequest<'_>, user_id: &str) -> Reply {
    let by = admin(cx, req)?;
    let body: UserChange = json_body(req)?;
    if cx.roles.level(&body.role).is_none() {
        return Err(ApiError::bad_request(format!("unknown role `{}`", body.role)));
    }
    let store = cx.sessions.store.as_ref();
    match cx.users.by_id(store, user_id).await.map_err(|e| store_failed(cx, e))? {
        None => return Err(ApiError::new(404, "not_found", "no such user")),
        Some(u) if u.source == Source::File => {
            return Err(ApiError::new(409, "user_in_file", "this user is defined in the users file; change it there"))
        }
        Some(_) => {}
    }
    if !store.set_user_role(user_id, &body.role).await.map_err(|e| store_failed(cx, e))? {
        return Err(ApiError::new(404, "not_found", "no such user"));
    }
    let revoked = match cx.sessions.settings.on_role_change {
        RoleChange::Revoke => revoke_all_of(cx, user_id, None).await?,
        RoleChange::Refresh => 0,
    };
    tracing::info!(by = %by.user_id, user_id = %user_id, role = %body.role, sessions_revoked = revoked, "user role changed");
    audit(
        cx,
        req,
        "admin.user_role_changed",
        "success",
        Some(&by.user_id),
        json!({ "target_user": user_id, "role": body.role, "sessions_revoked": revoked }),
    );
    let user = cx
        .users
        .by_id(store, user_id)
        .await
        .map_err(|e| store_failed(cx, e))?
        .ok_or_else(|| ApiError::new(404, "not_found", "no such user"))?;
    Ok((200, user_json(&user)))
}

async fn delete_user(cx: &ApiContext<'_>, req: &ApiRequest<'_>, user_id: &str) -> Reply {
    let by = admin(cx, req)?;
    let store = cx.sessions.store.as_ref();
    match cx.users.by_id(store, user_id).await.map_err(|e| store_failed(cx, e))? {
        None => return Err(ApiError::new(404, "not_found", "no such user")),
        Some(u) if u.source == Source::File => {
            return Err(ApiError::new(409, "user_in_file", "this user is defined in the users file; remove it there"))
        }
        Some(_) => {}
    }
    let revoked = revoke_all_of(cx, user_id, None).await?;
    store.delete_user(user_id).await.map_err(|e| store_failed(cx, e))?;
    tracing::info!(by = %by.user_id, user_id = %user_id, sessions_revoked = revoked, "user deleted");
    audit(cx, req, "admin.user_deleted", "success", Some(&by.user_id), json!({ "target_user": user_id, "sessions_revoked": revoked }));
    Ok((200, json!({ "status": "deleted", "sessions_revoked": revoked })))
}

// === /admin/providers ===

fn provider_json(name: &str, s: &health::State, now: u64) -> Value {
    json!({
        "name": name,
        "status": s.status.as_str(),
        "available": s.is_available(now),
        "last_check": (s.last_check > 0).then(|| rfc3339(s.last_check / 1000)),
        "response_time_ms": s.response_time_ms.map(|v| (v * 10.0).round() / 10.0),
        "consecutive_failures": s.consecutive_failures,
        "reason": s.reason,
        "unavailable_until": (!s.is_available(now)).then(|| rfc3339(s.unhealthy_until.max(s.retry_after_until).min(u64::MAX / 2) / 1000)),
    })
}

async fn list_providers(cx: &ApiContext<'_>, req: &ApiRequest<'_>) -> Reply {
    admin(cx, req)?;
    let Some(tracker) = cx.tracker else { return Err(ApiError::not_found()) };
    let now = now_ms();
    let states = tracker.snapshot();
    let default = health::State::default();
    let state = |name: &str| states.get(name).unwrap_or(&default);
    let providers: Vec<Value> = cx.providers.iter().map(|p| provider_json(&p.name, state(&p.name), now)).collect();
    let chains: Vec<Value> = cx
        .chains
        .iter()
        .map(|c| {
            let st = |i: usize| state(&cx.providers[i].name);
            let (order, panic) = health::attempts(&c.providers, st, c.order, now);
            json!({
                "name": c.name,
                "providers": c.providers.iter().map(|i| cx.providers[*i].name.as_str()).collect::<Vec<_>>(),
                "current_order": order.iter().map(|i| cx.providers[*i].name.as_str()).collect::<Vec<_>>(),
                "panic_mode": panic,
            })
        })
        .collect();
    Ok((200, json!({ "providers": providers, "chains": chains })))
}

#[derive(Deserialize)]
struct StatusOverride {
    status: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    duration_seconds: Option<u64>,
}

async fn override_provider(cx: &ApiContext<'_>, req: &ApiRequest<'_>, name: &str) -> Reply {
    let by = admin(cx, req)?;
    let Some(tracker) = cx.tracker else { return Err(ApiError::not_found()) };
    if !cx.providers.iter().any(|p| p.name == name) {
        return Err(ApiError::new(404, "not_found", "no such provider"));
    }
    let body: StatusOverride = json_body(req)?;
    let Some(status) = Status::parse(&body.status) else {
        return Err(ApiError::bad_request("`status` must be healthy, degraded or unhealthy"));
    };
    let reason = body.reason.map(|r| r.chars().take(200).collect::<String>()).or_else(|| Some("manual override".into()));
    let duration = body.duration_seconds.map(std::time::Duration::from_secs);
    let state = tracker.update(name, override_change(status, reason.clone(), duration)).await.map_err(|e| store_failed(cx, e))?;
    tracing::info!(by = %by.user_id, provider = %name, status = %status.as_str(), "provider status override");
    audit(
        cx,
        req,
        "admin.provider_override",
        "success",
        Some(&by.user_id),
        json!({ "provider": name, "status": status.as_str(), "reason": reason, "duration_seconds": body.duration_seconds }),
    );
    Ok((200, provider_json(name, &state, now_ms())))
}

#[cfg(test)]
mod tests;
