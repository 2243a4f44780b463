//! Prometheus metrics, in a private registry (two gateways in one process never collide).
//!
//! Recording on the request path takes no lock and allocates nothing in steady state: per-route
//! and per-upstream handles are resolved when a config snapshot is built, and label sets that
//! depend on the request (status code, method, failure reason) are resolved once into a
//! copy-on-write map ([`LabelCache`]) whose reads are lock-free.
//! Label values are always bounded: configured route and upstream names, fixed reason words,
//! method names from a fixed list, status codes; never a raw path, user id or token.

use arc_swap::ArcSwap;
use prometheus::{
    CounterVec, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

/// Route label for requests that matched no route (404, bad paths).
pub const UNMATCHED: &str = "_unmatched";
/// Route label for the gateway's own endpoints (/auth, /admin/users).
pub const GATEWAY: &str = crate::policy::GATEWAY_ROUTE;

const LATENCY_BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Resolved children of a metric vector, by key: lock-free reads, copy-on-write inserts.
pub struct LabelCache<K, C> {
    map: ArcSwap<HashMap<K, C, foldhash::fast::RandomState>>,
}

impl<K: Hash + Eq + Clone, C: Clone> LabelCache<K, C> {
    fn new() -> Self {
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

/// Every series the gateway exports.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    auth_failures: IntCounterVec,
    authz_denied: IntCounterVec,
    logins: IntCounterVec,
    sessions_revoked: IntCounter,
    upstream_requests: IntCounterVec,
    upstream_duration: HistogramVec,
    config_reloads: IntCounterVec,
    store_errors: IntCounterVec,
    audit_events: IntCounterVec,
    audit_dropped: IntCounter,
    rate_limited: IntCounterVec,
    provider_health: IntGaugeVec,
    provider_failures: IntGaugeVec,
    failovers: IntCounterVec,
    api_key_requests: IntCounterVec,
    api_keys: IntGauge,
    denylist_entries: IntGauge,
    idp_keys: IntGaugeVec,
    idp_fetches: IntCounterVec,
    llm_tokens: IntCounterVec,
    llm_requests: IntCounterVec,
    llm_ttft: HistogramVec,
    llm_budget_rejections: IntCounter,
    llm_cost: CounterVec,
    auth_failures_by_class: IntCounterVec,
    chain_panics: IntCounterVec,
    store_up: IntGauge,
    connections_open: IntGauge,
    connections_refused: IntCounterVec,
    header_timeouts: IntCounter,
    tls_cert_expiry: prometheus::Gauge,
    /// The served certificate's notAfter (unix seconds); 0 without TLS.
    tls_expires_at: std::sync::atomic::AtomicI64,
    audit_cache: LabelCache<&'static str, IntCounter>,
    auth_failure_cache: LabelCache<&'static str, IntCounter>,
    api_key_cache: LabelCache<&'static str, IntCounter>,
    /// The special routes' handles (unmatched, gateway endpoints).
    unmatched: Arc<RouteMetrics>,
    gateway: Arc<RouteMetrics>,
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

/// Handles for one route.
pub struct RouteMetrics {
    name: String,
    requests: IntCounterVec,
    by_status: LabelCache<(&'static str, u16), IntCounter>,
    pub duration: Histogram,
    pub denied: IntCounter,
}

impl RouteMetrics {
    /// Counts one finished request.
    pub fn finished(&self, method: &'static str, status: u16, seconds: f64) {
        let c =
            self.by_status.get((method, status), || self.requests.with_label_values(&[self.name.as_str(), method, &status.to_string()]));
        c.inc();
        self.duration.observe(seconds);
    }
}

/// Handles for one upstream.
pub struct UpstreamMetrics {
    outcomes: HashMap<&'static str, IntCounter>,
    pub duration: Histogram,
}

/// What happened to one upstream request.
pub const OUTCOMES: [&str; 5] = ["ok", "http_5xx", "connect_error", "timeout", "error"];

impl UpstreamMetrics {
    /// Counts one upstream attempt's outcome (one of [`OUTCOMES`]).
    pub fn outcome(&self, outcome: &'static str) {
        if let Some(c) = self.outcomes.get(outcome) {
            c.inc();
        }
    }
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace("portcullis")
}

/// Registers a metric (definitions are static: a failure is a programming error).
fn registered<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: prometheus::Result<T>) -> T {
    let m = metric.expect("valid metric definition");
    registry.register(Box::new(m.clone())).expect("metric registered once");
    m
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    registered(registry, IntCounter::with_opts(opts(name, help)))
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(registry, IntCounterVec::new(opts(name, help), labels))
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    registered(registry, IntGauge::with_opts(opts(name, help)))
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    registered(registry, IntGaugeVec::new(opts(name, help), labels))
}

fn histogram_vec(registry: &Registry, name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    registered(registry, HistogramVec::new(HistogramOpts::new(name, help).namespace("portcullis").buckets(buckets.to_vec()), labels))
}

impl Metrics {
    /// A fresh registry with every series declared.
    pub fn new() -> Arc<Self> {
        let r = Registry::new();
        let requests =
            counter_vec(&r, "requests_total", "Requests answered, by route name, method and status.", &["route", "method", "status"]);
        let request_duration = histogram_vec(
            &r,
            "request_duration_seconds",
            "Time from request to the end of the response, by route.",
            &["route"],
            &LATENCY_BUCKETS,
        );
        let authz_denied =
            counter_vec(&r, "authz_denied_total", "Authenticated requests refused for lack of role or permission, by route.", &["route"]);
        let route = |name: &str| {
            Arc::new(RouteMetrics {
                name: name.to_string(),
                requests: requests.clone(),
                by_status: LabelCache::new(),
                duration: request_duration.with_label_values(&[name]),
                denied: authz_denied.with_label_values(&[name]),
            })
        };
        let (unmatched, gateway) = (route(UNMATCHED), route(GATEWAY));
        let build_info = gauge_vec(&r, "build_info", "Always 1; the version label says which build runs.", &["version"]);
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        Arc::new(Metrics {
            auth_failures: counter_vec(&r, "auth_failures_total", "Requests refused for a missing or bad token, by reason.", &["reason"]),
            logins: counter_vec(&r, "logins_total", "Login attempts, by result.", &["result"]),
            sessions_revoked: counter(&r, "sessions_revoked_total", "Sessions ended by logout, reuse detection or an admin."),
            upstream_requests: counter_vec(
                &r,
                "upstream_requests_total",
                "Requests sent upstream, by upstream and outcome.",
                &["upstream", "outcome"],
            ),
            upstream_duration: histogram_vec(
                &r,
                "upstream_duration_seconds",
                "Time until the upstream's response header, by upstream.",
                &["upstream"],
                &LATENCY_BUCKETS,
            ),
            config_reloads: counter_vec(&r, "config_reloads_total", "Config reloads, by result.", &["result"]),
            store_errors: counter_vec(&r, "store_errors_total", "Failed store operations, by operation.", &["op"]),
            audit_events: counter_vec(&r, "audit_events_total", "Audit events emitted, by kind.", &["kind"]),
            audit_dropped: counter(&r, "audit_dropped_total", "Audit events lost because the sink could not keep up or was down."),
            rate_limited: counter_vec(&r, "rate_limited_total", "Requests refused by a rate limit or lockout, by limit.", &["limit"]),
            audit_cache: LabelCache::new(),
            provider_health: gauge_vec(
                &r,
                "provider_health",
                "1 for the provider's current status, 0 for the others.",
                &["provider", "status"],
            ),
            provider_failures: gauge_vec(&r, "provider_consecutive_failures", "Consecutive failures of a provider.", &["provider"]),
            failovers: counter_vec(
                &r,
                "failovers_total",
                "Requests passed from one provider to the next, by chain.",
                &["chain", "from", "to"],
            ),
            api_key_requests: counter_vec(
                &r,
                "api_key_requests_total",
                "Requests that presented an API key, by outcome (accepted, or why refused).",
                &["outcome"],
            ),
            api_keys: gauge(&r, "api_keys", "API keys issued and not revoked, as this instance knows them."),
            denylist_entries: gauge(&r, "denylist_entries", "Admin denylist entries in force, as this instance knows them."),
            idp_keys: gauge_vec(
                &r,
                "identity_provider_keys",
                "Verification keys held for an identity provider (0: its tokens are refused).",
                &["provider"],
            ),
            idp_fetches: counter_vec(
                &r,
                "identity_provider_fetches_total",
                "Fetches of an identity provider's keys, by provider and result (ok, error; shared: taken from another instance's fetch).",
                &["provider", "result"],
            ),
            llm_tokens: counter_vec(
                &r,
                "llm_tokens_total",
                "LLM tokens used, by provider, public model (`other` for names the config does not mention) and kind (prompt, completion).",
                &["provider", "model", "kind"],
            ),
            llm_requests: counter_vec(
                &r,
                "llm_requests_total",
                "LLM calls by provider, public model and outcome (ok, error, failover, broken, cut_off, client_closed, invalid_request).",
                &["provider", "model", "outcome"],
            ),
            llm_ttft: histogram_vec(
                &r,
                "llm_time_to_first_token_seconds",
                "Time from forwarding an LLM call to the first byte of its answer's body.",
                &["provider"],
                &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0],
            ),
            llm_budget_rejections: counter(&r, "llm_budget_rejections_total", "LLM calls refused before forwarding: over a token budget."),
            llm_cost: registered(
                &r,
                CounterVec::new(opts("llm_cost_total", "What LLM tokens cost at `models_pricing`, by public model."), &["model"]),
            ),
            auth_failures_by_class: counter_vec(
                &r,
                "auth_failures_by_ip_class_total",
                "Refused credentials (401s) and failed logins, by the client address's class (loopback, private, public).",
                &["ip_class"],
            ),
            chain_panics: counter_vec(
                &r,
                "chain_panics_total",
                "Requests on a chain whose every provider was unhealthy (all tried in chain order anyway).",
                &["chain"],
            ),
            store_up: gauge(
                &r,
                "store_up",
                "1 while the store answered its last check, 0 while it does not (the gateway serves from its local views).",
            ),
            connections_open: gauge(&r, "connections_open", "Client connections open on the proxy listener."),
            connections_refused: counter_vec(
                &r,
                "connections_refused_total",
                "Client connections closed at accept: over `server.max_connections` (reason=total), `server.max_connections_per_ip` (reason=per_ip) or `server.max_new_connections_per_ip_per_second` (reason=new_per_ip).",
                &["reason"],
            ),
            header_timeouts: counter(
                &r,
                "header_timeouts_total",
                "Connections closed (408) because a request's header section did not arrive within `server.header_timeout_ms`.",
            ),
            // Registered only once a certificate is served (see `tls_cert_expires_at`).
            tls_cert_expiry: prometheus::Gauge::with_opts(opts(
                "tls_cert_expiry_seconds",
                "Seconds until the served TLS certificate expires (absent without TLS).",
            ))
            .expect("valid metric definition"),
            tls_expires_at: std::sync::atomic::AtomicI64::new(0),
            requests,
            request_duration,
            authz_denied,
            auth_failure_cache: LabelCache::new(),
            api_key_cache: LabelCache::new(),
            unmatched,
            gateway,
            registry: r,
        })
    }

    /// Declares label values known in advance, so each series exists at 0 from the start
    /// (Prometheus' instrumentation guide: a series that appears with its first event hides that
    /// event from `rate()` and `increase()`).
    pub fn declare(&self, family: Known, values: &[&str]) {
        let vec = match family {
            Known::AuthFailures => &self.auth_failures,
            Known::Logins => &self.logins,
            Known::ConfigReloads => &self.config_reloads,
            Known::ApiKeyRequests => &self.api_key_requests,
            Known::StoreErrors => &self.store_errors,
            Known::AuthFailuresByIpClass => &self.auth_failures_by_class,
            Known::ConnectionsRefused => &self.connections_refused,
        };
        for v in values {
            vec.with_label_values(&[v]);
        }
    }

    /// Declares a configured provider: its health and failure series exist (at 0) before its
    /// first health signal.
    pub fn provider_known(&self, provider: &str) {
        for s in ["healthy", "degraded", "unhealthy"] {
            self.provider_health.with_label_values(&[provider, s]);
        }
        self.provider_failures.with_label_values(&[provider]);
    }

    /// Handles for a configured route.
    pub fn route(&self, name: &str) -> Arc<RouteMetrics> {
        Arc::new(RouteMetrics {
            name: name.to_string(),
            requests: self.requests.clone(),
            by_status: LabelCache::new(),
            duration: self.request_duration.with_label_values(&[name]),
            denied: self.authz_denied.with_label_values(&[name]),
        })
    }

    /// Handles for requests that matched no route.
    pub fn unmatched(&self) -> &Arc<RouteMetrics> {
        &self.unmatched
    }

    /// Handles for the gateway's own endpoints.
    pub fn gateway(&self) -> &Arc<RouteMetrics> {
        &self.gateway
    }

    /// Handles for a configured upstream.
    pub fn upstream(&self, name: &str) -> UpstreamMetrics {
        UpstreamMetrics {
            outcomes: OUTCOMES.iter().map(|o| (*o, self.upstream_requests.with_label_values(&[name, o]))).collect(),
            duration: self.upstream_duration.with_label_values(&[name]),
        }
    }

    /// Counts a request that presented an API key, by outcome (a fixed word).
    pub fn api_key_request(&self, outcome: &'static str) {
        self.api_key_cache.get(outcome, || self.api_key_requests.with_label_values(&[outcome])).inc();
    }

    /// Sets how many API keys and denylist entries this instance knows.
    pub fn credentials(&self, api_keys: usize, denylist_entries: usize) {
        self.api_keys.set(api_keys as i64);
        self.denylist_entries.set(denylist_entries as i64);
    }

    /// Declares a configured identity provider's series (at 0 until its first fetch).
    pub fn idp_known(&self, provider: &str) {
        self.idp_keys.with_label_values(&[provider]);
        for result in ["ok", "error", "shared"] {
            self.idp_fetches.with_label_values(&[provider, result]);
        }
    }

    /// Counts one fetch of a provider's keys and sets how many it holds.
    pub fn idp_fetch(&self, provider: &str, result: &'static str, keys: usize) {
        self.idp_fetches.with_label_values(&[provider, result]).inc();
        self.idp_keys.with_label_values(&[provider]).set(keys as i64);
    }

    /// Counts a token refusal by reason (a fixed word such as `expired`).
    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failure_cache.get(reason, || self.auth_failures.with_label_values(&[reason])).inc();
    }

    /// Counts a login by result (`success`, `invalid_credentials`, `error`).
    pub fn login(&self, result: &'static str) {
        self.logins.with_label_values(&[result]).inc();
    }

    /// Counts ended sessions.
    pub fn sessions_revoked(&self, n: usize) {
        self.sessions_revoked.inc_by(n as u64);
    }

    /// Counts a config reload (`success` or `error`).
    pub fn config_reload(&self, result: &'static str) {
        self.config_reloads.with_label_values(&[result]).inc();
    }

    /// Counts a failed store operation.
    pub fn store_error(&self, op: &'static str) {
        self.store_errors.with_label_values(&[op]).inc();
    }

    /// Counts an emitted audit event by kind.
    pub fn audit_event(&self, kind: &'static str) {
        self.audit_cache.get(kind, || self.audit_events.with_label_values(&[kind])).inc();
    }

    /// Counts lost audit events.
    pub fn audit_dropped(&self, n: u64) {
        self.audit_dropped.inc_by(n);
    }

    /// Counts a refusal by a limit (`login_ip`, `login_account`, `account_locked`, `api_user`,
    /// `api_ip`, or a route's named limit).
    pub fn rate_limited(&self, limit: &str) {
        self.rate_limited.with_label_values(&[limit]).inc();
    }

    /// Sets a provider's health gauges.
    pub fn provider_state(&self, provider: &str, status: &str, consecutive_failures: u32) {
        for s in ["healthy", "degraded", "unhealthy"] {
            self.provider_health.with_label_values(&[provider, s]).set(i64::from(s == status));
        }
        self.provider_failures.with_label_values(&[provider]).set(i64::from(consecutive_failures));
    }

    /// Counts a failover from one provider to the next.
    pub fn failover(&self, chain: &str, from: &str, to: &str) {
        self.failovers.with_label_values(&[chain, from, to]).inc();
    }

    /// Counts a refused credential or failed login by the client's address class.
    pub fn auth_failure_from(&self, ip: Option<std::net::IpAddr>) {
        let class = ip.map_or("public", crate::clientip::class);
        self.auth_failures_by_class.with_label_values(&[class]).inc();
    }

    /// Counts a chain request in panic mode.
    pub fn chain_panic(&self, chain: &str) {
        self.chain_panics.with_label_values(&[chain]).inc();
    }

    /// One more (or one fewer) open client connection.
    pub fn connection_opened(&self, open: bool) {
        if open {
            self.connections_open.inc()
        } else {
            self.connections_open.dec()
        }
    }

    /// A connection refused at accept, because of the cap named (`total` or `per_ip`).
    pub fn connection_refused(&self, reason: &'static str) {
        self.connections_refused.with_label_values(&[reason]).inc();
    }

    /// A connection closed for a header section that came too slowly.
    pub fn header_timeout(&self) {
        self.header_timeouts.inc();
    }

    /// Whether the store answered its last check.
    pub fn store_up(&self, up: bool) {
        self.store_up.set(i64::from(up));
    }

    /// The served certificate's expiry (unix seconds); the gauge reports the seconds left when
    /// scraped. Registered only when TLS is served.
    pub fn tls_cert_expires_at(&self, not_after: i64) {
        if self.tls_expires_at.swap(not_after, std::sync::atomic::Ordering::Relaxed) == 0 {
            // Registered once, the first time a certificate is served.
            let _ = self.registry.register(Box::new(self.tls_cert_expiry.clone()));
        }
    }

    /// Counts one LLM call's outcome and tokens (and their cost, if priced).
    pub fn llm_call(&self, provider: &str, model: &str, outcome: &str, prompt: u64, completion: u64, cost: Option<f64>) {
        self.llm_requests.with_label_values(&[provider, model, outcome]).inc();
        if prompt + completion > 0 {
            self.llm_tokens.with_label_values(&[provider, model, "prompt"]).inc_by(prompt);
            self.llm_tokens.with_label_values(&[provider, model, "completion"]).inc_by(completion);
        }
        if let Some(c) = cost {
            self.llm_cost.with_label_values(&[model]).inc_by(c);
        }
    }

    /// Observes the time to an LLM answer's first body byte.
    pub fn llm_first_token(&self, provider: &str, seconds: f64) {
        self.llm_ttft.with_label_values(&[provider]).observe(seconds);
    }

    /// Counts a call refused for its token budget.
    pub fn llm_budget_rejected(&self) {
        self.llm_budget_rejections.inc();
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
        let r = m.route("projects-read");
        r.finished("GET", 200, 0.002);
        r.finished("GET", 200, 0.003);
        r.finished("GET", 403, 0.001);
        r.denied.inc();
        m.unmatched().finished("GET", 404, 0.0001);
        m.auth_failure("expired");
        m.auth_failure("expired");
        m.login("success");
        m.sessions_revoked(2);
        m.upstream("app").outcome("ok");
        m.config_reload("error");
        m.store_error("login");
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
        m.provider_known("openai");
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
