//! The subjects the properties run against, assembled from a small `gateway.yaml` the way the
//! gateway assembles its own (so the checks meet routes, keys and providers as operators write
//! them); and the property of `gateway.yaml` itself.

use std::path::Path;
use std::sync::OnceLock;

use http::Method;

use crate::auth::idp::IdpSettings;
use crate::auth::TokenManager;
use crate::config;
use crate::policy::Policy;

const SECRET: &str = "properties-secret-0123456789abcdef0123456789";

/// A small config with every route shape (literal, `{param}`, `**`, method lists) and an
/// identity provider, for the checks that need one.
pub const CONFIG: &str = r#"
server: { listen: "127.0.0.1:18080", admin_listen: "127.0.0.1:19901" }
store: { backend: memory }
roles: { admin: 3, user: 2, viewer: 1, guest: 0 }
permissions:
  projects: { admin: [create, read, update, delete], user: [create, read], viewer: [read], guest: [] }
upstreams: { app: { url: "http://127.0.0.1:3000" } }
identity_providers:
  idp:
    issuer: "https://idp.example"
    jwks_uri: "https://idp.example/jwks"
    audiences: [portcullis]
    default_role: viewer
routes:
  - { name: del, path: "/projects/{id}", methods: [DELETE], permission: "projects:delete", upstream: app }
  - { name: read, path: "/projects/**", methods: [GET, HEAD], permission: "projects:read", upstream: app }
  - { name: files, path: "/files/{dir}/{name}", require_role: user, upstream: app }
  - { name: docs, path: "/public/**", public: true, upstream: app }
"#;

fn env(name: &str) -> Option<String> {
    (name == "JWT_SECRET_KEY").then(|| SECRET.to_string())
}

/// What the checks run against.
pub struct Subjects {
    pub policy: Policy,
    pub tokens: TokenManager,
    pub idp: Option<IdpSettings>,
}

/// The subjects, assembled from [`CONFIG`] once.
pub fn subjects() -> &'static Subjects {
    static S: OnceLock<Subjects> = OnceLock::new();
    S.get_or_init(|| match config::parse(CONFIG, Path::new("properties.yaml"), &env) {
        Ok(c) => Subjects { tokens: TokenManager::new(&c.tokens), idp: c.identity_providers.into_iter().next(), policy: c.policy },
        Err(e) => panic!("the properties config is invalid: {e}"),
    })
}

/// Any bytes as `gateway.yaml`: an error with places, or a config that builds the request path's
/// whole state (routes, verifier, upstreams, providers) and routes requests.
pub fn config_text(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else { return };
    match config::parse(text, Path::new("fuzz.yaml"), &env) {
        Err(e) => assert!(!e.to_string().is_empty(), "a refusal says why"),
        Ok(cfg) => {
            let snapshot = crate::reload::snapshot(cfg, None);
            for (m, p) in [(Method::GET, "/"), (Method::GET, "/projects/1"), (Method::POST, "/auth/login")] {
                let _ = snapshot.policy.find(&m, p);
            }
        }
    }
}
