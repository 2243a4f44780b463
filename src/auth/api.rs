//! The `/auth` endpoints: login, refresh, logout (one session or all), the caller's sessions,
//! and who the caller is. Admission has already verified the token of every endpoint that needs
//! one; these do the work, keep the store and the audit trail in step, and answer JSON.
//!
//! Never puts a password, hash or token into an error message or a log line.

use http::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::credentials::Credentials;
use super::keys::ApiKeySettings;
use super::passwords::{PasswordError, Passwords};
use super::sessions::Sessions;
use super::tokens::{TokenError, TokenKind, TokenManager};
use super::users::UserDirectory;
use crate::api::{json_body, only, ApiError, ApiRequest, Reply};
use crate::audit::{Audit, Event};
use crate::clock::unix_now;
use crate::ids::new_id;
use crate::limits::{self, Decision, Limit, LockoutPolicy};
use crate::metrics::Metrics;
use crate::policy::Roles;
use crate::ratelimit::{Limiter, RateLimitSettings};
use crate::store::{Rotation, SessionRecord, StoreError, UserStore};
use crate::timefmt::rfc3339;

impl From<PasswordError> for ApiError {
    fn from(e: PasswordError) -> Self {
        match e {
            PasswordError::Busy => ApiError::new(503, "busy", "too many logins are in progress; try again shortly"),
            PasswordError::Internal => ApiError::new(500, "internal_error", "password processing failed"),
        }
    }
}

/// Every `logins_total{result}` value.
pub const LOGIN_RESULTS: [&str; 5] = ["success", "invalid_credentials", "rate_limited", "locked", "error"];

fn invalid_token(e: &TokenError) -> ApiError {
    ApiError::new(401, "invalid_token", e.to_string())
}

/// Everything the `/auth` and `/admin/users` endpoints need: the current config's pieces and
/// the long-lived services.
pub struct ApiContext<'a> {
    pub tokens: &'a TokenManager,
    pub roles: &'a Roles,
    pub users: &'a UserDirectory,
    pub user_store: &'a dyn UserStore,
    pub sessions: &'a Sessions,
    pub passwords: &'a Passwords,
    /// How long a revocation must stay in force: the access token lifetime plus leeway.
    pub revocation_ttl: u64,
    pub metrics: Option<&'a Metrics>,
    pub limiter: &'a Limiter,
    pub rate_limits: &'a RateLimitSettings,
    pub lockout: Option<LockoutPolicy>,
    pub audit: Option<&'a Audit>,
    /// API keys and the denylist.
    pub credentials: &'a Credentials,
    /// None: API keys are not enabled.
    pub api_keys: Option<&'a ApiKeySettings>,
    /// The names of `rate_limits.routes` (an API key may name one).
    pub limit_names: Vec<&'a str>,
    /// The external identity providers (a denylist entry may name one).
    pub identity_providers: &'a [super::idp::IdpSettings],
}

/// Serves one `/auth` request.
pub async fn handle(cx: &ApiContext<'_>, req: &ApiRequest<'_>) -> Reply {
    let m = req.method;
    match req.segments().as_slice() {
        ["auth", "login"] => only(m, Method::POST, || login(cx, req)).await,
        ["auth", "refresh"] => only(m, Method::POST, || refresh(cx, req)).await,
        ["auth", "logout"] => only(m, Method::POST, || logout(cx, req)).await,
        ["auth", "logout-all"] => only(m, Method::POST, || logout_all(cx, req)).await,
        ["auth", "me"] => only(m, Method::GET, || me(req)).await,
        ["auth", "sessions"] => only(m, Method::GET, || list_sessions(cx, req)).await,
        ["auth", "sessions", id] if !id.is_empty() => only(m, Method::DELETE, || revoke_session(cx, req, id)).await,
        _ => Err(ApiError::not_found()),
    }
}

/// A 401 `revoked` for a user an admin put on the denylist.
fn revoked_user() -> ApiError {
    ApiError::new(401, "revoked", "this account has been revoked by an administrator")
}

fn token_reply(access: String, refresh: String, expires_in: u64) -> Reply {
    Ok((200, json!({ "access_token": access, "refresh_token": refresh, "token_type": "bearer", "expires_in": expires_in })))
}

/// A store failure seen by an endpoint: the store is marked down (readiness) and the failure
/// counted once, as `api`.
pub(super) fn store_failed(cx: &ApiContext<'_>, e: StoreError) -> ApiError {
    cx.sessions.set_store_healthy(false);
    if let Some(m) = cx.metrics {
        m.ops.store_error("api");
    }
    e.into()
}

/// Emits an audit event about this request.
pub(super) fn audit(
    cx: &ApiContext<'_>,
    req: &ApiRequest<'_>,
    kind: &'static str,
    status: &'static str,
    user: Option<&str>,
    details: Value,
) {
    if let Some(a) = cx.audit {
        a.emit(Event::new(kind, status, user, req.origin, details));
    }
}

/// A 429 for an exceeded login limit, counted and audited.
fn limited(cx: &ApiContext<'_>, req: &ApiRequest<'_>, name: &'static str, limit: Limit, d: &Decision) -> ApiError {
    if let Some(m) = cx.metrics {
        m.auth.rate_limited(name);
    }
    audit(cx, req, "ratelimit.hit", "denied", None, json!({ "limit": name, "retry_after": d.retry_after_seconds }));
    let mut e = ApiError::new(429, "rate_limited", "too many login attempts; retry later");
    e.headers.extend(limits::headers(name, limit, d));
    e.headers.push(("retry-after", d.retry_after_seconds.to_string()));
    e
}

fn count_login(cx: &ApiContext<'_>, req: &ApiRequest<'_>, result: &'static str) {
    if let Some(m) = cx.metrics {
        m.auth.login(result);
        if result == "invalid_credentials" {
            m.auth.auth_failure_from(req.client_ip.parse().ok());
        }
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
            count_login(cx, req, "rate_limited");
            return Err(limited(cx, req, "login_ip", limit, &d));
        }
    }
    if let Some(limit) = cx.rate_limits.login_account {
        let d = cx.limiter.exact(&format!("login_account:{account}"), limit).await.map_err(|e| store_failed(cx, e))?;
        if !d.allowed {
            count_login(cx, req, "rate_limited");
            return Err(limited(cx, req, "login_account", limit, &d));
        }
    }
    if cx.lockout.is_some() {
        let state = cx.limiter.lockout_state(&account).await.map_err(|e| store_failed(cx, e))?;
        let now = unix_now();
        if state.locked_until > now {
            // Locked: refused even with the right password, and the password is not checked.
            count_login(cx, req, "locked");
            if let Some(m) = cx.metrics {
                m.auth.rate_limited("account_locked");
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
            count_login(cx, req, "success");
            if cx.lockout.is_some() {
                cx.limiter.login_succeeded(&account).await.map_err(|e| store_failed(cx, e))?;
            }
            audit(cx, req, "auth.login", "success", v["user_id"].as_str(), json!({ "session_id": v["session_id"] }));
        }
        Err(e) if e.code == "invalid_credentials" => {
            count_login(cx, req, "invalid_credentials");
            audit(cx, req, "auth.login", "failure", None, json!({ "reason": "invalid_credentials", "account": account }));
            if let Some(policy) = cx.lockout {
                let now = unix_now();
                let state = cx.limiter.login_failed(&account, policy, now).await.map_err(|e| store_failed(cx, e))?;
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
        Err(_) => count_login(cx, req, "error"),
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
    let user = cx.users.by_email(cx.user_store, body.email.trim()).await.map_err(|e| store_failed(cx, e))?;
    let ok = cx.passwords.verify(body.password, user.as_ref().map(|u| u.password_hash.clone())).await?;
    let user = match (ok, user) {
        (true, Some(u)) => u,
        _ => return Err(ApiError::new(401, "invalid_credentials", "the email or password is wrong")),
    };
    let now = unix_now();
    if cx.credentials.denies_user(&user.id, now) {
        return Err(revoked_user());
    }
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
    cx.sessions.store().create_session(&record, cx.sessions.settings.idle_timeout.as_secs(), now).await.map_err(|e| store_failed(cx, e))?;
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
    let claims = cx.tokens.verify(body.refresh_token.trim(), TokenKind::Refresh).map_err(|e| invalid_token(&e))?;
    let now = unix_now();
    let store = cx.sessions.store();
    let ended = || ApiError::new(401, "invalid_token", "the session has ended");
    if cx.sessions.revocations.is_revoked(&claims.sid, now) {
        return Err(ended());
    }
    if cx.credentials.denies_user(&claims.user_id, now) {
        return Err(revoked_user());
    }
    let Some(user) = cx.users.by_id(cx.user_store, &claims.user_id).await.map_err(|e| store_failed(cx, e))? else {
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

/// The caller's login session: logout needs one (an API key or certificate is not a session).
fn caller_session<'r>(req: &'r ApiRequest<'_>) -> Result<(&'r crate::policy::Identity, &'r str), ApiError> {
    let id = req.caller()?;
    let sid = id.session_id().ok_or_else(|| {
        ApiError::new(400, "not_a_session", "this credential is not a login session; revoke an API key through /auth/api-keys")
    })?;
    Ok((id, sid))
}

async fn logout(cx: &ApiContext<'_>, req: &ApiRequest<'_>) -> Reply {
    let (id, sid) = caller_session(req)?;
    let now = unix_now();
    cx.sessions.revoke(&[sid.to_string()], now + cx.revocation_ttl, now).await.map_err(|e| store_failed(cx, e))?;
    tracing::info!(user_id = %id.user_id, session_id = %sid, "logout");
    audit(cx, req, "auth.logout", "success", Some(&id.user_id), json!({ "session_id": sid }));
    Ok((200, json!({ "status": "logged_out" })))
}

async fn logout_all(cx: &ApiContext<'_>, req: &ApiRequest<'_>) -> Reply {
    let (id, sid) = caller_session(req)?;
    let revoked = revoke_all_of(cx, &id.user_id, Some(sid)).await?;
    tracing::info!(user_id = %id.user_id, sessions = revoked, "logout-all");
    audit(cx, req, "auth.logout_all", "success", Some(&id.user_id), json!({ "sessions_revoked": revoked }));
    Ok((200, json!({ "status": "logged_out", "sessions_revoked": revoked })))
}

/// Revokes every session of a user (plus `also`, the caller's own, even if the store lost it).
pub(super) async fn revoke_all_of(cx: &ApiContext<'_>, user_id: &str, also: Option<&str>) -> Result<usize, ApiError> {
    let mut ids: Vec<String> =
        cx.sessions.store().sessions_of(user_id).await.map_err(|e| store_failed(cx, e))?.into_iter().map(|s| s.id).collect();
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

async fn me(req: &ApiRequest<'_>) -> Reply {
    let id = req.caller()?;
    let mut body = json!({ "user_id": id.user_id, "role": id.role, "session_id": id.session_id() });
    if let Some(key) = id.api_key_id() {
        body["api_key_id"] = json!(key);
    }
    if let Some(scopes) = &id.scopes {
        body["scopes"] = json!(scopes);
    }
    Ok((200, body))
}

async fn list_sessions(cx: &ApiContext<'_>, req: &ApiRequest<'_>) -> Reply {
    let id = req.caller()?;
    let sessions = cx.sessions.store().sessions_of(&id.user_id).await.map_err(|e| store_failed(cx, e))?;
    let list: Vec<Value> = sessions
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "created_at": rfc3339(s.created_at),
                "last_activity": rfc3339(s.last_activity),
                "user_agent": s.user_agent,
                "ip": s.ip,
                "current": id.session_id() == Some(s.id.as_str()),
            })
        })
        .collect();
    Ok((200, json!({ "sessions": list })))
}

async fn revoke_session(cx: &ApiContext<'_>, req: &ApiRequest<'_>, session_id: &str) -> Reply {
    let id = req.caller()?;
    let session = cx.sessions.store().session(session_id).await.map_err(|e| store_failed(cx, e))?;
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

#[cfg(test)]
mod tests;
