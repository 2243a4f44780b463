//! The `/admin/users` endpoints: list, create, change the role of, and delete users created
//! through the API (users of the users file are changed in the file). Admission has already
//! required the admin role.

use http::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::{audit, revoke_all_of, store_failed, ApiContext};
use super::sessions::RoleChange;
use super::users::{Source, User};
use crate::api::{json_body, ApiError, ApiRequest, Reply};
use crate::clock::unix_now;
use crate::ids::new_id;
use crate::store::UserRecord;
use crate::timefmt::rfc3339;

/// Serves one `/admin/users` request.
pub async fn handle(cx: &ApiContext<'_>, req: &ApiRequest<'_>) -> Reply {
    match (req.segments().as_slice(), req.method) {
        (["admin", "users"], &Method::GET) => list_users(cx, req).await,
        (["admin", "users"], &Method::POST) => create_user(cx, req).await,
        (["admin", "users"], _) => Err(ApiError::method_not_allowed("GET, POST")),
        (["admin", "users", id], &Method::PATCH) if !id.is_empty() => update_user(cx, req, id).await,
        (["admin", "users", id], &Method::DELETE) if !id.is_empty() => delete_user(cx, req, id).await,
        (["admin", "users", id], _) if !id.is_empty() => Err(ApiError::method_not_allowed("PATCH, DELETE")),
        _ => Err(ApiError::not_found()),
    }
}

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
    req.caller()?;
    let users = cx.users.all(cx.user_store).await.map_err(|e| store_failed(cx, e))?;
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
    let by = req.caller()?;
    let body: NewUser = json_body(req)?;
    let email = body.email.trim().to_string();
    if !valid_email(&email) {
        return Err(ApiError::bad_request("`email` is not a valid email address"));
    }
    if cx.roles.level(&body.role).is_none() {
        return Err(ApiError::bad_request(format!("unknown role `{}`", body.role)));
    }
    cx.passwords.check_policy(&body.password, &email).map_err(|e| ApiError::bad_request(format!("password rejected: {e}")))?;
    let store = cx.user_store;
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

/// Checks that `user_id` is a user the API may `change` (a verb for the message): 404 if there
/// is none, 409 if the users file defines it.
async fn api_user(cx: &ApiContext<'_>, user_id: &str, change: &str) -> Result<(), ApiError> {
    match cx.users.by_id(cx.user_store, user_id).await.map_err(|e| store_failed(cx, e))? {
        None => Err(ApiError::new(404, "not_found", "no such user")),
        Some(u) if u.source == Source::File => {
            Err(ApiError::new(409, "user_in_file", format!("this user is defined in the users file; {change} it there")))
        }
        Some(_) => Ok(()),
    }
}

async fn update_user(cx: &ApiContext<'_>, req: &ApiRequest<'_>, user_id: &str) -> Reply {
    let by = req.caller()?;
    let body: UserChange = json_body(req)?;
    if cx.roles.level(&body.role).is_none() {
        return Err(ApiError::bad_request(format!("unknown role `{}`", body.role)));
    }
    let store = cx.user_store;
    api_user(cx, user_id, "change").await?;
    if !store.set_user_role(user_id, &body.role).await.map_err(|e| store_failed(cx, e))? {
        return Err(ApiError::new(404, "not_found", "no such user"));
    }
    let revoked = match cx.sessions.settings.on_role_change {
        RoleChange::Revoke => revoke_all_of(cx, user_id, None).await?,
        RoleChange::Refresh => 0,
    };
    // A key never holds more than its user: keys above the new role are revoked.
    let level = cx.roles.level(&body.role);
    let keys_revoked = revoke_keys_of(cx, user_id, |role| cx.roles.level(role) > level).await?;
    tracing::info!(by = %by.user_id, user_id = %user_id, role = %body.role, sessions_revoked = revoked, "user role changed");
    audit(
        cx,
        req,
        "admin.user_role_changed",
        "success",
        Some(&by.user_id),
        json!({ "target_user": user_id, "role": body.role, "sessions_revoked": revoked, "api_keys_revoked": keys_revoked }),
    );
    let user = cx
        .users
        .by_id(store, user_id)
        .await
        .map_err(|e| store_failed(cx, e))?
        .ok_or_else(|| ApiError::new(404, "not_found", "no such user"))?;
    Ok((200, user_json(&user)))
}

/// Revokes the API keys of `user_id` whose role `doomed` picks; how many.
async fn revoke_keys_of(cx: &ApiContext<'_>, user_id: &str, doomed: impl Fn(&str) -> bool) -> Result<usize, ApiError> {
    let keys = cx.credentials.keys_with_uses().await.map_err(|e| store_failed(cx, e))?;
    let mut n = 0;
    for (k, _) in keys.iter().filter(|(k, _)| k.user_id == user_id && doomed(&k.role)) {
        if cx.credentials.remove_key(&k.id).await.map_err(|e| store_failed(cx, e))? {
            n += 1;
        }
    }
    Ok(n)
}

async fn delete_user(cx: &ApiContext<'_>, req: &ApiRequest<'_>, user_id: &str) -> Reply {
    let by = req.caller()?;
    let store = cx.user_store;
    api_user(cx, user_id, "remove").await?;
    let revoked = revoke_all_of(cx, user_id, None).await?;
    let keys_revoked = revoke_keys_of(cx, user_id, |_| true).await?;
    store.delete_user(user_id).await.map_err(|e| store_failed(cx, e))?;
    tracing::info!(by = %by.user_id, user_id = %user_id, sessions_revoked = revoked, api_keys_revoked = keys_revoked, "user deleted");
    let details = json!({ "target_user": user_id, "sessions_revoked": revoked, "api_keys_revoked": keys_revoked });
    audit(cx, req, "admin.user_deleted", "success", Some(&by.user_id), details);
    Ok((200, json!({ "status": "deleted", "sessions_revoked": revoked, "api_keys_revoked": keys_revoked })))
}
