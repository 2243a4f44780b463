//! The API-key endpoints: `/admin/api-keys` (admin: create for anyone, list all, revoke any)
//! and `/auth/api-keys` (a user's own: list, revoke, and create when `api_keys.self_service`).
//! A new key is answered once and never again: the store keeps only its keyed hash.

use http::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::{audit, store_failed, ApiContext};
use super::keys::{ApiKeyRecord, ApiKeySettings};
use crate::api::{json_body, ApiError, ApiRequest, Reply};
use crate::apikey;
use crate::clock::unix_now;
use crate::policy::{header_word, Credential, Identity};
use crate::timefmt::rfc3339;

/// The longest lifetime a key may be given.
const MAX_EXPIRES_IN_DAYS: i64 = 3650;

/// Serves one `/admin/api-keys` or `/auth/api-keys` request.
pub async fn handle(cx: &ApiContext<'_>, req: &ApiRequest<'_>) -> Reply {
    let Some(settings) = cx.api_keys else {
        return Err(ApiError::new(404, "not_found", "API keys are not enabled on this gateway (`api_keys` in gateway.yaml)"));
    };
    let admin = req.path.starts_with("/admin/");
    match (req.segments().as_slice(), req.method) {
        ([_, "api-keys"], &Method::GET) => list(cx, req, admin).await,
        ([_, "api-keys"], &Method::POST) => create(cx, req, settings, admin).await,
        ([_, "api-keys"], _) => Err(ApiError::method_not_allowed("GET, POST")),
        ([_, "api-keys", id], &Method::DELETE) if !id.is_empty() => revoke(cx, req, id, admin).await,
        ([_, "api-keys", id], _) if !id.is_empty() => Err(ApiError::method_not_allowed("DELETE")),
        _ => Err(ApiError::not_found()),
    }
}

fn key_json(k: &ApiKeyRecord, last_used: Option<u64>) -> Value {
    json!({
        "id": k.id,
        "name": k.name,
        "user_id": k.user_id,
        "role": k.role,
        "scopes": k.scopes,
        "created_at": rfc3339(k.created_at),
        "created_by": k.created_by,
        "last_used_at": last_used.map(rfc3339),
        "expires_at": k.expires_at.map(rfc3339),
        "last4": k.last4,
        "rate_limit": k.rate_limit,
    })
}

async fn list(cx: &ApiContext<'_>, req: &ApiRequest<'_>, admin: bool) -> Reply {
    let caller = req.caller()?;
    let keys = cx.credentials.keys_with_uses().await.map_err(|e| store_failed(cx, e))?;
    let list: Vec<Value> = keys.iter().filter(|(k, _)| admin || k.user_id == caller.user_id).map(|(k, used)| key_json(k, *used)).collect();
    Ok((200, json!({ "api_keys": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: String,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    expires_in_days: Option<i64>,
    #[serde(default)]
    rate_limit: Option<String>,
}

/// Checks a new key's fields against the caller; the first problem names its field.
fn checked(cx: &ApiContext<'_>, caller: &Identity, body: NewKey, admin: bool, now: u64) -> Result<ApiKeyRecord, ApiError> {
    let bad = |field: &str, why: &str| ApiError::bad_request(format!("`{field}` {why}"));
    let name = body.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(bad("name", "must be 1-100 characters, none of them control characters"));
    }
    let user_id = match (admin, body.user_id) {
        (true, Some(u)) => u,
        (true, None) => return Err(ApiError::bad_request("missing field `user_id`")),
        (false, Some(u)) if u != caller.user_id => return Err(bad("user_id", "must be your own user id (or left out)")),
        (false, _) => caller.user_id.clone(),
    };
    if !header_word(&user_id) {
        return Err(bad("user_id", "must be 1-256 printable ASCII characters without spaces"));
    }
    let caller_level = caller.role.as_deref().and_then(|r| cx.roles.level(r));
    let role = match (body.role, admin, &caller.role) {
        (Some(r), _, _) => r,
        (None, false, Some(own)) => own.clone(),
        (None, _, _) => return Err(ApiError::bad_request("missing field `role`")),
    };
    let Some(level) = cx.roles.level(&role) else {
        return Err(bad("role", &format!("names an unknown role `{role}`")));
    };
    if caller_level.is_none_or(|own| level > own) {
        return Err(bad("role", "is above your own role"));
    }
    if let Some(scopes) = &body.scopes {
        if scopes.len() > 64 || scopes.iter().any(|s| !header_word(s) || s.contains(['"', '\\'])) {
            return Err(bad("scopes", "must be at most 64 words of printable ASCII without spaces, quotes or backslashes"));
        }
    }
    let expires_at = match body.expires_in_days {
        None => None,
        Some(d) if !(1..=MAX_EXPIRES_IN_DAYS).contains(&d) => {
            return Err(bad("expires_in_days", &format!("must be between 1 and {MAX_EXPIRES_IN_DAYS}")));
        }
        Some(d) => Some(now + d as u64 * 86_400),
    };
    if let Some(limit) = &body.rate_limit {
        if !cx.limit_names.contains(&limit.as_str()) {
            return Err(bad("rate_limit", "must name a limit under `rate_limits.routes`"));
        }
    }
    Ok(ApiKeyRecord {
        id: String::new(),
        name,
        user_id,
        role,
        scopes: body.scopes,
        hash: String::new(),
        last4: String::new(),
        created_at: now,
        created_by: caller.user_id.clone(),
        expires_at,
        rate_limit: body.rate_limit,
    })
}

async fn create(cx: &ApiContext<'_>, req: &ApiRequest<'_>, settings: &ApiKeySettings, admin: bool) -> Reply {
    let caller = req.caller()?;
    if !admin {
        if !settings.self_service {
            return Err(ApiError::new(403, "self_service_disabled", "only an administrator may create API keys here"));
        }
        if !matches!(caller.credential, Credential::Session { .. }) {
            return Err(ApiError::new(403, "forbidden", "log in to create API keys; a key cannot create keys"));
        }
    }
    let body: NewKey = json_body(req)?;
    let now = unix_now();
    let mut record = checked(cx, caller, body, admin, now)?;
    let held =
        cx.credentials.keys_with_uses().await.map_err(|e| store_failed(cx, e))?.iter().filter(|(k, _)| k.user_id == record.user_id).count();
    if held >= settings.max_per_user {
        return Err(ApiError::new(409, "too_many_keys", format!("this user already holds {held} keys (`api_keys.max_per_user`)")));
    }
    let (key, id) = apikey::generate().map_err(|_| ApiError::new(500, "internal_error", "no randomness available"))?;
    record.id = id;
    record.hash = apikey::to_hex(&settings.hasher.hash(&key));
    record.last4 = apikey::last4(&key).to_string();
    cx.credentials.add_key(&record).await.map_err(|e| store_failed(cx, e))?;
    tracing::info!(by = %caller.user_id, api_key_id = %record.id, user_id = %record.user_id, role = %record.role, "API key created");
    let details = json!({ "api_key_id": record.id, "target_user": record.user_id, "role": record.role, "name": record.name });
    audit(cx, req, "admin.api_key_created", "success", Some(&caller.user_id), details);
    let mut body = key_json(&record, None);
    body["key"] = json!(key);
    Ok((201, body))
}

async fn revoke(cx: &ApiContext<'_>, req: &ApiRequest<'_>, id: &str, admin: bool) -> Reply {
    let caller = req.caller()?;
    let not_found = || ApiError::new(404, "not_found", "no such API key");
    if !apikey::valid_id(id) {
        return Err(not_found());
    }
    let record = cx.credentials.key(id).await.map_err(|e| store_failed(cx, e))?.ok_or_else(not_found)?;
    // Someone else's key is indistinguishable from no key.
    if !admin && record.user_id != caller.user_id {
        return Err(not_found());
    }
    if !cx.credentials.remove_key(id).await.map_err(|e| store_failed(cx, e))? {
        return Err(not_found());
    }
    tracing::info!(by = %caller.user_id, api_key_id = %id, "API key revoked");
    audit(cx, req, "admin.api_key_revoked", "success", Some(&caller.user_id), json!({ "api_key_id": id, "target_user": record.user_id }));
    Ok((200, json!({ "status": "revoked", "id": id })))
}
