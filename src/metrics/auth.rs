//! Credentials, logins, sessions, identity providers and limits.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

use super::families::Families;
use super::LabelCache;

pub struct AuthMetrics {
    pub(super) auth_failures: IntCounterVec,
    auth_failure_cache: LabelCache<&'static str, IntCounter>,
    pub(super) auth_failures_by_class: IntCounterVec,
    pub(super) logins: IntCounterVec,
    sessions_revoked: IntCounter,
    pub(super) api_key_requests: IntCounterVec,
    api_key_cache: LabelCache<&'static str, IntCounter>,
    api_keys: IntGauge,
    denylist_entries: IntGauge,
    idp_keys: IntGaugeVec,
    idp_fetches: IntCounterVec,
    rate_limited: IntCounterVec,
}

impl AuthMetrics {
    pub fn new(f: &Families) -> Self {
        AuthMetrics {
            auth_failures: f.counter_vec("auth_failures_total", "Requests refused for a missing or bad token, by reason.", &["reason"]),
            auth_failure_cache: LabelCache::new(),
            auth_failures_by_class: f.counter_vec(
                "auth_failures_by_ip_class_total",
                "Refused credentials (401s) and failed logins, by the client address's class (loopback, private, public).",
                &["ip_class"],
            ),
            logins: f.counter_vec("logins_total", "Login attempts, by result.", &["result"]),
            sessions_revoked: f.counter("sessions_revoked_total", "Sessions ended by logout, reuse detection or an admin."),
            api_key_requests: f.counter_vec(
                "api_key_requests_total",
                "Requests that presented an API key, by outcome (accepted, or why refused).",
                &["outcome"],
            ),
            api_key_cache: LabelCache::new(),
            api_keys: f.gauge("api_keys", "API keys issued and not revoked, as this instance knows them."),
            denylist_entries: f.gauge("denylist_entries", "Admin denylist entries in force, as this instance knows them."),
            idp_keys: f.gauge_vec(
                "identity_provider_keys",
                "Verification keys held for an identity provider (0: its tokens are refused).",
                &["provider"],
            ),
            idp_fetches: f.counter_vec(
                "identity_provider_fetches_total",
                "Fetches of an identity provider's keys, by provider and result (ok, error; shared: taken from another instance's fetch).",
                &["provider", "result"],
            ),
            rate_limited: f.counter_vec("rate_limited_total", "Requests refused by a rate limit or lockout, by limit.", &["limit"]),
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

    /// Counts a refused credential or failed login by the client's address class.
    pub fn auth_failure_from(&self, ip: Option<std::net::IpAddr>) {
        let class = ip.map_or("public", crate::clientip::class);
        self.auth_failures_by_class.with_label_values(&[class]).inc();
    }

    /// Counts a login by result (`success`, `invalid_credentials`, `error`).
    pub fn login(&self, result: &'static str) {
        self.logins.with_label_values(&[result]).inc();
    }

    /// Counts ended sessions.
    pub fn sessions_revoked(&self, n: usize) {
        self.sessions_revoked.inc_by(n as u64);
    }

    /// Counts a refusal by a limit (`login_ip`, `login_account`, `account_locked`, `api_user`,
    /// `api_ip`, or a route's named limit).
    pub fn rate_limited(&self, limit: &str) {
        self.rate_limited.with_label_values(&[limit]).inc();
    }
}
