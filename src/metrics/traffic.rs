//! Requests, routes, upstreams and client connections.

use std::collections::HashMap;
use std::sync::Arc;

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge};

use super::families::Families;
use super::LabelCache;

/// Route label for requests that matched no route (404, bad paths).
pub const UNMATCHED: &str = "_unmatched";
/// Route label for the gateway's own endpoints (/auth, /admin/users).
pub const GATEWAY: &str = crate::policy::GATEWAY_ROUTE;

const LATENCY_BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// What happened to one upstream request.
pub const OUTCOMES: [&str; 5] = ["ok", "http_5xx", "connect_error", "timeout", "error"];

pub struct TrafficMetrics {
    requests: IntCounterVec,
    request_duration: HistogramVec,
    authz_denied: IntCounterVec,
    upstream_requests: IntCounterVec,
    upstream_duration: HistogramVec,
    connections_open: IntGauge,
    pub(super) connections_refused: IntCounterVec,
    header_timeouts: IntCounter,
    /// The special routes' handles (unmatched, gateway endpoints).
    unmatched: Arc<RouteMetrics>,
    gateway: Arc<RouteMetrics>,
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

impl UpstreamMetrics {
    /// Counts one upstream attempt's outcome (one of [`OUTCOMES`]).
    pub fn outcome(&self, outcome: &'static str) {
        if let Some(c) = self.outcomes.get(outcome) {
            c.inc();
        }
    }
}

fn route(requests: &IntCounterVec, duration: &HistogramVec, denied: &IntCounterVec, name: &str) -> Arc<RouteMetrics> {
    Arc::new(RouteMetrics {
        name: name.to_string(),
        requests: requests.clone(),
        by_status: LabelCache::new(),
        duration: duration.with_label_values(&[name]),
        denied: denied.with_label_values(&[name]),
    })
}

impl TrafficMetrics {
    pub fn new(f: &Families) -> Self {
        let requests =
            f.counter_vec("requests_total", "Requests answered, by route name, method and status.", &["route", "method", "status"]);
        let request_duration = f.histogram_vec(
            "request_duration_seconds",
            "Time from request to the end of the response, by route.",
            &["route"],
            &LATENCY_BUCKETS,
        );
        let authz_denied =
            f.counter_vec("authz_denied_total", "Authenticated requests refused for lack of role or permission, by route.", &["route"]);
        TrafficMetrics {
            unmatched: route(&requests, &request_duration, &authz_denied, UNMATCHED),
            gateway: route(&requests, &request_duration, &authz_denied, GATEWAY),
            requests,
            request_duration,
            authz_denied,
            upstream_requests: f.counter_vec(
                "upstream_requests_total",
                "Requests sent upstream, by upstream and outcome.",
                &["upstream", "outcome"],
            ),
            upstream_duration: f.histogram_vec(
                "upstream_duration_seconds",
                "Time until the upstream's response header, by upstream.",
                &["upstream"],
                &LATENCY_BUCKETS,
            ),
            connections_open: f.gauge("connections_open", "Client connections open on the proxy listener."),
            connections_refused: f.counter_vec(
                "connections_refused_total",
                "Client connections closed at accept: over `server.max_connections` (reason=total), `server.max_connections_per_ip` (reason=per_ip) or `server.max_new_connections_per_ip_per_second` (reason=new_per_ip).",
                &["reason"],
            ),
            header_timeouts: f.counter(
                "header_timeouts_total",
                "Connections closed (408) because a request's header section did not arrive within `server.header_timeout_ms`.",
            ),
        }
    }

    /// Handles for a configured route.
    pub fn route(&self, name: &str) -> Arc<RouteMetrics> {
        route(&self.requests, &self.request_duration, &self.authz_denied, name)
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

    /// One more (or one fewer) open client connection.
    pub fn connection_opened(&self, open: bool) {
        if open {
            self.connections_open.inc()
        } else {
            self.connections_open.dec()
        }
    }

    /// A connection refused at accept, because of the cap named (`total`, `per_ip`, `new_per_ip`).
    pub fn connection_refused(&self, reason: &'static str) {
        self.connections_refused.with_label_values(&[reason]).inc();
    }

    /// A connection closed for a header section that came too slowly.
    pub fn header_timeout(&self) {
        self.header_timeouts.inc();
    }
}
