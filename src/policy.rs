//! Authorization policy: path normalization, the route table, roles and the permission matrix,
//! and the decision that joins them.
//!
//! Everything here is pure: no I/O, no clock, no Pingora types.

pub mod path;
pub mod roles;
pub mod routes;

use http::Method;
pub use roles::{PermissionMatrix, Roles};
pub use routes::RouteTable;

/// The verified caller of a request: who an access token, an API key or a client certificate
/// speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub role: Option<String>,
    /// What the caller proved itself with.
    pub credential: Credential,
    /// The scopes the credential is limited to; None: not limited by scopes (a user's own
    /// session, a key made without scopes), so the role and permission matrix decide alone.
    pub scopes: Option<Vec<String>>,
}

/// Whether `s` may be an identity value the gateway sends upstream as a header (a user id, role,
/// session, key or jti): 1-256 printable ASCII characters, no spaces.
pub fn header_word(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && s.bytes().all(|b| b.is_ascii_graphic())
}

/// The credential behind an [`Identity`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A gateway access token of a login session (`exp`: when it expires; u64::MAX unknown).
    Session { session_id: String, jti: String, exp: u64 },
    /// An API key (its public id).
    ApiKey { id: String },
    /// A verified TLS client certificate (its subject).
    Certificate { subject: String },
    /// An access token of an external identity provider (its name in `identity_providers`).
    External { provider: String, jti: Option<String>, exp: u64 },
}

impl Identity {
    /// The identity of a session's access token.
    pub fn session(user_id: impl Into<String>, role: Option<String>, session_id: impl Into<String>, jti: impl Into<String>) -> Self {
        Self::session_until(user_id, role, session_id, jti, u64::MAX)
    }

    /// The identity of a session's access token that expires at `exp` (unix seconds).
    pub fn session_until(
        user_id: impl Into<String>,
        role: Option<String>,
        session_id: impl Into<String>,
        jti: impl Into<String>,
        exp: u64,
    ) -> Self {
        let credential = Credential::Session { session_id: session_id.into(), jti: jti.into(), exp };
        Identity { user_id: user_id.into(), role, credential, scopes: None }
    }

    /// When the token behind the identity expires, if it is a token.
    pub fn expires_at(&self) -> Option<u64> {
        match &self.credential {
            Credential::Session { exp, .. } | Credential::External { exp, .. } => Some(*exp),
            _ => None,
        }
    }

    /// The login session behind the identity, if it is one.
    pub fn session_id(&self) -> Option<&str> {
        match &self.credential {
            Credential::Session { session_id, .. } => Some(session_id),
            _ => None,
        }
    }

    /// The API key behind the identity, if it is one.
    pub fn api_key_id(&self) -> Option<&str> {
        match &self.credential {
            Credential::ApiKey { id } => Some(id),
            _ => None,
        }
    }

    /// The external identity provider the credential came from, if any.
    pub fn provider(&self) -> Option<&str> {
        match &self.credential {
            Credential::External { provider, .. } => Some(provider),
            _ => None,
        }
    }

    /// The scopes of `required` this identity lacks (empty: it may proceed).
    pub fn missing_scopes<'a>(&self, required: &'a [String]) -> Vec<&'a str> {
        match &self.scopes {
            None => Vec::new(),
            Some(held) => required.iter().filter(|r| !held.contains(r)).map(String::as_str).collect(),
        }
    }
}

/// What a route demands of the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// No token needed (and none is read).
    Public,
    /// Any authenticated caller, whatever its role.
    Authenticated,
    /// An authenticated caller whose role level is at least `min_level`.
    Role { role: String, min_level: u32 },
    /// An authenticated caller whose role is granted `resource:action` (directly or inherited);
    /// `min_level` is None when no role is granted it.
    Permission { resource: String, action: String, min_level: Option<u32> },
}

impl Access {
    /// Whether a caller whose role has `level` (None: unknown role) is allowed.
    pub fn allows(&self, level: Option<u32>) -> bool {
        match self {
            Access::Public | Access::Authenticated => true,
            Access::Role { min_level, .. } => level.is_some_and(|l| l >= *min_level),
            Access::Permission { min_level, .. } => {
                matches!((level, min_level), (Some(l), Some(m)) if l >= *m)
            }
        }
    }

    /// A short description for logs and the audit trail: `role:admin`, `projects:read`, `public`.
    pub fn describe(&self) -> String {
        match self {
            Access::Public => "public".into(),
            Access::Authenticated => "authenticated".into(),
            Access::Role { role, .. } => ["role:", role].concat(),
            Access::Permission { resource, action, .. } => [resource.as_str(), ":", action].concat(),
        }
    }
}

/// Where a matched request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The upstream at this index of the config's upstream list.
    Upstream(usize),
    /// The provider chain at this index of the config's chain list.
    Chain(usize),
    /// One of the gateway's own endpoint families.
    Gateway(Endpoint),
}

/// The gateway's own endpoints: served by the gateway after the same admission as any route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/auth/*`: login, refresh, logout, sessions, me.
    Auth,
    /// `/admin/users*`.
    Users,
    /// `/admin/providers*`.
    Providers,
    /// `/admin/api-keys*` and `/auth/api-keys*`.
    ApiKeys,
    /// `/admin/revocations*`.
    Revocations,
    /// `/.well-known/jwks.json` and `/.well-known/openid-configuration`.
    WellKnown,
    /// `/auth/usage`: the caller's LLM token use.
    Usage,
}

/// Which table a matched route came from, and where in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteId {
    /// A route of gateway.yaml (its index in file order).
    Configured(usize),
    /// One of the gateway's own endpoints.
    Gateway(usize),
}

/// One configured route.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub pattern: String,
    pub access: Access,
    pub target: Target,
    /// The route's own limit (name, limit), counted per user (or per IP when public).
    pub rate_limit: Option<(String, crate::limits::Limit)>,
    /// Scopes a scope-limited credential must hold, every one of them (`require_scopes`).
    pub require_scopes: Vec<String>,
    /// Only over TLS with a verified client certificate (`require_client_cert`).
    pub require_client_cert: bool,
}

/// The routes and roles a request is judged against.
pub struct Policy {
    pub roles: Roles,
    pub routes: RouteTable<Route>,
    /// The gateway's own endpoints, matched before the configured routes.
    endpoints: RouteTable<Route>,
}

/// The gateway's own endpoints as routes, in match order: who may call what. A path under an
/// endpoint family that names no endpoint is public, and the endpoint answers 404; methods are
/// the endpoint's to check (405), so every method matches here.
const ENDPOINTS: [(&str, Endpoint, Need); 25] = [
    ("/.well-known/jwks.json", Endpoint::WellKnown, Need::Nothing),
    ("/.well-known/openid-configuration", Endpoint::WellKnown, Need::Nothing),
    ("/auth/login", Endpoint::Auth, Need::Nothing),
    ("/auth/refresh", Endpoint::Auth, Need::Nothing),
    ("/auth/logout", Endpoint::Auth, Need::Token),
    ("/auth/logout-all", Endpoint::Auth, Need::Token),
    ("/auth/me", Endpoint::Auth, Need::Token),
    ("/auth/sessions", Endpoint::Auth, Need::Token),
    ("/auth/sessions/{id}", Endpoint::Auth, Need::Token),
    ("/auth/api-keys", Endpoint::ApiKeys, Need::Token),
    ("/auth/api-keys/{id}", Endpoint::ApiKeys, Need::Token),
    ("/auth/usage", Endpoint::Usage, Need::Token),
    ("/auth/**", Endpoint::Auth, Need::Nothing),
    ("/admin/users", Endpoint::Users, Need::Admin),
    ("/admin/users/{id}", Endpoint::Users, Need::Admin),
    ("/admin/users/**", Endpoint::Users, Need::Nothing),
    ("/admin/providers", Endpoint::Providers, Need::Admin),
    ("/admin/providers/{name}/status", Endpoint::Providers, Need::Admin),
    ("/admin/providers/**", Endpoint::Providers, Need::Nothing),
    ("/admin/api-keys", Endpoint::ApiKeys, Need::Admin),
    ("/admin/api-keys/{id}", Endpoint::ApiKeys, Need::Admin),
    ("/admin/api-keys/**", Endpoint::ApiKeys, Need::Nothing),
    ("/admin/revocations", Endpoint::Revocations, Need::Admin),
    ("/admin/revocations/{id}", Endpoint::Revocations, Need::Admin),
    ("/admin/revocations/**", Endpoint::Revocations, Need::Nothing),
];

#[derive(Clone, Copy)]
enum Need {
    Nothing,
    Token,
    Admin,
}

impl Policy {
    /// The policy for `routes`, with the gateway's endpoints; `/admin/*` needs `admin_role` or
    /// higher (nobody, if that role is unknown).
    pub fn new(roles: Roles, routes: RouteTable<Route>, admin_role: &str) -> Self {
        let admin = Access::Role { role: admin_role.to_string(), min_level: roles.level(admin_role).unwrap_or(u32::MAX) };
        let endpoints = ENDPOINTS
            .iter()
            .filter_map(|(pattern, endpoint, need)| {
                let access = match need {
                    Need::Nothing => Access::Public,
                    Need::Token => Access::Authenticated,
                    Need::Admin => admin.clone(),
                };
                let route = Route {
                    name: GATEWAY_ROUTE.to_string(),
                    pattern: pattern.to_string(),
                    access,
                    target: Target::Gateway(*endpoint),
                    rate_limit: None,
                    require_scopes: Vec::new(),
                    require_client_cert: false,
                };
                Some((routes::parse_pattern(pattern).ok()?, None, route))
            })
            .collect();
        Policy { roles, routes, endpoints: RouteTable::new(endpoints) }
    }

    /// The route for a normalized path and method: a gateway endpoint, else the first
    /// configured route that matches.
    pub fn find(&self, method: &Method, path: &str) -> Option<(RouteId, &Route)> {
        // Every endpoint lives under one of these: most requests skip the endpoint table.
        if path.starts_with("/auth") || path.starts_with("/admin/") || path.starts_with("/.well-known/") {
            if let Some((i, r)) = self.endpoints.find(method, path) {
                return Some((RouteId::Gateway(i), r));
            }
        }
        self.routes.find(method, path).map(|(i, r)| (RouteId::Configured(i), r))
    }

    /// The route a [`RouteId`] names.
    pub fn get(&self, id: RouteId) -> Option<&Route> {
        match id {
            RouteId::Configured(i) => self.routes.get(i),
            RouteId::Gateway(i) => self.endpoints.get(i),
        }
    }
}

/// The route name the gateway's own endpoints carry (metrics label, audit trail).
pub const GATEWAY_ROUTE: &str = "_gateway";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_words_are_printable_ascii_without_spaces() {
        assert!(header_word("u-42") && header_word(&"x".repeat(256)));
        for bad in ["", "a b", "a\nb", "é", &"x".repeat(257)] {
            assert!(!header_word(bad), "{bad:?}");
        }
    }

    #[test]
    fn unknown_roles_are_no_role_at_all() {
        let role = Access::Role { role: "guest".into(), min_level: 0 };
        assert!(role.allows(Some(0)));
        assert!(!role.allows(None));
        let perm = Access::Permission { resource: "p".into(), action: "read".into(), min_level: Some(1) };
        assert!(perm.allows(Some(3)));
        assert!(!perm.allows(Some(0)));
        assert!(!perm.allows(None));
        let nobody = Access::Permission { resource: "p".into(), action: "x".into(), min_level: None };
        assert!(!nobody.allows(Some(u32::MAX)));
        assert!(Access::Public.allows(None));
        assert!(Access::Authenticated.allows(None), "any verified caller, even of an unknown role");
    }

    fn policy(admin_role: &str) -> Policy {
        let roles = Roles::new([("admin".to_string(), 3), ("user".to_string(), 2)]);
        let app = Route {
            name: "app".into(),
            pattern: "/**".into(),
            access: Access::Public,
            target: Target::Upstream(0),
            rate_limit: None,
            require_scopes: Vec::new(),
            require_client_cert: false,
        };
        Policy::new(roles, RouteTable::new(vec![(routes::parse_pattern("/**").unwrap(), None, app)]), admin_role)
    }

    #[test]
    fn the_gateway_endpoints_are_routes_with_their_own_access() {
        let p = policy("admin");
        let access = |path: &str| p.find(&Method::POST, path).map(|(_, r)| (r.target.clone(), r.access.describe()));
        let auth = Target::Gateway(Endpoint::Auth);
        assert_eq!(access("/auth/login"), Some((auth.clone(), "public".into())));
        assert_eq!(access("/auth/refresh"), Some((auth.clone(), "public".into())));
        assert_eq!(access("/auth/logout"), Some((auth.clone(), "authenticated".into())));
        assert_eq!(access("/auth/sessions/abc"), Some((auth.clone(), "authenticated".into())));
        assert_eq!(access("/auth/nothing-here"), Some((auth.clone(), "public".into())), "the endpoint answers 404");
        assert_eq!(access("/auth"), Some((auth, "public".into())));
        assert_eq!(access("/admin/users"), Some((Target::Gateway(Endpoint::Users), "role:admin".into())));
        assert_eq!(access("/admin/users/7"), Some((Target::Gateway(Endpoint::Users), "role:admin".into())));
        assert_eq!(access("/admin/providers/openai/status"), Some((Target::Gateway(Endpoint::Providers), "role:admin".into())));
        assert_eq!(access("/admin/api-keys/abc"), Some((Target::Gateway(Endpoint::ApiKeys), "role:admin".into())));
        assert_eq!(access("/admin/revocations"), Some((Target::Gateway(Endpoint::Revocations), "role:admin".into())));
        assert_eq!(access("/auth/api-keys"), Some((Target::Gateway(Endpoint::ApiKeys), "authenticated".into())));
        assert_eq!(access("/.well-known/jwks.json"), Some((Target::Gateway(Endpoint::WellKnown), "public".into())));
        assert_eq!(access("/.well-known/other"), Some((Target::Upstream(0), "public".into())), "other well-known paths are the app's");
        assert_eq!(access("/authx"), Some((Target::Upstream(0), "public".into())), "only whole segments");
        assert_eq!(access("/admin/settings"), Some((Target::Upstream(0), "public".into())));
        assert!(matches!(p.find(&Method::GET, "/auth/me"), Some((RouteId::Gateway(_), _))));
        assert!(matches!(p.find(&Method::GET, "/x"), Some((RouteId::Configured(0), _))));
    }

    /// A stream the gateway relays ends when the token behind it expires
    /// (`sessions.end_streams_at_expiry`); a key or a certificate has no such end.
    #[test]
    fn only_a_token_credential_has_an_expiry() {
        let session = Identity::session_until("u", None, "s", "j", 1_700_000_000);
        let external =
            Identity { credential: Credential::External { provider: "idp".into(), jti: None, exp: 1_800_000_000 }, ..session.clone() };
        let key = Identity { credential: Credential::ApiKey { id: "k".into() }, ..session.clone() };
        let cert = Identity { credential: Credential::Certificate { subject: "CN=x".into() }, ..session.clone() };
        assert_eq!(session.expires_at(), Some(1_700_000_000));
        assert_eq!(external.expires_at(), Some(1_800_000_000));
        assert_eq!((key.expires_at(), cert.expires_at()), (None, None));
    }

    #[test]
    fn an_unknown_admin_role_admits_nobody() {
        let p = policy("root");
        let (_, r) = p.find(&Method::GET, "/admin/users").unwrap();
        assert!(!r.access.allows(Some(3)));
    }
}
