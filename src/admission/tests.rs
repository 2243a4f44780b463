use super::*;
use crate::apikey::{generate, to_hex};
use crate::auth::denylist::{DenyEntry, Denylist};
use crate::auth::keys::{ApiKeyRecord, KeyView};
use crate::auth::tokens::TokenSpec;
use crate::clientcert::CertIdentity;
use crate::config::tests::seed_config;
use crate::policy::{Endpoint, Target};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

struct Fixture {
    policy: Policy,
    tokens: TokenManager,
    revoked: TestGate,
    hasher: KeyHasher,
    certs: CertMap,
}

/// The local views as plain values: revoked sessions, known keys, the denylist; and how many
/// key lookups were made.
#[derive(Default)]
struct TestGate {
    sessions: Vec<String>,
    keys: KeyView,
    deny: Denylist,
    lookups: AtomicUsize,
}

impl Gate for TestGate {
    fn session(&self, session_id: &str) -> Result<(), SessionVeto> {
        if self.sessions.iter().any(|s| s == session_id) {
            Err(SessionVeto::Revoked)
        } else {
            Ok(())
        }
    }

    fn api_key(&self, hasher: &KeyHasher, key: PresentedKey<'_>) -> Result<Arc<KeyEntry>, KeyRefusal> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        crate::auth::keys::check_key(&self.keys, hasher, key, crate::clock::unix_now()).cloned()
    }

    fn denied(&self, identity: &Identity) -> Option<Subject> {
        self.deny.denies(identity, crate::clock::unix_now())
    }
}

fn fixture() -> Fixture {
    let c = seed_config();
    let revoked = TestGate { sessions: vec!["revoked-session".into()], ..TestGate::default() };
    let certs = CertMap::new([("CN=build-bot,O=Example".to_string(), CertIdentity { user_id: "bot".into(), role: "admin".into() })]);
    Fixture { tokens: TokenManager::new(&c.tokens), policy: c.policy, revoked, hasher: KeyHasher::new(&[9; 32]), certs }
}

impl Fixture {
    fn token(&self, role: &str) -> String {
        self.tokens.create_access_token("u1", role, "s1").unwrap()
    }

    fn check(
        &self,
        method: &str,
        path: &str,
        auth: Option<String>,
    ) -> Result<(String, Option<Identity>), (u16, &'static str, &'static str)> {
        let presented = Presented { authorization: auth.as_deref().map(str::as_bytes), ..Presented::default() };
        self.judge(method, path, &presented)
    }

    fn verifiers(&self) -> Verifiers<'_> {
        Verifiers { tokens: &self.tokens, key_hasher: Some(&self.hasher), certs: &self.certs }
    }

    fn judge(
        &self,
        method: &str,
        path: &str,
        presented: &Presented<'_>,
    ) -> Result<(String, Option<Identity>), (u16, &'static str, &'static str)> {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        match admit(&self.policy, &self.verifiers(), &self.revoked, &m, path, presented) {
            Ok(a) if matches!(a.route.target, Target::Gateway(_)) => Ok((format!("api:{}", a.path), a.identity.map(|i| (*i).clone()))),
            Ok(a) => Ok((a.route.name.clone(), a.identity.map(|i| (*i).clone()))),
            Err(r) => Err((r.reject.status, r.reject.code, r.reject.reason)),
        }
    }
}

fn bearer(t: &str) -> Option<String> {
    Some(format!("Bearer {t}"))
}

#[test]
fn decisions_for_each_role_on_each_seed_route() {
    let f = fixture();
    // method, path, role, expected status (200 = admitted)
    let table = [
        ("POST", "/admin/settings", "admin", 200),
        ("POST", "/admin/settings", "user", 403),
        ("POST", "/admin/settings", "guest", 403),
        ("DELETE", "/projects/1", "admin", 200),
        ("DELETE", "/projects/1", "user", 403),
        ("GET", "/projects/1", "viewer", 200),
        ("GET", "/projects/1", "user", 200),
        ("GET", "/projects/1", "guest", 403),
        ("GET", "/profile", "guest", 200),
        ("GET", "/profile", "admin", 200),
        ("GET", "/profile", "superuser", 403),
        ("GET", "/public/readme", "nobody", 200),
        ("GET", "/nowhere", "admin", 404),
        ("PUT", "/projects/1", "admin", 404),
    ];
    for (m, p, role, want) in table {
        let got = match f.check(m, p, bearer(&f.token(role))) {
            Ok(_) => 200,
            Err((s, _, _)) => s,
        };
        assert_eq!(got, want, "{m} {p} as {role}");
    }
}

#[test]
fn tricky_paths_are_judged_after_normalization() {
    let f = fixture();
    let user = bearer(&f.token("user"));
    for p in ["/projects/../admin/settings", "//admin/settings", "/%61dmin/settings", "/x/%2e%2e/admin/settings"] {
        assert_eq!(f.check("POST", p, user.clone()), Err((403, "forbidden", "insufficient_role")), "{p}");
        assert!(f.check("POST", p, bearer(&f.token("admin"))).is_ok(), "{p}");
    }
    for p in ["/admin%2fsettings", "/admin\\settings", "/a%zz", "/a%00"] {
        assert_eq!(f.check("POST", p, user.clone()).map_err(|e| e.0), Err(400), "{p}");
    }
}

#[test]
fn token_problems_are_401_with_a_reason() {
    let f = fixture();
    let cases = [
        (None, "missing_token", "missing"),
        (Some("Basic abc".to_string()), "invalid_token", "malformed"),
        (Some(String::new()), "invalid_token", "malformed"),
        (bearer("not.a.jwt"), "invalid_token", "malformed"),
        (bearer(&f.tokens.create_refresh_token("u1", "s1").unwrap()), "invalid_token", "wrong_type"),
    ];
    for (auth, code, reason) in cases {
        assert_eq!(f.check("GET", "/profile", auth.clone()), Err((401, code, reason)), "{auth:?}");
    }
    let spec = TokenSpec {
        user_id: "u",
        role: Some("admin"),
        kind: crate::auth::TokenKind::Access,
        session_id: "s",
        ttl: Some(Duration::from_secs(1)),
        jti: None,
    };
    let expired = f.tokens.create_token_at(&spec, crate::clock::unix_now() - 100).unwrap();
    assert_eq!(f.check("GET", "/profile", bearer(&expired)), Err((401, "invalid_token", "expired")));
}

#[test]
fn public_routes_need_no_token_and_yield_no_identity() {
    let f = fixture();
    assert_eq!(f.check("GET", "/public/a", None), Ok(("docs".into(), None)));
    assert_eq!(f.check("GET", "/public/a", Some("garbage".into())), Ok(("docs".into(), None)));
}

#[test]
fn admitted_requests_carry_the_verified_identity() {
    let f = fixture();
    let (route, id) = f.check("GET", "/profile", bearer(&f.token("viewer"))).unwrap();
    assert_eq!(route, "profile");
    let id = id.unwrap();
    assert_eq!((id.user_id.as_str(), id.role.as_deref(), id.session_id()), ("u1", Some("viewer"), Some("s1")));
}

#[test]
fn revoked_sessions_are_401_on_protected_routes_only() {
    let f = fixture();
    let t = f.tokens.create_access_token("u1", "admin", "revoked-session").unwrap();
    assert_eq!(f.check("GET", "/profile", bearer(&t)), Err((401, "invalid_token", "revoked")));
    assert!(f.check("GET", "/public/x", bearer(&t)).is_ok());
}

#[test]
fn the_gateways_own_endpoints_are_recognized_after_normalization() {
    let f = fixture();
    assert_eq!(f.check("POST", "/auth/login", None), Ok(("api:/auth/login".into(), None)));
    assert_eq!(f.check("POST", "/x/../auth//login", None), Ok(("api:/auth/login".into(), None)));
    assert_eq!(f.check("GET", "/admin/users/7", None).map_err(|e| e.0), Err(401), "admin endpoints need a token");
    let admin = bearer(&f.token("admin"));
    assert_eq!(f.check("GET", "/admin//users/./7", admin).map(|(r, _)| r), Ok("api:/admin/users/7".into()));
    assert_eq!(f.check("POST", "/admin/settings", None).map_err(|e| e.0), Err(401));
}

#[test]
fn the_gateways_own_endpoints_are_admitted_like_any_route() {
    let f = fixture();
    // A token problem on an endpoint is the same 401 as on a proxied route.
    assert_eq!(f.check("POST", "/auth/logout", None), Err((401, "missing_token", "missing")));
    assert_eq!(f.check("GET", "/auth/me", bearer("not.a.jwt")), Err((401, "invalid_token", "malformed")));
    let revoked = f.tokens.create_access_token("u1", "admin", "revoked-session").unwrap();
    assert_eq!(f.check("GET", "/auth/me", bearer(&revoked)), Err((401, "invalid_token", "revoked")));
    // Any verified caller may use /auth; /admin needs the admin role.
    let (_, who) = f.check("GET", "/auth/me", bearer(&f.token("guest"))).unwrap();
    assert_eq!(who.map(|i| i.role), Some(Some("guest".into())));
    assert_eq!(f.check("GET", "/admin/users", bearer(&f.token("user"))), Err((403, "forbidden", "insufficient_role")));
    assert!(f.check("GET", "/admin/users", bearer(&f.token("admin"))).is_ok());
    // A refusal after authentication says who was refused and on which route.
    let m = Method::GET;
    let auth = bearer(&f.token("user"));
    let presented = Presented { authorization: auth.as_deref().map(str::as_bytes), ..Presented::default() };
    let refused = admit(&f.policy, &f.verifiers(), &f.revoked, &m, "/admin/providers", &presented).unwrap_err();
    assert_eq!(refused.identity.map(|i| i.user_id.clone()), Some("u1".into()));
    let route = refused.route.and_then(|id| f.policy.get(id)).map(|r| r.target.clone());
    assert_eq!(route, Some(Target::Gateway(Endpoint::Providers)));
}

impl Fixture {
    /// Adds a key for `bot` with `role` and `scopes`; returns the key.
    fn key(&mut self, role: &str, scopes: Option<&[&str]>) -> String {
        let (key, id) = generate().unwrap();
        let record = ApiKeyRecord {
            id: id.clone(),
            name: "ci".into(),
            user_id: "bot".into(),
            role: role.into(),
            scopes: scopes.map(|s| s.iter().map(|x| x.to_string()).collect()),
            hash: to_hex(&self.hasher.hash(&key)),
            last4: key[62..].into(),
            created_at: 0,
            created_by: "admin".into(),
            expires_at: None,
            rate_limit: None,
        };
        self.revoked.keys.insert(id, Arc::new(KeyEntry::new(record).unwrap()));
        key
    }

    fn with_key_header(
        &self,
        method: &str,
        path: &str,
        key: &str,
    ) -> Result<(String, Option<Identity>), (u16, &'static str, &'static str)> {
        self.judge(method, path, &Presented { api_key: Some(key.as_bytes()), ..Presented::default() })
    }
}

#[test]
fn an_api_key_is_authorized_like_a_token_in_either_header() {
    let mut f = fixture();
    let viewer = f.key("viewer", None);
    let (route, who) = f.with_key_header("GET", "/projects/1", &viewer).unwrap();
    assert_eq!(route, "projects-read");
    let who = who.unwrap();
    assert_eq!((who.user_id.as_str(), who.role.as_deref(), who.session_id()), ("bot", Some("viewer"), None));
    assert!(who.api_key_id().is_some());
    assert_eq!(f.check("GET", "/projects/1", bearer(&viewer)).map(|(r, _)| r), Ok("projects-read".into()));
    assert_eq!(f.with_key_header("DELETE", "/projects/1", &viewer), Err((403, "forbidden", "insufficient_role")));
    // X-Api-Key wins over a token in Authorization (which may be meant for the upstream).
    let presented = Presented { api_key: Some(viewer.as_bytes()), authorization: Some(b"Bearer whatever"), client_cert: None };
    assert!(f.judge("GET", "/projects/1", &presented).is_ok());
    // An X-Api-Key that is not ours (an SDK's own provider key) never hides the token.
    let token = bearer(&f.token("admin"));
    let sdk = Presented { api_key: Some(b"sk-ant-provider-key"), authorization: token.as_deref().map(str::as_bytes), client_cert: None };
    assert_eq!(sdk.kind(), Some(Presenting::Token));
    let (_, who) = f.judge("DELETE", "/projects/1", &sdk).unwrap();
    assert_eq!(who.unwrap().user_id, "u1");
    // Alone, it is a malformed key.
    assert_eq!(f.with_key_header("GET", "/profile", "sk-ant-provider-key"), Err((401, "invalid_api_key", "malformed_key")));
}

#[test]
fn malformed_keys_are_refused_without_a_lookup() {
    let mut f = fixture();
    let key = f.key("admin", None);
    let mut typo = key.clone().into_bytes();
    typo[30] = if typo[30] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    for bad in [&key[..65], typo.as_str(), "pcs_short", "pcs_\u{e9}", ""] {
        assert_eq!(f.with_key_header("GET", "/profile", bad), Err((401, "invalid_api_key", "malformed_key")), "{bad}");
        assert_eq!(f.check("GET", "/profile", bearer(bad)).map_err(|e| e.0), Err(401), "{bad}");
    }
    assert_eq!(
        f.judge("GET", "/profile", &Presented { api_key: Some(b"pcs_\xff"), ..Presented::default() }).map_err(|e| e.1),
        Err("invalid_api_key")
    );
    assert_eq!(f.revoked.lookups.load(Ordering::Relaxed), 0, "no lookup for a key that is not a key");
    let (unknown, _) = generate().unwrap();
    assert_eq!(f.with_key_header("GET", "/profile", &unknown), Err((401, "invalid_api_key", "unknown_key")));
    assert_eq!(f.revoked.lookups.load(Ordering::Relaxed), 1);
}

#[test]
fn keys_are_refused_when_api_keys_are_not_enabled() {
    let mut f = fixture();
    let key = f.key("admin", None);
    let verifiers = Verifiers { key_hasher: None, ..f.verifiers() };
    let presented = Presented { api_key: Some(key.as_bytes()), ..Presented::default() };
    let refused = admit(&f.policy, &verifiers, &f.revoked, &Method::GET, "/profile", &presented).unwrap_err();
    assert_eq!((refused.reject.status, refused.reject.code), (401, "invalid_api_key"));
}

#[test]
fn the_denylist_cuts_off_tokens_keys_and_users_with_401_revoked() {
    let mut f = fixture();
    let key = f.key("admin", None);
    let token = f.token("admin");
    assert!(f.check("GET", "/profile", bearer(&token)).is_ok());
    let jti = f.tokens.verify(&token, crate::auth::TokenKind::Access).unwrap().jti;
    let key_id = crate::apikey::parse(&key).unwrap().id().to_string();
    let entry = |subject, value: &str| DenyEntry {
        id: value.into(),
        subject,
        value: value.into(),
        reason: "test".into(),
        created_by: "admin".into(),
        created_at: 0,
        expires_at: None,
    };
    f.revoked.deny = Denylist::new(&[entry(Subject::Jti, &jti)], 1);
    assert_eq!(f.check("GET", "/profile", bearer(&token)), Err((401, "revoked", "revoked")));
    assert!(f.check("GET", "/profile", bearer(&f.token("admin"))).is_ok(), "another token of the same user");
    assert!(f.with_key_header("GET", "/profile", &key).is_ok());
    f.revoked.deny = Denylist::new(&[entry(Subject::ApiKeyId, &key_id)], 1);
    assert_eq!(f.with_key_header("GET", "/profile", &key), Err((401, "revoked", "revoked")));
    f.revoked.deny = Denylist::new(&[entry(Subject::UserId, "u1")], 1);
    assert_eq!(f.check("GET", "/profile", bearer(&f.token("admin"))), Err((401, "revoked", "revoked")));
    assert!(f.check("GET", "/public/x", bearer(&token)).is_ok(), "public routes read no credential");
}

#[test]
fn scoped_credentials_need_every_scope_a_route_requires() {
    let mut f = fixture();
    let route = |scopes: &[&str]| {
        let mut r = f.policy.routes.routes()[0].clone();
        r.require_scopes = scopes.iter().map(|s| s.to_string()).collect();
        r
    };
    let r = route(&["projects.read", "projects.list"]);
    let scoped = Identity {
        user_id: "bot".into(),
        role: Some("admin".into()),
        credential: Credential::ApiKey { id: "k".into() },
        scopes: Some(vec!["projects.read".into()]),
    };
    assert_eq!(scoped.missing_scopes(&r.require_scopes), vec!["projects.list"]);
    let unscoped = Identity { scopes: None, ..scoped.clone() };
    assert!(unscoped.missing_scopes(&r.require_scopes).is_empty(), "a credential without scopes is limited by its role only");
    // Through admission: a route of the seed config with scopes required.
    let i = f.policy.routes.routes().iter().position(|r| r.name == "profile").unwrap();
    let mut routes: Vec<_> = f.policy.routes.routes().to_vec();
    routes[i].require_scopes = vec!["profile.read".into()];
    let table = crate::policy::RouteTable::new(
        routes.into_iter().map(|r| (crate::policy::routes::parse_pattern(&r.pattern).unwrap(), None, r)).collect(),
    );
    f.policy = Policy::new(
        crate::policy::Roles::new([("admin".to_string(), 3), ("user".to_string(), 2), ("viewer".to_string(), 1), ("guest".to_string(), 0)]),
        table,
        "admin",
    );
    let narrow = f.key("admin", Some(&["other"]));
    let wide = f.key("admin", Some(&["profile.read"]));
    let plain = f.key("admin", None);
    let refused = admit(
        &f.policy,
        &f.verifiers(),
        &f.revoked,
        &Method::GET,
        "/profile",
        &Presented { api_key: Some(narrow.as_bytes()), ..Presented::default() },
    )
    .unwrap_err();
    assert_eq!((refused.reject.status, refused.reject.code), (403, "insufficient_scope"));
    let challenge = refused.reject.headers.iter().find(|(n, _)| *n == "www-authenticate").map(|(_, v)| v.as_str());
    assert_eq!(challenge, Some(r#"Bearer realm="portcullis", error="insufficient_scope", scope="profile.read""#));
    assert!(f.with_key_header("GET", "/profile", &wide).is_ok());
    assert!(f.with_key_header("GET", "/profile", &plain).is_ok());
    assert!(f.check("GET", "/profile", bearer(&f.token("viewer"))).is_ok(), "a login session is not scope-limited");
}

#[test]
fn a_mapped_client_certificate_is_an_identity_and_routes_may_require_one() {
    let mut f = fixture();
    let cert = ClientCert { subject: "CN=build-bot,O=Example".into(), uris: vec![] };
    let stranger = ClientCert { subject: "CN=stranger".into(), uris: vec![] };
    fn with_cert(c: &ClientCert) -> Presented<'_> {
        Presented { client_cert: Some(c), ..Presented::default() }
    }
    let (_, who) = f.judge("POST", "/admin/settings", &with_cert(&cert)).unwrap();
    let who = who.unwrap();
    assert_eq!((who.user_id.as_str(), who.role.as_deref()), ("bot", Some("admin")));
    assert_eq!(who.credential, Credential::Certificate { subject: "CN=build-bot,O=Example".into() });
    assert_eq!(
        f.judge("GET", "/profile", &with_cert(&stranger)),
        Err((401, "missing_token", "missing")),
        "an unmapped certificate is no credential"
    );
    // A token still wins over the certificate.
    let token = bearer(&f.token("viewer"));
    let both = Presented { authorization: token.as_deref().map(str::as_bytes), client_cert: Some(&cert), api_key: None };
    assert_eq!(f.judge("POST", "/admin/settings", &both).map_err(|e| e.0), Err(403));
    // require_client_cert: refused without a certificate even on a public route.
    let mut routes: Vec<_> = f.policy.routes.routes().to_vec();
    for r in &mut routes {
        r.require_client_cert = true;
    }
    let table = crate::policy::RouteTable::new(
        routes.into_iter().map(|r| (crate::policy::routes::parse_pattern(&r.pattern).unwrap(), None, r)).collect(),
    );
    f.policy = Policy::new(crate::policy::Roles::new([("admin".to_string(), 3), ("user".to_string(), 2)]), table, "admin");
    assert_eq!(f.check("GET", "/public/x", None), Err((403, "client_certificate_required", "no_client_cert")));
    assert!(f.judge("GET", "/public/x", &with_cert(&stranger)).is_ok());
}

#[test]
fn the_credential_judged_follows_the_documented_precedence() {
    let cert = ClientCert { subject: "CN=x".into(), uris: vec![] };
    let kind = |authorization: Option<&str>, api_key: Option<&str>, client_cert: Option<&ClientCert>| {
        Presented { authorization: authorization.map(str::as_bytes), api_key: api_key.map(str::as_bytes), client_cert }.kind()
    };
    assert_eq!(kind(None, None, None), None, "nothing presented");
    assert_eq!(kind(None, None, Some(&cert)), Some(Presenting::Certificate), "a certificate alone is judged as one");
    assert_eq!(kind(Some("Bearer x.y.z"), None, Some(&cert)), Some(Presenting::Token), "a token wins over a certificate");
    assert_eq!(
        kind(Some("Bearer x.y.z"), Some("sk-provider-key"), None),
        Some(Presenting::Token),
        "a foreign X-Api-Key never hides the token"
    );
    assert_eq!(kind(None, Some("sk-provider-key"), Some(&cert)), Some(Presenting::ApiKey), "a malformed key alone is judged as a key");
    assert_eq!(kind(Some("Bearer pcs_abc"), None, None), Some(Presenting::ApiKey), "a key in the bearer");
    assert_eq!(kind(Some("Bearer x.y.z"), Some("pcs_abc"), Some(&cert)), Some(Presenting::ApiKey), "our key in X-Api-Key comes first");
}
