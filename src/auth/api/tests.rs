//! The `/auth` and `/admin/users` endpoints, each request admitted first exactly as the proxy
//! does (so token, session and role checks are the real ones).

use super::*;
use crate::admission::admit;
use crate::api::{answer, ApiResponse, MAX_BODY_BYTES};
use crate::audit::Origin;
use crate::auth::passwords::PasswordSettings;
use crate::auth::sessions::{RoleChange, SessionSettings};
use crate::config::tests::seed_config;
use crate::policy::{Endpoint, Policy, Target};
use crate::store::memory::MemoryStore;
use crate::store::Store;
use std::sync::Arc;

struct World {
    limiter: Limiter,
    rate_limits: RateLimitSettings,
    tokens: TokenManager,
    policy: Policy,
    users: UserDirectory,
    store: Arc<dyn Store>,
    sessions: Sessions,
    passwords: Passwords,
    credentials: Credentials,
    issuers: crate::auth::issuers::Issuers,
    api_keys: ApiKeySettings,
    certs: crate::clientcert::CertMap,
}

fn world_with(settings: SessionSettings) -> World {
    let c = seed_config();
    let passwords = Passwords::new(&PasswordSettings { memory_kib: 1024, iterations: 1, ..Default::default() }).unwrap();
    let alice_hash = crate::auth::passwords::hash_blocking(
        &PasswordSettings { memory_kib: 1024, iterations: 1, ..Default::default() },
        "alice-password-123",
    )
    .unwrap();
    let users = UserDirectory::new(vec![
        crate::auth::users::FileUser {
            id: "u-alice".into(),
            email: "alice@example.com".into(),
            role: "user".into(),
            password_hash: alice_hash.clone(),
        },
        crate::auth::users::FileUser {
            id: "u-root".into(),
            email: "root@example.com".into(),
            role: "admin".into(),
            password_hash: alice_hash,
        },
    ]);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    World {
        limiter: Limiter::new(store.clone()),
        rate_limits: RateLimitSettings::default(),
        tokens: TokenManager::new(&c.tokens),
        policy: c.policy,
        users,
        store: store.clone(),
        sessions: Sessions::new(store.clone(), settings),
        passwords,
        credentials: Credentials::new(store, None),
        issuers: crate::auth::issuers::Issuers::new(Arc::new(pingora::connectors::http::Connector::new(None)), None),
        api_keys: ApiKeySettings { hasher: crate::apikey::KeyHasher::new(&[5; 32]), self_service: false, max_per_user: 3 },
        certs: Default::default(),
    }
}

fn world() -> World {
    world_with(SessionSettings::default())
}

impl World {
    fn cx(&self) -> ApiContext<'_> {
        ApiContext {
            tokens: &self.tokens,
            roles: &self.policy.roles,
            users: &self.users,
            user_store: self.store.as_ref(),
            sessions: &self.sessions,
            passwords: &self.passwords,
            revocation_ttl: 900,
            metrics: None,
            limiter: &self.limiter,
            rate_limits: &self.rate_limits,
            lockout: None,
            audit: None,
            credentials: &self.credentials,
            api_keys: Some(&self.api_keys),
            limit_names: vec!["burst"],
            identity_providers: &[],
        }
    }

    async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> ApiResponse {
        let auth = token.map(|t| format!("Bearer {t}"));
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        self.call_raw(method, path, auth.as_deref(), Some("application/json"), body.as_bytes()).await
    }

    /// Admission, then the endpoint: what the proxy does with a request to `/auth` or `/admin`.
    async fn call_raw(&self, method: Method, path: &str, auth: Option<&str>, content_type: Option<&str>, body: &[u8]) -> ApiResponse {
        let gate = crate::admission::Local { sessions: &self.sessions, credentials: &self.credentials, issuers: &self.issuers };
        let verifiers = crate::admission::Verifiers { tokens: &self.tokens, key_hasher: Some(&self.api_keys.hasher), certs: &self.certs };
        let presented = crate::admission::Presented { authorization: auth.map(str::as_bytes), ..Default::default() };
        let admitted = match admit(&self.policy, &verifiers, &gate, &method, path, &presented) {
            Ok(a) => a,
            Err(refused) => {
                let r = refused.reject;
                let mut e = ApiError::new(r.status, r.code, r.message);
                e.headers = r.headers;
                return answer(Err(e));
            }
        };
        let req = ApiRequest {
            method: &method,
            path: &admitted.path,
            content_type,
            user_agent: "test-agent/1.0",
            client_ip: "127.0.0.1",
            body,
            origin: Origin::default(),
            identity: admitted.identity.as_deref(),
        };
        self.dispatch(&admitted.route.target, &req).await
    }

    /// Serves an admitted request from the endpoint family its route names.
    async fn dispatch(&self, target: &Target, req: &ApiRequest<'_>) -> ApiResponse {
        answer(match target {
            Target::Gateway(Endpoint::Auth) => handle(&self.cx(), req).await,
            Target::Gateway(Endpoint::Users) => crate::auth::admin::handle(&self.cx(), req).await,
            Target::Gateway(Endpoint::ApiKeys) => crate::auth::keys_api::handle(&self.cx(), req).await,
            Target::Gateway(Endpoint::Revocations) => crate::auth::revocations::handle(&self.cx(), req).await,
            other => panic!("{} is not an endpoint of this module: {other:?}", req.path),
        })
    }

    async fn login(&self, email: &str, password: &str) -> (String, String) {
        let r = self.call(Method::POST, "/auth/login", None, Some(json!({"email": email, "password": password}))).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        (r.body["access_token"].as_str().unwrap().into(), r.body["refresh_token"].as_str().unwrap().into())
    }
}

#[tokio::test]
async fn login_returns_a_token_pair_for_a_session() {
    let w = world();
    let r = w.call(Method::POST, "/auth/login", None, Some(json!({"email": "Alice@Example.com", "password": "alice-password-123"}))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["token_type"], "bearer");
    assert_eq!(r.body["expires_in"], 900);
    let access = w.tokens.verify(r.body["access_token"].as_str().unwrap(), TokenKind::Access).unwrap();
    let refresh = w.tokens.verify(r.body["refresh_token"].as_str().unwrap(), TokenKind::Refresh).unwrap();
    assert_eq!((access.user_id.as_str(), access.role.as_deref()), ("u-alice", Some("user")));
    assert_eq!(access.sid, refresh.sid);
    let s = w.sessions.store().session(&access.sid).await.unwrap().unwrap();
    assert_eq!((s.user_agent.as_str(), s.ip.as_str(), s.refresh_jti.as_str()), ("test-agent/1.0", "127.0.0.1", refresh.jti.as_str()));
}

#[tokio::test]
async fn unknown_email_and_wrong_password_get_the_same_answer() {
    let w = world();
    let wrong = w.call(Method::POST, "/auth/login", None, Some(json!({"email": "alice@example.com", "password": "nope-nope-nope"}))).await;
    let unknown =
        w.call(Method::POST, "/auth/login", None, Some(json!({"email": "nobody@example.com", "password": "nope-nope-nope"}))).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong, unknown);
    assert_eq!(wrong.body["error"], "invalid_credentials");
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_refresh_token_ends_the_session() {
    let w = world();
    let (access, refresh1) = w.login("alice@example.com", "alice-password-123").await;
    let r = w.call(Method::POST, "/auth/refresh", None, Some(json!({"refresh_token": refresh1}))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let refresh2 = r.body["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(refresh1, refresh2);
    // The old one again: reuse.
    let r = w.call(Method::POST, "/auth/refresh", None, Some(json!({"refresh_token": refresh1}))).await;
    assert_eq!((r.status, r.body["error"].as_str()), (401, Some("refresh_token_reused")));
    // The whole session is over: the newest refresh token and the access token too.
    let r = w.call(Method::POST, "/auth/refresh", None, Some(json!({"refresh_token": refresh2}))).await;
    assert_eq!(r.status, 401);
    let r = w.call(Method::GET, "/auth/me", Some(&access), None).await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn refresh_refuses_access_tokens_and_garbage() {
    let w = world();
    let (access, _) = w.login("alice@example.com", "alice-password-123").await;
    for bad in [access.as_str(), "garbage", ""] {
        let r = w.call(Method::POST, "/auth/refresh", None, Some(json!({"refresh_token": bad}))).await;
        assert_eq!(r.status, 401, "{bad}");
        assert!(r.challenge);
    }
}

#[tokio::test]
async fn logout_ends_only_that_session_and_logout_all_ends_every_one() {
    let w = world();
    let (a1, r1) = w.login("alice@example.com", "alice-password-123").await;
    let (a2, _) = w.login("alice@example.com", "alice-password-123").await;
    let (a3, _) = w.login("alice@example.com", "alice-password-123").await;
    let r = w.call(Method::POST, "/auth/logout", Some(&a1), None).await;
    assert_eq!((r.status, &r.body), (200, &json!({"status": "logged_out"})));
    assert_eq!(w.call(Method::GET, "/auth/me", Some(&a1), None).await.status, 401);
    assert_eq!(w.call(Method::POST, "/auth/refresh", None, Some(json!({"refresh_token": r1}))).await.status, 401);
    assert_eq!(w.call(Method::GET, "/auth/me", Some(&a2), None).await.status, 200);
    let r = w.call(Method::POST, "/auth/logout-all", Some(&a2), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["sessions_revoked"], 2);
    assert_eq!(w.call(Method::GET, "/auth/me", Some(&a3), None).await.status, 401);
}

#[tokio::test]
async fn sessions_are_listed_with_the_current_one_marked_and_can_be_revoked_one_by_one() {
    let w = world();
    let (a1, _) = w.login("alice@example.com", "alice-password-123").await;
    let (a2, _) = w.login("alice@example.com", "alice-password-123").await;
    let (root, _) = w.login("root@example.com", "alice-password-123").await;
    let r = w.call(Method::GET, "/auth/sessions", Some(&a1), None).await;
    let list = r.body["sessions"].as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    let current: Vec<bool> = list.iter().map(|s| s["current"].as_bool().unwrap()).collect();
    assert_eq!(current.iter().filter(|c| **c).count(), 1);
    assert!(list[0]["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(list[0]["user_agent"], "test-agent/1.0");
    let sid2 = w.tokens.verify(&a2, TokenKind::Access).unwrap().sid;
    // Another user cannot end it.
    let r = w.call(Method::DELETE, &format!("/auth/sessions/{sid2}"), Some(&root), None).await;
    assert_eq!(r.status, 404);
    let r = w.call(Method::DELETE, &format!("/auth/sessions/{sid2}"), Some(&a1), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(w.call(Method::GET, "/auth/me", Some(&a2), None).await.status, 401);
    assert_eq!(w.call(Method::GET, "/auth/me", Some(&a1), None).await.status, 200);
}

#[tokio::test]
async fn me_tells_who_the_caller_is() {
    let w = world();
    let (a, _) = w.login("alice@example.com", "alice-password-123").await;
    let r = w.call(Method::GET, "/auth/me", Some(&a), None).await;
    let sid = w.tokens.verify(&a, TokenKind::Access).unwrap().sid;
    assert_eq!(r.body, json!({"user_id": "u-alice", "role": "user", "session_id": sid}));
    assert_eq!(w.call(Method::GET, "/auth/me", None, None).await.body["error"], "missing_token");
}

#[tokio::test]
async fn bad_bodies_are_400_naming_the_problem() {
    let w = world();
    let cases: Vec<(Option<&str>, &[u8], &str)> = vec![
        (Some("application/json"), b"{not json", "not valid JSON"),
        (Some("application/json"), b"", "not valid JSON"),
        (Some("application/json"), br#"{"email": "a@b.c"}"#, "missing field `password`"),
        (Some("application/json"), br#"{"email": 5, "password": "x"}"#, "field `email` has the wrong type"),
        (Some("application/json"), br#"[1,2]"#, "JSON object"),
        (Some("text/plain"), br#"{"email": "a@b.c", "password": "x"}"#, "content type must be application/json"),
        (None, br#"{"email": "a@b.c", "password": "x"}"#, "content type must be application/json"),
    ];
    for (ct, body, want) in cases {
        let r = w.call_raw(Method::POST, "/auth/login", None, ct, body).await;
        assert_eq!(r.status, 400, "{body:?}");
        assert_eq!(r.body["error"], "invalid_request");
        let msg = r.body["message"].as_str().unwrap();
        assert!(msg.contains(want), "{msg:?} should mention {want:?}");
    }
    let big = vec![b' '; MAX_BODY_BYTES + 1];
    let r = w.call_raw(Method::POST, "/auth/login", None, Some("application/json"), &big).await;
    assert_eq!(r.status, 400);
    assert!(r.body["message"].as_str().unwrap().contains("larger than"));
}

#[tokio::test]
async fn methods_and_unknown_paths() {
    let w = world();
    assert_eq!(w.call(Method::GET, "/auth/login", None, None).await.status, 405);
    assert_eq!(w.call(Method::GET, "/auth/nope", None, None).await.status, 404);
    assert_eq!(w.call(Method::PUT, "/admin/users", None, None).await.status, 401, "admission comes first");
    let (root, _) = w.login("root@example.com", "alice-password-123").await;
    assert_eq!(w.call(Method::PUT, "/admin/users", Some(&root), None).await.status, 405);
    assert_eq!(w.call(Method::GET, "/admin/users/a/b", Some(&root), None).await.status, 404);
}

#[tokio::test]
async fn admins_manage_users_and_nobody_else_can() {
    let w = world();
    let (root, _) = w.login("root@example.com", "alice-password-123").await;
    let (alice, _) = w.login("alice@example.com", "alice-password-123").await;
    let new = json!({"email": "bob@example.com", "password": "bob-password-123", "role": "viewer"});
    assert_eq!(w.call(Method::POST, "/admin/users", Some(&alice), Some(new.clone())).await.status, 403);
    assert_eq!(w.call(Method::GET, "/admin/users", None, None).await.status, 401);
    let r = w.call(Method::POST, "/admin/users", Some(&root), Some(new.clone())).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let bob_id = r.body["id"].as_str().unwrap().to_string();
    assert!(r.body.get("password_hash").is_none());
    assert_eq!(w.call(Method::POST, "/admin/users", Some(&root), Some(new)).await.status, 409);

    let r = w.call(Method::GET, "/admin/users", Some(&root), None).await;
    let listed = r.body.to_string();
    assert!(listed.contains("bob@example.com") && listed.contains("alice@example.com"));
    assert!(!listed.contains("argon2"), "hashes are never listed");

    let (bob, bob_refresh) = w.login("bob@example.com", "bob-password-123").await;
    assert_eq!(w.tokens.verify(&bob, TokenKind::Access).unwrap().role.as_deref(), Some("viewer"));
    let r = w.call(Method::PATCH, &format!("/admin/users/{bob_id}"), Some(&root), Some(json!({"role": "user"}))).await;
    assert_eq!((r.status, r.body["role"].as_str()), (200, Some("user")));
    // The session picks the new role up at its next refresh.
    let r = w.call(Method::POST, "/auth/refresh", None, Some(json!({"refresh_token": bob_refresh}))).await;
    let new_access = r.body["access_token"].as_str().unwrap();
    assert_eq!(w.tokens.verify(new_access, TokenKind::Access).unwrap().role.as_deref(), Some("user"));

    let r = w.call(Method::PATCH, "/admin/users/u-alice", Some(&root), Some(json!({"role": "admin"}))).await;
    assert_eq!(r.status, 409, "file users are changed in the file");
    let r = w.call(Method::PATCH, &format!("/admin/users/{bob_id}"), Some(&root), Some(json!({"role": "emperor"}))).await;
    assert_eq!(r.status, 400);

    let r = w.call(Method::DELETE, &format!("/admin/users/{bob_id}"), Some(&root), None).await;
    assert_eq!((r.status, r.body["sessions_revoked"].as_u64()), (200, Some(1)));
    assert_eq!(w.call(Method::GET, "/auth/me", Some(new_access), None).await.status, 401);
    let r = w.call(Method::POST, "/auth/login", None, Some(json!({"email": "bob@example.com", "password": "bob-password-123"}))).await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn new_passwords_must_follow_the_policy() {
    let w = world();
    let (root, _) = w.login("root@example.com", "alice-password-123").await;
    let cases = [
        (json!({"email": "c@example.com", "password": "short", "role": "user"}), "at least 12"),
        (json!({"email": "carol.long@example.com", "password": "carol.long@example.com", "role": "user"}), "email"),
        (json!({"email": "not-an-email", "password": "long enough password", "role": "user"}), "email"),
    ];
    for (body, want) in cases {
        let r = w.call(Method::POST, "/admin/users", Some(&root), Some(body)).await;
        assert_eq!(r.status, 400);
        assert!(r.body["message"].as_str().unwrap().contains(want), "{:?}", r.body);
    }
}

#[tokio::test]
async fn role_changes_can_revoke_sessions_at_once() {
    let w = world_with(SessionSettings { on_role_change: RoleChange::Revoke, ..Default::default() });
    let (root, _) = w.login("root@example.com", "alice-password-123").await;
    let r = w
        .call(
            Method::POST,
            "/admin/users",
            Some(&root),
            Some(json!({"email": "d@example.com", "password": "dave-password-123", "role": "user"})),
        )
        .await;
    let id = r.body["id"].as_str().unwrap().to_string();
    let (dave, _) = w.login("d@example.com", "dave-password-123").await;
    w.call(Method::PATCH, &format!("/admin/users/{id}"), Some(&root), Some(json!({"role": "viewer"}))).await;
    assert_eq!(w.call(Method::GET, "/auth/me", Some(&dave), None).await.status, 401);
}

#[tokio::test]
async fn one_store_failure_in_an_endpoint_is_counted_once() {
    let w = world();
    let m = crate::metrics::Metrics::new();
    let sessions = Sessions::new(w.store.clone(), SessionSettings::default()).with_metrics(Some(m.clone()));
    let cx = ApiContext { metrics: Some(&m), sessions: &sessions, ..w.cx() };
    let e = store_failed(&cx, StoreError::Unavailable("down".into()));
    assert_eq!(e.status, 503);
    let text = String::from_utf8(m.render()).unwrap();
    assert!(text.contains(r#"portcullis_store_errors_total{op="api"} 1"#), "{text}");
    assert!(!text.contains(r#"op="sync""#), "not counted a second time as the sync's: {text}");
    assert!(!sessions.store_healthy(), "readiness sees the store down at once");
}

// --- API keys and the denylist ---

impl World {
    /// A request that presents an API key in `X-Api-Key`.
    async fn call_with_key(&self, method: Method, path: &str, key: &str) -> ApiResponse {
        let gate = crate::admission::Local { sessions: &self.sessions, credentials: &self.credentials, issuers: &self.issuers };
        let verifiers = crate::admission::Verifiers { tokens: &self.tokens, key_hasher: Some(&self.api_keys.hasher), certs: &self.certs };
        let presented = crate::admission::Presented { api_key: Some(key.as_bytes()), ..Default::default() };
        match admit(&self.policy, &verifiers, &gate, &method, path, &presented) {
            Ok(a) => {
                let req = ApiRequest {
                    method: &method,
                    path: &a.path,
                    content_type: Some("application/json"),
                    user_agent: "t",
                    client_ip: "127.0.0.1",
                    body: br#"{"name": "k"}"#,
                    origin: Origin::default(),
                    identity: a.identity.as_deref(),
                };
                self.dispatch(&a.route.target, &req).await
            }
            Err(r) => answer(Err(ApiError::new(r.reject.status, r.reject.code, r.reject.message))),
        }
    }
}

#[tokio::test]
async fn an_admin_creates_lists_and_revokes_keys_and_the_key_is_shown_once() {
    let w = world();
    let (admin, _) = w.login("root@example.com", "alice-password-123").await;
    let body = json!({"name": "ci", "user_id": "build-bot", "role": "user", "scopes": ["projects.read"], "expires_in_days": 30});
    let r = w.call(Method::POST, "/admin/api-keys", Some(&admin), Some(body)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let key = r.body["key"].as_str().unwrap().to_string();
    let id = r.body["id"].as_str().unwrap().to_string();
    assert!(key.starts_with("pcs_") && key.contains(&id));
    assert_eq!(r.body["last4"], json!(&key[key.len() - 4..]));
    assert!(r.body["expires_at"].is_string());
    let me = w.call_with_key(Method::GET, "/auth/me", &key).await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(
        (me.body["user_id"].as_str(), me.body["role"].as_str(), me.body["api_key_id"].as_str()),
        (Some("build-bot"), Some("user"), Some(id.as_str()))
    );
    let list = w.call(Method::GET, "/admin/api-keys", Some(&admin), None).await;
    let listed = list.body["api_keys"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0]["last_used_at"].is_string(), "the use above is listed");
    let text = list.body.to_string();
    assert!(!text.contains(&key[17..60]), "a listing never holds the key");
    assert!(!text.contains("hash"), "nor its hash");
    let stored = w.store.records(crate::store::Registry::ApiKeys).await.unwrap().join("");
    assert!(!stored.contains(&key[17..60]), "the store never holds the key");
    assert_eq!(w.call(Method::DELETE, &format!("/admin/api-keys/{id}"), Some(&admin), None).await.status, 200);
    assert_eq!(w.call(Method::DELETE, &format!("/admin/api-keys/{id}"), Some(&admin), None).await.status, 404);
    assert_eq!(w.call(Method::DELETE, "/admin/api-keys/nope", Some(&admin), None).await.status, 404);
    let refused = w.call_with_key(Method::GET, "/auth/me", &key).await;
    assert_eq!((refused.status, refused.body["error"].as_str()), (401, Some("invalid_api_key")));
}

#[tokio::test]
async fn bad_key_requests_are_400_naming_the_field() {
    let w = world();
    let (admin, _) = w.login("root@example.com", "alice-password-123").await;
    let cases = [
        (json!({"name": "x", "user_id": "b", "role": "emperor"}), "role"),
        (json!({"name": "x", "user_id": "b", "role": "user", "expires_in_days": -1}), "expires_in_days"),
        (json!({"name": "x", "user_id": "b", "role": "user", "expires_in_days": 0}), "expires_in_days"),
        (json!({"name": "x", "user_id": "b", "role": "user", "colour": "red"}), "colour"),
        (json!({"name": "x", "user_id": "b", "role": "user", "rate_limit": "nope"}), "rate_limit"),
        (json!({"name": "", "user_id": "b", "role": "user"}), "name"),
        (json!({"name": "x", "user_id": "has space", "role": "user"}), "user_id"),
        (json!({"name": "x", "role": "user"}), "user_id"),
        (json!({"name": "x", "user_id": "b", "role": "user", "scopes": ["a b"]}), "scopes"),
    ];
    for (body, field) in cases {
        let r = w.call(Method::POST, "/admin/api-keys", Some(&admin), Some(body.clone())).await;
        assert_eq!(r.status, 400, "{body}");
        assert!(r.body["message"].as_str().unwrap().contains(&format!("`{field}`")), "{body}: {:?}", r.body);
    }
    assert!(w.credentials.keys_with_uses().await.unwrap().is_empty(), "nothing was created");
}

#[tokio::test]
async fn self_service_keys_are_off_by_default_and_capped_by_the_callers_role() {
    let mut w = world();
    let (alice, _) = w.login("alice@example.com", "alice-password-123").await;
    let r = w.call(Method::POST, "/auth/api-keys", Some(&alice), Some(json!({"name": "mine"}))).await;
    assert_eq!((r.status, r.body["error"].as_str()), (403, Some("self_service_disabled")));
    w.api_keys.self_service = true;
    let above = w.call(Method::POST, "/auth/api-keys", Some(&alice), Some(json!({"name": "mine", "role": "admin"}))).await;
    assert_eq!(above.status, 400, "{:?}", above.body);
    let other = w.call(Method::POST, "/auth/api-keys", Some(&alice), Some(json!({"name": "mine", "user_id": "u-root"}))).await;
    assert_eq!(other.status, 400);
    let mine = w.call(Method::POST, "/auth/api-keys", Some(&alice), Some(json!({"name": "mine", "role": "viewer"}))).await;
    assert_eq!(mine.status, 201, "{:?}", mine.body);
    assert_eq!(mine.body["user_id"], json!("u-alice"));
    let key = mine.body["key"].as_str().unwrap().to_string();
    let id = mine.body["id"].as_str().unwrap().to_string();
    // A key cannot make keys.
    let r = w.call_with_key(Method::POST, "/auth/api-keys", &key).await;
    assert_eq!(r.status, 403);
    // The owner lists and revokes their own; others do not see it.
    let (admin, _) = w.login("root@example.com", "alice-password-123").await;
    let theirs = w.call(Method::GET, "/auth/api-keys", Some(&admin), None).await;
    assert_eq!(theirs.body["api_keys"], json!([]));
    assert_eq!(w.call(Method::DELETE, &format!("/auth/api-keys/{id}"), Some(&admin), None).await.status, 404, "someone else's key");
    let own = w.call(Method::GET, "/auth/api-keys", Some(&alice), None).await;
    assert_eq!(own.body["api_keys"].as_array().unwrap().len(), 1);
    assert_eq!(w.call(Method::DELETE, &format!("/auth/api-keys/{id}"), Some(&alice), None).await.status, 200);
    // The per-user cap.
    for _ in 0..3 {
        assert_eq!(w.call(Method::POST, "/auth/api-keys", Some(&alice), Some(json!({"name": "k"}))).await.status, 201);
    }
    let r = w.call(Method::POST, "/auth/api-keys", Some(&alice), Some(json!({"name": "k"}))).await;
    assert_eq!((r.status, r.body["error"].as_str()), (409, Some("too_many_keys")));
}

#[tokio::test]
async fn a_user_revocation_ends_sessions_refuses_logins_and_keys_until_lifted() {
    let w = world();
    let (admin, _) = w.login("root@example.com", "alice-password-123").await;
    let (alice, alice_refresh) = w.login("alice@example.com", "alice-password-123").await;
    let made =
        w.call(Method::POST, "/admin/api-keys", Some(&admin), Some(json!({"name": "a", "user_id": "u-alice", "role": "user"}))).await;
    let key = made.body["key"].as_str().unwrap().to_string();
    let r = w.call(Method::POST, "/admin/revocations", Some(&admin), Some(json!({"user_id": "u-alice", "reason": "laptop stolen"}))).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["sessions_revoked"], json!(1));
    assert!(r.body["expires_at"].is_null(), "a user entry holds until lifted");
    let entry = r.body["id"].as_str().unwrap().to_string();
    let me = w.call(Method::GET, "/auth/me", Some(&alice), None).await;
    assert_eq!((me.status, me.body["error"].as_str()), (401, Some("revoked")));
    assert_eq!(w.call_with_key(Method::GET, "/auth/me", &key).await.body["error"], json!("revoked"));
    let login =
        w.call(Method::POST, "/auth/login", None, Some(json!({"email": "alice@example.com", "password": "alice-password-123"}))).await;
    assert_eq!((login.status, login.body["error"].as_str()), (401, Some("revoked")));
    let refresh = w.call(Method::POST, "/auth/refresh", None, Some(json!({"refresh_token": alice_refresh}))).await;
    assert_eq!(refresh.status, 401);
    let list = w.call(Method::GET, "/admin/revocations", Some(&admin), None).await;
    assert_eq!(list.body["revocations"][0]["user_id"], json!("u-alice"));
    assert_eq!(list.body["revocations"][0]["reason"], json!("laptop stolen"));
    assert_eq!(w.call(Method::DELETE, &format!("/admin/revocations/{entry}"), Some(&admin), None).await.status, 200);
    assert_eq!(w.call(Method::DELETE, &format!("/admin/revocations/{entry}"), Some(&admin), None).await.status, 404);
    assert_eq!(w.call_with_key(Method::GET, "/auth/me", &key).await.status, 200, "lifted");
    w.login("alice@example.com", "alice-password-123").await;
}

#[tokio::test]
async fn a_jti_entry_expires_with_the_longest_access_lifetime_and_bad_entries_are_400() {
    let w = world();
    let (admin, _) = w.login("root@example.com", "alice-password-123").await;
    let (alice, _) = w.login("alice@example.com", "alice-password-123").await;
    let jti = w.tokens.verify(&alice, crate::auth::TokenKind::Access).unwrap().jti;
    let r = w.call(Method::POST, "/admin/revocations", Some(&admin), Some(json!({"jti": jti, "reason": "leaked in a log"}))).await;
    assert_eq!(r.status, 201);
    let entry = &w.credentials.entries().await.unwrap()[0];
    assert_eq!(entry.expires_at, Some(entry.created_at + 900));
    assert_eq!(w.call(Method::GET, "/auth/me", Some(&alice), None).await.body["error"], json!("revoked"));
    let bad = [
        json!({"reason": "none given"}),
        json!({"user_id": "a", "jti": "b", "reason": "two given"}),
        json!({"user_id": "a"}),
        json!({"user_id": "a", "reason": ""}),
        json!({"user_id": "a", "reason": "r", "duration_seconds": 0}),
        json!({"user_id": "a", "reason": "r", "colour": 1}),
        json!({"issuer": "corp", "reason": "no such provider"}),
    ];
    for body in bad {
        assert_eq!(w.call(Method::POST, "/admin/revocations", Some(&admin), Some(body.clone())).await.status, 400, "{body}");
    }
    assert_eq!(w.credentials.entries().await.unwrap().len(), 1, "nothing else was added");
    let (user, _) = w.login("alice@example.com", "alice-password-123").await;
    assert_eq!(w.call(Method::GET, "/admin/revocations", Some(&user), None).await.status, 403, "admins only");
}

#[tokio::test]
async fn a_users_keys_follow_the_user_demoted_or_deleted() {
    let w = world();
    let (root, _) = w.login("root@example.com", "alice-password-123").await;
    let new = json!({"email": "carol@example.com", "password": "carol-password-123", "role": "admin"});
    let carol = w.call(Method::POST, "/admin/users", Some(&root), Some(new)).await.body["id"].as_str().unwrap().to_string();
    let key = |role: &str| {
        let body = json!({"name": role, "user_id": carol, "role": role});
        let w = &w;
        let root = root.clone();
        async move { w.call(Method::POST, "/admin/api-keys", Some(&root), Some(body)).await.body["key"].as_str().unwrap().to_string() }
    };
    let (admin_key, user_key) = (key("admin").await, key("user").await);
    let r = w.call(Method::PATCH, &format!("/admin/users/{carol}"), Some(&root), Some(json!({"role": "user"}))).await;
    assert_eq!(r.status, 200);
    assert_eq!(w.call_with_key(Method::GET, "/auth/me", &admin_key).await.status, 401, "a key above the new role is revoked");
    assert_eq!(w.call_with_key(Method::GET, "/auth/me", &user_key).await.status, 200);
    let r = w.call(Method::DELETE, &format!("/admin/users/{carol}"), Some(&root), None).await;
    assert_eq!((r.status, r.body["api_keys_revoked"].as_u64()), (200, Some(1)));
    assert_eq!(w.call_with_key(Method::GET, "/auth/me", &user_key).await.status, 401, "a deleted user's keys go with them");
}
