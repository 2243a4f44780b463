//! The gateway's own operation: config reloads, the store, the audit trail, the build.

use prometheus::{IntCounter, IntCounterVec, IntGauge};

use super::families::Families;
use super::LabelCache;

pub struct OpsMetrics {
    pub(super) config_reloads: IntCounterVec,
    pub(super) store_errors: IntCounterVec,
    store_up: IntGauge,
    audit_events: IntCounterVec,
    audit_cache: LabelCache<&'static str, IntCounter>,
    audit_dropped: IntCounter,
}

impl OpsMetrics {
    pub fn new(f: &Families) -> Self {
        let build_info = f.gauge_vec("build_info", "Always 1; the version label says which build runs.", &["version"]);
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        OpsMetrics {
            config_reloads: f.counter_vec("config_reloads_total", "Config reloads, by result.", &["result"]),
            store_errors: f.counter_vec("store_errors_total", "Failed store operations, by operation.", &["op"]),
            store_up: f.gauge(
                "store_up",
                "1 while the store answered its last check, 0 while it does not (the gateway serves from its local views).",
            ),
            audit_events: f.counter_vec("audit_events_total", "Audit events emitted, by kind.", &["kind"]),
            audit_cache: LabelCache::new(),
            audit_dropped: f.counter("audit_dropped_total", "Audit events lost because the sink could not keep up or was down."),
        }
    }

    /// Counts a config reload (`success` or `error`).
    pub fn config_reload(&self, result: &'static str) {
        self.config_reloads.with_label_values(&[result]).inc();
    }

    /// Counts a failed store operation.
    pub fn store_error(&self, op: &'static str) {
        self.store_errors.with_label_values(&[op]).inc();
    }

    /// Whether the store answered its last check.
    pub fn store_up(&self, up: bool) {
        self.store_up.set(i64::from(up));
    }

    /// Counts an emitted audit event by kind.
    pub fn audit_event(&self, kind: &'static str) {
        self.audit_cache.get(kind, || self.audit_events.with_label_values(&[kind])).inc();
    }

    /// Counts lost audit events.
    pub fn audit_dropped(&self, n: u64) {
        self.audit_dropped.inc_by(n);
    }
}
