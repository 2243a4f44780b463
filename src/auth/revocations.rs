//! The `/admin/revocations` endpoints: put a user, an access token (`jti`), an API key or an
//! identity provider on the denylist, list the entries in force, lift one. Every instance
//! refuses what an entry matches as soon as the store's notice reaches it.

use http::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::{audit, revoke_all_of, store_failed, ApiContext};
use super::denylist::{DenyEntry, Subject};
use crate::api::{json_body, ApiError, ApiRequest, Reply};
use crate::clock::unix_now;
use crate::ids::new_id;
use crate::timefmt::rfc3339;

/// Serves one `/admin/revocations` request.
pub async fn handle(cx: &ApiContext<'_>, req: &ApiRequest<'_>) -> Reply {
    match (req.segments().as_slice(), req.method) {
        (["admin", "revocations"], &Method::GET) => list(cx, req).await,
        (["admin", "revocations"], &Method::POST) => create(cx, req).await,
        (["admin", "revocations"], _) => Err(ApiError::method_not_allowed("GET, POST")),
        (["admin", "revocations", id], &Method::DELETE) if !id.is_empty() => lift(cx, req, id).await,
        (["admin", "revocations", id], _) if !id.is_empty() => Err(ApiError::method_not_allowed("DELETE")),
        _ => Err(ApiError::not_found()),
    }
}

fn entry_json(e: &DenyEntry) -> Value {
    json!({
        "id": e.id,
        e.subject.as_str(): e.value,
        "reason": e.reason,
        "created_by": e.created_by,
        "created_at": rfc3339(e.created_at),
        "expires_at": e.expires_at.map(rfc3339),
    })
}

async fn list(cx: &ApiContext<'_>, req: &ApiRequest<'_>) -> Reply {
    req.caller()?;
    let entries = cx.credentials.entries().await.map_err(|e| store_failed(cx, e))?;
    Ok((200, json!({ "revocations": entries.iter().map(entry_json).collect::<Vec<_>>() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEntry {
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    api_key_id: Option<String>,
    #[serde(default)]
    issuer: Option<String>,
    reason: String,
    #[serde(default)]
    duration_seconds: Option<i64>,
}

async fn create(cx: &ApiContext<'_>, req: &ApiRequest<'_>) -> Reply {
    let by = req.caller()?;
    let body: NewEntry = json_body(req)?;
    let given: Vec<(Subject, String)> =
        [(Subject::UserId, body.user_id), (Subject::Jti, body.jti), (Subject::ApiKeyId, body.api_key_id), (Subject::Issuer, body.issuer)]
            .into_iter()
            .filter_map(|(s, v)| Some((s, v?)))
            .collect();
    let [(subject, value)] = given.as_slice() else {
        return Err(ApiError::bad_request("give exactly one of `user_id`, `jti`, `api_key_id` or `issuer`"));
    };
    let (subject, value) = (*subject, value.trim().to_string());
    if !crate::policy::header_word(&value) {
        return Err(ApiError::bad_request(format!("`{}` must be 1-256 printable ASCII characters without spaces", subject.as_str())));
    }
    let reason = body.reason.trim().to_string();
    if reason.is_empty() || reason.chars().count() > 500 || reason.chars().any(char::is_control) {
        return Err(ApiError::bad_request("`reason` must be 1-500 characters, none of them control characters"));
    }
    if subject == Subject::Issuer && !cx.identity_providers.iter().any(|p| p.name == value) {
        // An entry for a provider that is not configured could match nothing: refused, not kept.
        return Err(ApiError::bad_request(format!("`issuer`: no identity provider named `{value}` is configured")));
    }
    let now = unix_now();
    let expires_at = match body.duration_seconds {
        Some(d) if d < 1 => return Err(ApiError::bad_request("`duration_seconds` must be at least 1")),
        Some(d) => Some(now.saturating_add(d as u64)),
        None => match subject {
            // Nothing a jti entry matches outlives the longest access-token lifetime: the
            // gateway's own, or a provider's.
            Subject::Jti => {
                let external = cx.identity_providers.iter().map(|p| p.max_lifetime.as_secs() + p.leeway_seconds).max().unwrap_or(0);
                Some(now + cx.revocation_ttl.max(external))
            }
            // A key's entry is moot once the key has expired.
            Subject::ApiKeyId => cx.credentials.key(&value).await.map_err(|e| store_failed(cx, e))?.and_then(|k| k.expires_at),
            Subject::UserId | Subject::Issuer => None,
        },
    };
    let entry = DenyEntry { id: new_id(), subject, value, reason, created_by: by.user_id.clone(), created_at: now, expires_at };
    cx.credentials.add_entry(&entry).await.map_err(|e| store_failed(cx, e))?;
    // A user revocation also ends the user's sessions (and with them their refresh tokens).
    let sessions_revoked = match subject {
        Subject::UserId => revoke_all_of(cx, &entry.value, None).await?,
        _ => 0,
    };
    tracing::info!(by = %by.user_id, id = %entry.id, subject = subject.as_str(), sessions_revoked, "denylist entry added");
    let mut details = entry_json(&entry);
    details["sessions_revoked"] = json!(sessions_revoked);
    audit(cx, req, "admin.revocation_created", "success", Some(&by.user_id), details.clone());
    Ok((201, details))
}

async fn lift(cx: &ApiContext<'_>, req: &ApiRequest<'_>, id: &str) -> Reply {
    let by = req.caller()?;
    let entry = cx.credentials.entries().await.map_err(|e| store_failed(cx, e))?.into_iter().find(|e| e.id == id);
    let Some(entry) = entry else {
        return Err(ApiError::new(404, "not_found", "no such revocation"));
    };
    if !cx.credentials.remove_entry(id).await.map_err(|e| store_failed(cx, e))? {
        return Err(ApiError::new(404, "not_found", "no such revocation"));
    }
    tracing::info!(by = %by.user_id, id = %id, "denylist entry lifted");
    audit(cx, req, "admin.revocation_lifted", "success", Some(&by.user_id), entry_json(&entry));
    Ok((200, json!({ "status": "lifted", "id": id })))
}
