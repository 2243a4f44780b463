//! Micro-benchmarks of the request path's pure decisions (criterion):
//! token verification (the gateway's own and an external provider's, first time and cached),
//! path normalization plus route matching (10 and 5,000 routes), the
//! permission decision, and provider ordering.
//!
//! cargo bench --bench hot_path
#![allow(clippy::unwrap_used)] // a benchmark harness: a failure is a broken setup

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use http::Method;
use std::path::Path;

use portcullis::auth::{TokenKind, TokenManager};
use portcullis::policy::path::normalize;
use portcullis::policy::routes::{parse_pattern, RouteTable};
use portcullis::providers::health::{attempts, Order, Rules, State};

const SECRET: &str = "bench-secret-0123456789abcdef0123456789";

fn config(routes: usize) -> portcullis::config::Config {
    let mut yaml = String::from(
        "roles: { admin: 3, user: 2, viewer: 1, guest: 0 }\npermissions:\n  projects: { admin: [read, delete], viewer: [read] }\nupstreams: { app: { url: \"http://127.0.0.1:1\" } }\nroutes:\n",
    );
    for i in 0..routes.saturating_sub(1) {
        yaml.push_str(&format!(
            "  - {{ name: r{i}, path: \"/svc{i}/items/{{id}}\", methods: [GET], permission: \"projects:read\", upstream: app }}\n"
        ));
    }
    yaml.push_str(
        "  - { name: target, path: \"/projects/{id}/tasks/**\", methods: [GET], permission: \"projects:read\", upstream: app }\n",
    );
    portcullis::config::parse(&yaml, Path::new("bench.yaml"), &|n| (n == "JWT_SECRET_KEY").then(|| SECRET.to_string())).expect("valid")
}

fn tokens(c: &mut Criterion) {
    let cfg = config(1);
    let tm = TokenManager::new(&cfg.tokens);
    let token = tm.create_access_token("user-42", "viewer", "session-1").unwrap();
    c.bench_function("verify an HS256 access token", |b| b.iter(|| tm.verify(black_box(&token), TokenKind::Access).unwrap()));
}

/// An external provider's token, verified in full (the first time a token is seen: one
/// signature check plus claims) and then from the verified-token cache.
fn external(c: &mut Criterion) {
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use portcullis::auth::idp::{self, ClaimPaths, IdpSettings, JwksRefresh, JwksSource};
    use portcullis::auth::issuers::Issuers;
    use std::time::Duration;
    let roles = config(1).policy.roles;
    for (name, alg) in [("ES256", Algorithm::ES256), ("RS256", Algorithm::RS256)] {
        let pem = match alg {
            Algorithm::ES256 => portcullis::auth::keygen::generate_pem(alg).unwrap().expose().to_vec(),
            _ => {
                std::process::Command::new("openssl")
                    .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
                    .output()
                    .unwrap()
                    .stdout
            }
        };
        let encoding =
            if alg == Algorithm::ES256 { EncodingKey::from_ec_pem(&pem).unwrap() } else { EncodingKey::from_rsa_pem(&pem).unwrap() };
        let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&encoding, alg).unwrap()).unwrap();
        jwk["kid"] = "k1".into();
        let jwks = serde_json::json!({ "keys": [jwk] }).to_string();
        let settings = IdpSettings {
            name: "corp".into(),
            issuer: "https://idp.example".into(),
            source: JwksSource::Direct("https://idp.example/keys".into()),
            audiences: vec!["portcullis".into()],
            algorithms: vec![alg],
            claims: ClaimPaths { user_id: "sub".into(), role: Some("roles".into()), scopes: Some("scope".into()) },
            role_map: vec![("gw-user".into(), "user".into())],
            default_role: None,
            leeway_seconds: 30,
            max_lifetime: Duration::from_secs(86_400),
            refresh: JwksRefresh {
                min: Duration::from_secs(60),
                max: Duration::from_secs(3600),
                unknown_kid_cooldown: Duration::from_secs(10),
            },
        };
        let now = portcullis::clock::unix_now();
        let claims = serde_json::json!({"iss": "https://idp.example", "aud": "portcullis", "sub": "alice", "iat": now, "exp": now + 3600, "roles": ["gw-user"], "scope": "a b"});
        let mut header = Header::new(alg);
        header.kid = Some("k1".into());
        let token = jsonwebtoken::encode(&header, &claims, &encoding).unwrap();
        let (keys, _) = idp::parse_jwks(jwks.as_bytes(), &[alg]).unwrap();
        c.bench_function(&format!("verify an external {name} token (first time)"), |b| {
            b.iter(|| idp::verify(black_box(&token), &settings, &keys, &roles, now).unwrap())
        });
        let issuers = Issuers::new(std::sync::Arc::new(pingora::connectors::http::Connector::new(None)), None);
        issuers.configure(std::slice::from_ref(&settings));
        issuers.load_jwks("corp", jwks.as_bytes()).unwrap();
        c.bench_function(&format!("authenticate an external {name} token (cached)"), |b| {
            b.iter(|| issuers.authenticate(black_box(&token), &roles, now).unwrap().unwrap())
        });
    }
}

/// An API key: the first check (HMAC-SHA-256 against the local view) and a cached one.
fn api_keys(c: &mut Criterion) {
    use portcullis::apikey::{self, KeyHasher};
    use portcullis::auth::credentials::Credentials;
    use portcullis::auth::keys::ApiKeyRecord;
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let hasher = KeyHasher::new(&[7; 32]);
    let creds = Credentials::new(std::sync::Arc::new(portcullis::store::memory::MemoryStore::new()), None);
    let (key, id) = apikey::generate().unwrap();
    let record = ApiKeyRecord {
        id,
        name: "bench".into(),
        user_id: "bot".into(),
        role: "user".into(),
        scopes: None,
        hash: apikey::to_hex(&hasher.hash(&key)),
        last4: apikey::last4(&key).into(),
        created_at: 0,
        created_by: "admin".into(),
        expires_at: None,
        rate_limit: None,
    };
    rt.block_on(creds.add_key(&record)).unwrap();
    let now = portcullis::clock::unix_now();
    c.bench_function("parse an API key (format and checksum)", |b| b.iter(|| apikey::parse(black_box(&key)).unwrap().id().len()));
    c.bench_function("hash-check an API key (first time)", |b| b.iter(|| hasher.verify(black_box(&key), &hasher.hash(&key))));
    c.bench_function("authenticate an API key (cached)", |b| {
        b.iter(|| creds.authenticate_key(&hasher, apikey::parse(black_box(&key)).unwrap(), now).unwrap())
    });
}

fn routing(c: &mut Criterion) {
    for n in [10, 5000] {
        let cfg = config(n);
        let path = "/projects/7/tasks/../tasks/9";
        c.bench_function(&format!("normalize + match ({n} routes)"), |b| {
            b.iter(|| {
                let p = normalize(black_box(path)).unwrap();
                cfg.policy.find(&Method::GET, &p).map(|(i, _)| i)
            })
        });
    }
    let table = RouteTable::new((0..5000).map(|i| (parse_pattern(&format!("/svc{i}/items/{{id}}")).unwrap(), None, i)).collect());
    c.bench_function("match only (5000 routes)", |b| b.iter(|| table.find(&Method::GET, black_box("/svc4999/items/9")).map(|(i, _)| i)));
}

fn permission(c: &mut Criterion) {
    let cfg = config(1);
    let route = cfg.policy.find(&Method::GET, "/projects/7/tasks/1").unwrap().1.clone();
    c.bench_function("permission decision", |b| b.iter(|| route.access.allows(cfg.policy.roles.level(black_box("viewer")))));
}

fn providers(c: &mut Criterion) {
    let rules = Rules::default();
    let mut states = vec![State::default(); 4];
    states[0].record_failure("500", None, 0, &rules);
    states[2].record_success(900.0, 0, &rules);
    c.bench_function("order a 4-provider chain", |b| b.iter(|| attempts(black_box(&[0, 1, 2, 3]), |i| &states[i], Order::Latency, 1)));
}

criterion_group!(benches, tokens, external, api_keys, routing, permission, providers);
criterion_main!(benches);
