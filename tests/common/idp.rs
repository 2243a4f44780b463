//! An in-repo OpenID Connect test issuer: discovery and JWKS over HTTP on a loopback port, keys
//! generated at test time (ES256, EdDSA, RS256/PS256 through `openssl`), rotation on demand,
//! an outage switch, and a count of every fetch. It mints access tokens as a real issuer would.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

struct Key {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

#[derive(Default)]
struct Shared {
    issuer: Mutex<String>,
    keys: Mutex<Vec<Key>>,
    /// Kids published in the JWKS (a key can sign before it is published, or after it is gone).
    published: Mutex<Vec<String>>,
    max_age: AtomicU64,
    down: AtomicBool,
    discovery_fetches: AtomicU64,
    jwks_fetches: AtomicU64,
}

/// A running test issuer. Stops when dropped.
pub struct TestIdp {
    pub port: u16,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// A private key for `alg`, as PKCS#8 PEM.
fn private_pem(alg: Algorithm) -> Vec<u8> {
    match alg {
        Algorithm::ES256 | Algorithm::EdDSA => portcullis::auth::keygen::generate_pem(alg).expect("keygen").expose().to_vec(),
        _ => {
            let out = std::process::Command::new("openssl")
                .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
                .output()
                .expect("openssl (scripts/ensure-deps installs it)");
            out.stdout
        }
    }
}

async fn handle(s: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let reply = |status: u16, body: Value, max_age: Option<u64>| {
        let mut b = Response::builder().status(status).header("content-type", "application/json");
        if let Some(m) = max_age {
            b = b.header("cache-control", format!("public, max-age={m}"));
        }
        Ok(b.body(Full::new(Bytes::from(body.to_string()))).expect("response"))
    };
    if s.down.load(Ordering::SeqCst) {
        return reply(503, json!({"error": "down"}), None);
    }
    let issuer = s.issuer.lock().expect("lock").clone();
    match req.uri().path() {
        "/.well-known/openid-configuration" => {
            s.discovery_fetches.fetch_add(1, Ordering::SeqCst);
            reply(
                200,
                json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks"), "id_token_signing_alg_values_supported": ["ES256"]}),
                None,
            )
        }
        "/jwks" => {
            s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            let published = s.published.lock().expect("lock").clone();
            let keys: Vec<Value> =
                s.keys.lock().expect("lock").iter().filter(|k| published.contains(&k.kid)).map(|k| k.jwk.clone()).collect();
            reply(200, json!({ "keys": keys }), Some(s.max_age.load(Ordering::SeqCst)))
        }
        _ => reply(404, json!({"error": "not_found"}), None),
    }
}

impl TestIdp {
    /// Starts on a free loopback port with one published key `k1` of `alg`.
    pub fn start(alg: Algorithm) -> Self {
        let shared = Arc::new(Shared::default());
        shared.max_age.store(300, Ordering::SeqCst);
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let s = shared.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
                port_tx.send(listener.local_addr().expect("addr").port()).expect("send port");
                let accept = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else { continue };
                        let s = s.clone();
                        tokio::spawn(async move {
                            let svc = service_fn(move |req| handle(s.clone(), req));
                            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stop_rx => {}
                }
            });
        });
        let port = port_rx.recv().expect("idp port");
        *shared.issuer.lock().expect("lock") = format!("http://127.0.0.1:{port}");
        let idp = TestIdp { port, shared, stop: Some(stop_tx) };
        idp.add_key("k1", alg, true);
        idp
    }

    /// The issuer (`iss`), also the base URL.
    pub fn issuer(&self) -> String {
        self.shared.issuer.lock().expect("lock").clone()
    }

    /// Makes a new key; `publish`: list it in the JWKS at once.
    pub fn add_key(&self, kid: &str, alg: Algorithm, publish: bool) {
        let pem = private_pem(alg);
        let (encoding, jwk_alg) = match alg {
            Algorithm::ES256 => (EncodingKey::from_ec_pem(&pem).expect("ec"), alg),
            Algorithm::EdDSA => (EncodingKey::from_ed_pem(&pem).expect("ed"), alg),
            _ => (EncodingKey::from_rsa_pem(&pem).expect("rsa"), alg),
        };
        let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&encoding, jwk_alg).expect("jwk")).expect("json");
        jwk["kid"] = kid.into();
        jwk["use"] = "sig".into();
        self.shared.keys.lock().expect("lock").push(Key { kid: kid.into(), alg, encoding, jwk });
        if publish {
            self.publish(kid);
        }
    }

    /// Lists a key in the JWKS.
    pub fn publish(&self, kid: &str) {
        self.shared.published.lock().expect("lock").push(kid.into());
    }

    /// Takes a key out of the JWKS.
    pub fn unpublish(&self, kid: &str) {
        self.shared.published.lock().expect("lock").retain(|k| k != kid);
    }

    /// Answers 503 to everything while `down`.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// `Cache-Control: max-age` of the JWKS.
    pub fn set_max_age(&self, seconds: u64) {
        self.shared.max_age.store(seconds, Ordering::SeqCst);
    }

    /// JWKS fetches so far.
    pub fn jwks_fetches(&self) -> u64 {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Discovery fetches so far.
    pub fn discovery_fetches(&self) -> u64 {
        self.shared.discovery_fetches.load(Ordering::SeqCst)
    }

    /// The claims of an access token for `sub` with `roles` (Keycloak's shape), valid 5 minutes.
    pub fn claims(&self, sub: &str, roles: &[&str], scope: &str) -> Value {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
        json!({
            "iss": self.issuer(), "aud": ["portcullis"], "sub": sub, "iat": now, "exp": now + 300,
            "jti": format!("jti-{sub}-{now}"), "scope": scope, "realm_access": { "roles": roles }
        })
    }

    /// Signs `claims` with key `kid` (header `kid` set to `header_kid`).
    pub fn sign_as(&self, kid: &str, header_kid: Option<&str>, claims: &Value) -> String {
        let keys = self.shared.keys.lock().expect("lock");
        let key = keys.iter().find(|k| k.kid == kid).expect("a key of that kid");
        let mut h = Header::new(key.alg);
        h.kid = header_kid.map(str::to_string);
        jsonwebtoken::encode(&h, claims, &key.encoding).expect("sign")
    }

    /// Signs `claims` with key `kid`, naming it.
    pub fn sign(&self, kid: &str, claims: &Value) -> String {
        self.sign_as(kid, Some(kid), claims)
    }

    /// An access token for `sub` with `roles`, signed with `kid`.
    pub fn token(&self, kid: &str, sub: &str, roles: &[&str]) -> String {
        self.sign(kid, &self.claims(sub, roles, "openid projects.read"))
    }

    /// The `identity_providers.NAME` YAML for this issuer (discovery on; refresh bounds in s).
    pub fn provider_yaml(&self, algorithms: &str, min_refresh: u64, cooldown: u64) -> String {
        format!(
            "{{ issuer: \"{}\", discovery: true, audiences: [portcullis], algorithms: [{algorithms}], \
             claims: {{ user_id: sub, role: \"realm_access.roles\", scopes: scope }}, \
             role_map: {{ gw-admin: admin, gw-user: user, gw-viewer: viewer }}, leeway_seconds: 5, \
             jwks: {{ min_refresh_seconds: {min_refresh}, max_refresh_seconds: 3600, unknown_kid_cooldown_seconds: {cooldown} }} }}",
            self.issuer()
        )
    }
}

impl Drop for TestIdp {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}
