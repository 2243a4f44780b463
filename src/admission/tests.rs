use super::*;
use crate::auth::tokens::TokenSpec;
use crate::config::tests::seed_config;
use crate::policy::{Endpoint, Target};
use std::time::Duration;

struct Fixture {
    policy: Policy,
    tokens: TokenManager,
    revoked: Vec<String>,
}

impl SessionGate for Vec<String> {
    fn check(&self, session_id: &str) -> Result<(), SessionVeto> {
        if self.iter().any(|s| s == session_id) {
            Err(SessionVeto::Revoked)
        } else {
            Ok(())
        }
    }
}

fn fixture() -> Fixture {
    let c = seed_config();
    Fixture { tokens: TokenManager::new(&c.tokens), policy: c.policy, revoked: vec!["revoked-session".into()] }
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
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        match admit(&self.policy, &self.tokens, &self.revoked, &m, path, auth.as_deref().map(str::as_bytes)) {
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
    assert_eq!(id, Some(Identity { user_id: "u1".into(), role: Some("viewer".into()), session_id: "s1".into() }));
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
    let refused = admit(&f.policy, &f.tokens, &f.revoked, &m, "/admin/providers", bearer(&f.token("user")).as_deref().map(str::as_bytes))
        .unwrap_err();
    assert_eq!(refused.identity.map(|i| i.user_id.clone()), Some("u1".into()));
    let route = refused.route.and_then(|id| f.policy.get(id)).map(|r| r.target.clone());
    assert_eq!(route, Some(Target::Gateway(Endpoint::Providers)));
}
