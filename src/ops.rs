//! The admin listener (`server.admin_listen`): liveness, readiness and Prometheus metrics, for
//! orchestrators and the Prometheus that scrapes the gateway. Separate from the proxy listener so
//! operators can keep it off the public network. The `/admin/*` endpoints of the proxy listener
//! live with what they administer (`auth::admin`, `providers::admin`).

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

use crate::auth::sessions::Sessions;
use crate::metrics::Metrics;

/// Serves `GET /healthz` (alive), `GET /readyz` (the store answers) and `GET /metrics`.
pub struct AdminApp {
    pub sessions: Arc<Sessions>,
    /// None when `metrics.enabled` is false.
    pub metrics: Option<Arc<Metrics>>,
    /// External identity providers (their state is reported in `/readyz` details).
    pub issuers: Arc<crate::auth::issuers::Issuers>,
}

fn json(status: u16, body: serde_json::Value) -> Response<Vec<u8>> {
    let body = body.to_string().into_bytes();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        match (req.method.as_str(), req.uri.path()) {
            ("GET" | "HEAD", "/healthz") => json(200, serde_json::json!({ "status": "ok" })),
            ("GET" | "HEAD", "/readyz") => {
                // A provider that cannot be reached does not make the gateway unready (its own
                // tokens and the other providers' keep working); it is reported in the details.
                let ready = self.sessions.store_healthy();
                let mut body = if ready {
                    serde_json::json!({ "status": "ready" })
                } else {
                    serde_json::json!({ "status": "not_ready", "reason": "store_unavailable" })
                };
                if !self.issuers.is_empty() {
                    body["identity_providers"] = self.issuers.report();
                }
                json(if ready { 200 } else { 503 }, body)
            }
            ("GET", "/metrics") => match &self.metrics {
                Some(m) => {
                    let body = m.render();
                    Response::builder()
                        .status(200)
                        .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                        .header("content-length", body.len())
                        .body(body)
                        .unwrap_or_default()
                }
                None => json(404, serde_json::json!({ "error": "not_found", "message": "metrics are disabled (metrics.enabled: false)" })),
            },
            #[cfg(debug_assertions)]
            ("POST", "/test/clock") if crate::clock::test::enabled() => {
                let advance = req.uri.query().and_then(|q| q.strip_prefix("advance_seconds=")).and_then(|n| n.parse::<u64>().ok());
                match advance {
                    Some(n) => json(200, serde_json::json!({ "offset_seconds": crate::clock::test::advance(n) })),
                    None => json(400, serde_json::json!({ "error": "invalid_request", "message": "use ?advance_seconds=N" })),
                }
            }
            (_, "/healthz" | "/readyz" | "/metrics") => {
                json(405, serde_json::json!({ "error": "method_not_allowed", "message": "use GET" }))
            }
            _ => json(404, serde_json::json!({ "error": "not_found", "message": "no such admin endpoint" })),
        }
    }
}
