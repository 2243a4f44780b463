//! The integration-test harness: a real `portcullis` process on reserved loopback ports, real
//! upstream HTTP servers that record what they receive, and a raw HTTP/1.1 client that sends
//! exactly the bytes a test asks for (no path cleaning, duplicate headers allowed).
#![allow(dead_code, unused_imports)]

pub mod client;
pub mod config;
pub mod gateway;
pub mod idp;
pub mod llm;
pub mod pki;
pub mod redis;
pub mod upstream;

pub use client::{Connection, Reply, Request};
pub use gateway::TestGateway;
pub use idp::TestIdp;
pub use redis::RedisServer;
pub use upstream::{Behavior, MockUpstream};

use std::time::{Duration, Instant};

/// The signing secret every test gateway runs with.
pub const TEST_SECRET: &str = "integration-test-secret-0123456789abcdef";

/// A loopback port that was free a moment ago (Pingora cannot report the port it bound), and
/// never one this test process handed out before: the kernel may give the same free port to
/// two calls in a row (a gateway's proxy and admin listeners once got the same one).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("reserve a port");
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// The JSON audit events of an audit file, every complete line of it (a line still being
/// written has no newline yet and is left for the next read); each must be JSON.
pub fn audit_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete.lines().map(|l| serde_json::from_str(l).expect("every audit line is JSON")).collect()
}

/// Waits until `f` is true or the deadline passes.
pub fn eventually(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Asserts that a condition becomes true within a deadline.
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr, $($msg:tt)+) => {
        assert!($crate::common::eventually(std::time::Duration::from_secs(10), || $cond), $($msg)+)
    };
}

/// The seed configuration (the issue's contract), with `@UPSTREAM@` for the app's URL, `@STORE@`
/// for the store section, and the harness's `@LISTEN@`, `@ADMIN@` and `@DIR@` placeholders. To
/// change anything else, use the typed builder [`config::Config`].
pub const SEED_CONFIG: &str = r#"
server:
  listen: "@LISTEN@"
  admin_listen: "@ADMIN@"
  threads: 2
  pid_file: "@DIR@/portcullis.pid"
  upgrade_sock: "@DIR@/upgrade.sock"
store:   @STORE@
tokens:  { secret_env: JWT_SECRET_KEY, access_ttl_minutes: 15, refresh_ttl_days: 7, leeway_seconds: 0 }
roles:   { admin: 3, user: 2, viewer: 1, guest: 0 }
permissions:
  projects: { admin: [create, read, update, delete], user: [create, read, update], viewer: [read], guest: [] }
  settings: { admin: [read, update], user: [read], viewer: [], guest: [] }
upstreams:
  app: { url: "@UPSTREAM@", read_timeout_ms: 1000 }
routes:
  - { name: settings-update, path: /admin/settings, methods: [POST], require_role: admin, upstream: app }
  - { name: project-delete,  path: "/projects/{id}", methods: [DELETE], permission: "projects:delete", upstream: app }
  - { name: projects-read,   path: "/projects/**", methods: [GET], permission: "projects:read", upstream: app }
  - { name: profile,         path: /profile, require_role: guest, upstream: app }
  - { name: docs,            path: "/public/**", public: true, upstream: app }
"#;

/// The memory store section.
pub const MEMORY_STORE: &str = "{ backend: memory }";

/// A store section for a Redis server.
pub fn redis_store(url: &str) -> String {
    format!("{{ backend: redis, redis_url: \"{url}\" }}")
}

/// The seed config pointing at `upstream`, with the store section `store`.
pub fn seed_config_with_store(upstream: &str, store: &str) -> String {
    fill(SEED_CONFIG, &[("@UPSTREAM@", upstream), ("@STORE@", store)])
}

/// The seed config pointing at `upstream`, on the memory store.
pub fn seed_config(upstream: &str) -> String {
    seed_config_with_store(upstream, MEMORY_STORE)
}

/// Fills a template's placeholders.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    values.iter().fold(template.to_string(), |text, (placeholder, value)| text.replace(placeholder, value))
}
