//! Prometheus metrics, in a private registry (two gateways in one process never collide).
//!
//! Recording on the request path takes no lock and allocates nothing in steady state: per-route
//! and per-upstream handles are resolved when a config snapshot is built, and label sets that
//! depend on the request (status code, method, failure reason) are resolved once into a
//! copy-on-write map ([`LabelCache`]) whose reads are lock-free.
//! Label values are always bounded: configured route and upstream names, fixed reason words,
//! method names from a fixed list, status codes; never a raw path, user id or token.

//!
//! The families live with the subsystem that records them ([`traffic`], [`auth`], [`llm`],
//! [`ops`]), each made through one registration helper ([`families::Families`]); this module
//! holds the registry, the label cache, and the exposition.

mod auth;
mod families;
mod llm;
mod ops;
mod traffic;

use arc_swap::ArcSwap;
use prometheus::{Encoder, Registry, TextEncoder};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

pub use self::auth::AuthMetrics;
pub use self::llm::LlmMetrics;
pub use self::ops::OpsMetrics;
pub use self::traffic::{RouteMetrics, TrafficMetrics, UpstreamMetrics, GATEWAY, OUTCOMES, UNMATCHED};

/// Resolved children of a metric vector, by key: lock-free reads, copy-on-write inserts.
pub struct LabelCache<K, C> {
    map: ArcSwap<HashMap<K, C, foldhash::fast::RandomState>>,
}

impl<K: Hash + Eq + Clone, C: Clone> LabelCache<K, C> {
    pub(crate) fn new() -> Self {
        LabelCache { map: ArcSwap::from_pointee(HashMap::default()) }
    }

    /// The child for `key`, resolving it with `make` the first time only.
    pub fn get(&self, key: K, make: impl FnOnce() -> C) -> C {
        if let Some(c) = self.map.load().get(&key) {
            return c.clone();
        }
        let child = make();
        self.map.rcu(|m| {
            let mut next = HashMap::clone(m);
            next.entry(key.clone()).or_insert_with(|| child.clone());
            next
        });
        child
    }
}

/// A fixed, bounded method label.
pub fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Every series the gateway exports, by subsystem.
pub struct Metrics {
    registry: Registry,
    pub traffic: TrafficMetrics,
    pub auth: AuthMetrics,
    pub llm: LlmMetrics,
    pub ops: OpsMetrics,
    tls_cert_expiry: prometheus::Gauge,
    /// The served certificate's notAfter (unix seconds); 0 without TLS.
    tls_expires_at: std::sync::atomic::AtomicI64,
}

/// A family whose label values are known in advance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// `auth_failures_total{reason}`.
    AuthFailures,
    /// `logins_total{result}`.
    Logins,
    /// `config_reloads_total{result}`.
    ConfigReloads,
    /// `api_key_requests_total{outcome}`.
    ApiKeyRequests,
    /// `store_errors_total{op}`.
    StoreErrors,
    /// `auth_failures_by_ip_class_total{ip_class}`.
    AuthFailuresByIpClass,
    /// `connections_refused_total{reason}`.
    ConnectionsRefused,
}

impl Metrics {
    /// A fresh registry with every series declared.
    pub fn new() -> Arc<Self> {
        let registry = Registry::new();
        let f = families::Families(&registry);
        Arc::new(Metrics {
            traffic: TrafficMetrics::new(&f),
            auth: AuthMetrics::new(&f),
            llm: LlmMetrics::new(&f),
            ops: OpsMetrics::new(&f),
            // Registered only once a certificate is served (see `tls_cert_expires_at`).
            tls_cert_expiry: prometheus::Gauge::with_opts(families::opts(
                "tls_cert_expiry_seconds",
                "Seconds until the served TLS certificate expires (absent without TLS).",
            ))
            .expect("valid metric definition"),
            tls_expires_at: std::sync::atomic::AtomicI64::new(0),
            registry,
        })
    }

    /// Declares label values known in advance, so each series exists at 0 from the start
    /// (Prometheus' instrumentation guide: a series that appears with its first event hides that
    /// event from `rate()` and `increase()`).
    pub fn declare(&self, family: Known, values: &[&str]) {
        let vec = match family {
            Known::AuthFailures => &self.auth.auth_failures,
            Known::Logins => &self.auth.logins,
            Known::ConfigReloads => &self.ops.config_reloads,
            Known::ApiKeyRequests => &self.auth.api_key_requests,
            Known::StoreErrors => &self.ops.store_errors,
            Known::AuthFailuresByIpClass => &self.auth.auth_failures_by_class,
            Known::ConnectionsRefused => &self.traffic.connections_refused,
        };
        for v in values {
            vec.with_label_values(&[v]);
        }
    }

    /// The served certificate's expiry (unix seconds); the gauge reports the seconds left when
    /// scraped. Registered only when TLS is served.
    pub fn tls_cert_expires_at(&self, not_after: i64) {
        if self.tls_expires_at.swap(not_after, std::sync::atomic::Ordering::Relaxed) == 0 {
            // Registered once, the first time a certificate is served.
            let _ = self.registry.register(Box::new(self.tls_cert_expiry.clone()));
        }
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> Vec<u8> {
        let not_after = self.tls_expires_at.load(std::sync::atomic::Ordering::Relaxed);
        if not_after != 0 {
            self.tls_cert_expiry.set((not_after - crate::clock::unix_now() as i64) as f64);
        }
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail on I/O; a failure would only mean a malformed family.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_bounded_series_with_the_contract_names() {
        let m = Metrics::new();
        let r = m.traffic.route("projects-read");
        r.finished("GET", 200, 0.002);
        r.finished("GET", 200, 0.003);
        r.finished("GET", 403, 0.001);
        r.denied.inc();
        m.traffic.unmatched().finished("GET", 404, 0.0001);
        m.auth.auth_failure("expired");
        m.auth.auth_failure("expired");
        m.auth.login("success");
        m.auth.sessions_revoked(2);
        m.traffic.upstream("app").outcome("ok");
        m.ops.config_reload("error");
        m.ops.store_error("login");
        let text = String::from_utf8(m.render()).unwrap();
        for line in [
            r#"portcullis_requests_total{method="GET",route="projects-read",status="200"} 2"#,
            r#"portcullis_requests_total{method="GET",route="projects-read",status="403"} 1"#,
            r#"portcullis_requests_total{method="GET",route="_unmatched",status="404"} 1"#,
            r#"portcullis_request_duration_seconds_count{route="projects-read"} 3"#,
            r#"portcullis_authz_denied_total{route="projects-read"} 1"#,
            r#"portcullis_auth_failures_total{reason="expired"} 2"#,
            r#"portcullis_logins_total{result="success"} 1"#,
            "portcullis_sessions_revoked_total 2",
            r#"portcullis_upstream_requests_total{outcome="ok",upstream="app"} 1"#,
            r#"portcullis_config_reloads_total{result="error"} 1"#,
            r#"portcullis_store_errors_total{op="login"} 1"#,
            r#"portcullis_build_info{version=""#,
        ] {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
    }

    #[test]
    fn declared_label_values_start_at_zero() {
        let m = Metrics::new();
        m.declare(Known::ConfigReloads, &["success", "error"]);
        m.declare(Known::AuthFailures, &["expired"]);
        m.declare(Known::Logins, &["success"]);
        m.llm.provider_known("openai");
        let text = String::from_utf8(m.render()).unwrap();
        for line in [
            r#"portcullis_config_reloads_total{result="success"} 0"#,
            r#"portcullis_config_reloads_total{result="error"} 0"#,
            r#"portcullis_auth_failures_total{reason="expired"} 0"#,
            r#"portcullis_logins_total{result="success"} 0"#,
            r#"portcullis_provider_health{provider="openai",status="degraded"} 0"#,
            r#"portcullis_provider_consecutive_failures{provider="openai"} 0"#,
        ] {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
    }

    #[test]
    fn the_label_cache_resolves_each_key_once() {
        let cache: LabelCache<u16, Arc<u16>> = LabelCache::new();
        let a = cache.get(200, || Arc::new(200));
        let b = cache.get(200, || panic!("resolved twice"));
        assert!(Arc::ptr_eq(&a, &b));
    }
}
