//! The Pingora `ProxyHttp` implementation. Each phase is a thin adapter: decisions are made by
//! [`crate::admission`] and [`crate::auth::api`]; this module only moves data between Pingora
//! and those functions.
//!
//! Never writes a token, a secret or a raw path into a log line.

mod headers;
mod reply;
mod upstream;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::Arc;

use crate::admission::{admit, Destination, Identity};
use crate::auth::api::{self, ApiContext, ApiRequest, MAX_BODY_BYTES};
use crate::auth::passwords::Passwords;
use crate::auth::sessions::Sessions;
use crate::auth::users::UserDirectory;
use crate::auth::TokenManager;
use crate::config::{Config, Upstream};
use crate::metrics::{method_label, Metrics, RouteMetrics, UpstreamMetrics};
use crate::policy::{Policy, Target};
pub use reply::error_body;
use std::time::Instant;

/// Everything a request is judged and routed with that comes from gateway.yaml. Swapped whole
/// on reload; a request keeps the snapshot it started with.
pub struct Snapshot {
    pub policy: Policy,
    pub tokens: TokenManager,
    pub upstreams: Vec<Upstream>,
    pub users: UserDirectory,
    pub admin_role: String,
    peers: Vec<HttpPeer>,
    /// Metric handles per route and per upstream (same order as the config's), if enabled.
    route_metrics: Vec<Arc<RouteMetrics>>,
    upstream_metrics: Vec<UpstreamMetrics>,
}

impl Snapshot {
    /// Builds the request-path view of a validated config.
    pub fn new(config: Config, metrics: Option<&Metrics>) -> Self {
        let peers = config.upstreams.iter().map(upstream::peer).collect();
        let (route_metrics, upstream_metrics) = match metrics {
            Some(m) => (
                config.policy.routes.routes().iter().map(|r| m.route(&r.name)).collect(),
                config.upstreams.iter().map(|u| m.upstream(&u.name)).collect(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        Snapshot {
            tokens: TokenManager::new(&config.tokens),
            policy: config.policy,
            upstreams: config.upstreams,
            users: UserDirectory::new(config.users.file_users),
            admin_role: config.users.admin_role,
            peers,
            route_metrics,
            upstream_metrics,
        }
    }
}

/// Long-lived services that outlive config reloads.
pub struct Services {
    pub sessions: Arc<Sessions>,
    pub passwords: Arc<Passwords>,
    pub metrics: Option<Arc<Metrics>>,
}

/// The proxy service.
pub struct Gateway {
    state: Arc<ArcSwap<Snapshot>>,
    services: Arc<Services>,
}

impl Gateway {
    /// A gateway serving whatever snapshot `state` holds.
    pub fn new(state: Arc<ArcSwap<Snapshot>>, services: Arc<Services>) -> Self {
        Gateway { state, services }
    }

    /// Serves one of the gateway's own endpoints (login, sessions, user admin).
    async fn serve_api(&self, session: &mut Session, ctx: &RequestCtx, snapshot: &Snapshot, path: &str) {
        let body = match read_body(session).await {
            Ok(b) => b,
            Err(message) => {
                let reply = api::ApiResponse {
                    status: 400,
                    body: serde_json::json!({ "error": "invalid_request", "message": message }),
                    challenge: false,
                };
                session.set_keepalive(None);
                reply::send_api(session, &reply, &ctx.request_id).await;
                return;
            }
        };
        let req = session.req_header();
        let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
        let client_ip = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip().to_string()).unwrap_or_default();
        let cx = ApiContext {
            tokens: &snapshot.tokens,
            roles: &snapshot.policy.roles,
            users: &snapshot.users,
            sessions: &self.services.sessions,
            passwords: &self.services.passwords,
            admin_role: &snapshot.admin_role,
            revocation_ttl: snapshot.tokens.access_ttl().as_secs() + snapshot.tokens.leeway_seconds(),
            metrics: self.services.metrics.as_deref(),
        };
        let api_req = ApiRequest {
            method: &req.method,
            path,
            content_type: header("content-type"),
            user_agent: header("user-agent").unwrap_or(""),
            client_ip: &client_ip,
            authorization: headers::authorization(req),
            body: &body,
        };
        let reply = api::handle(&cx, &api_req).await;
        reply::send_api(session, &reply, &ctx.request_id).await;
    }
}

/// Reads a request body of at most [`MAX_BODY_BYTES`].
async fn read_body(session: &mut Session) -> Result<Vec<u8>, String> {
    let too_large = || format!("the body is larger than {MAX_BODY_BYTES} bytes");
    let declared = session.req_header().headers.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(_) => return Err("the body could not be read".into()),
        }
    }
}

/// Per-request state carried between phases.
pub struct RequestCtx {
    started: Instant,
    snapshot: Option<Arc<Snapshot>>,
    request_id: String,
    route: Option<usize>,
    upstream: Option<usize>,
    /// The normalized path when it differs from the request's.
    rewritten_path: Option<String>,
    identity: Option<Identity>,
    /// Where this request's metrics go.
    route_metrics: Option<Arc<RouteMetrics>>,
    upstream_started: Option<Instant>,
    upstream_answered: bool,
}

impl RequestCtx {
    fn upstream_metrics(&self) -> Option<&UpstreamMetrics> {
        self.snapshot.as_ref().zip(self.upstream).and_then(|(s, i)| s.upstream_metrics.get(i))
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            snapshot: None,
            request_id: String::new(),
            route: None,
            upstream: None,
            rewritten_path: None,
            identity: None,
            route_metrics: None,
            upstream_started: None,
            upstream_answered: false,
        }
    }

    /// Enforces the whole admission policy (path normalization, routing, authentication,
    /// revocation, authorization) and serves the gateway's own endpoints. A refused request is
    /// answered here and never reaches an upstream.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let snapshot = self.state.load_full();
        let req = session.req_header();
        ctx.request_id = headers::request_id(req);
        let decision = admit(
            &snapshot.policy,
            &snapshot.tokens,
            self.services.sessions.as_ref(),
            &req.method,
            req.uri.path(),
            headers::authorization(req),
        );
        match decision {
            Ok(Destination::Upstream(admitted)) => {
                let Target::Upstream(upstream) = admitted.route.target;
                ctx.route = Some(admitted.route_index);
                ctx.upstream = Some(upstream);
                if admitted.path != req.uri.path() {
                    ctx.rewritten_path = Some(admitted.path.into_owned());
                }
                ctx.identity = admitted.identity;
                ctx.route_metrics = snapshot.route_metrics.get(admitted.route_index).cloned();
                ctx.snapshot = Some(snapshot);
                Ok(false)
            }
            Ok(Destination::Api(path)) => {
                let path = path.into_owned();
                ctx.route_metrics = self.services.metrics.as_ref().map(|m| m.gateway().clone());
                self.serve_api(session, ctx, &snapshot, &path).await;
                Ok(true)
            }
            Err(reject) => {
                let route_name = reject.route.as_ref().map(|(_, name)| name.as_str());
                tracing::debug!(status = reject.status, reason = reject.reason, route = route_name, request_id = %ctx.request_id, "request refused");
                if let Some(m) = &self.services.metrics {
                    ctx.route_metrics = match reject.route {
                        Some((i, _)) => snapshot.route_metrics.get(i).cloned(),
                        None => Some(m.unmatched().clone()),
                    };
                    match reject.status {
                        401 => m.auth_failure(reject.reason),
                        403 => {
                            if let Some(r) = &ctx.route_metrics {
                                r.denied.inc();
                            }
                        }
                        _ => {}
                    }
                }
                reply::send(session, &reject, &ctx.request_id).await;
                Ok(true)
            }
        }
    }

    /// Sends the request to the upstream its route names.
    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        ctx.upstream_started = Some(Instant::now());
        match (&ctx.snapshot, ctx.upstream) {
            (Some(snapshot), Some(i)) => Ok(Box::new(snapshot.peers[i].clone())),
            _ => Error::e_explain(ErrorType::InternalError, "no upstream decided for this request"),
        }
    }

    /// Rewrites the upstream request: normalized path, verified identity headers only, no client
    /// credentials unless the upstream asks for them, a request id, forwarding headers.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(up) = ctx.snapshot.as_ref().zip(ctx.upstream).map(|(s, i)| &s.upstreams[i]) else {
            return Error::e_explain(ErrorType::InternalError, "no upstream decided for this request");
        };
        headers::rewrite_upstream_request(
            upstream_request,
            &headers::Forwarding {
                path: ctx.rewritten_path.as_deref(),
                identity: ctx.identity.as_ref(),
                request_id: &ctx.request_id,
                client_ip: session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip()),
                upstream: up,
            },
        )
    }

    /// Times the upstream until its response header.
    async fn upstream_response_filter(&self, _session: &mut Session, response: &mut ResponseHeader, ctx: &mut RequestCtx) -> Result<()> {
        if !ctx.upstream_answered {
            ctx.upstream_answered = true;
            if let (Some(m), Some(t)) = (ctx.upstream_metrics(), ctx.upstream_started) {
                m.duration.observe(t.elapsed().as_secs_f64());
                m.outcome(if response.status.is_server_error() { "http_5xx" } else { "ok" });
            }
        }
        Ok(())
    }

    /// Records the request's metrics (every request passes here, refused or not).
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        if let Some(r) = &ctx.route_metrics {
            r.finished(method_label(&session.req_header().method), status, ctx.started.elapsed().as_secs_f64());
        }
        if let (Some(e), false, Some(m)) = (e, ctx.upstream_answered, ctx.upstream_metrics()) {
            if ctx.upstream_started.is_some() && e.esource() == &ErrorSource::Upstream {
                m.outcome(match e.etype() {
                    ErrorType::ConnectTimedout | ErrorType::ConnectRefused | ErrorType::ConnectNoRoute | ErrorType::ConnectError => {
                        "connect_error"
                    }
                    ErrorType::ReadTimedout | ErrorType::WriteTimedout => "timeout",
                    _ => "error",
                });
            }
        }
    }

    /// Tells the client which request id the gateway used.
    async fn response_filter(&self, _session: &mut Session, response: &mut ResponseHeader, ctx: &mut RequestCtx) -> Result<()> {
        response.insert_header("x-request-id", &ctx.request_id)?;
        Ok(())
    }

    /// Answers a request that failed after admission (upstream unreachable, timed out, broke)
    /// with a JSON error, unless a response was already under way.
    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
        let reject = reply::for_error(e);
        if let (Some(reject), true) = (&reject, session.response_written().is_none()) {
            tracing::warn!(status = reject.status, reason = reject.reason, request_id = %ctx.request_id, error = ?e.etype(), "request failed");
            reply::send(session, reject, &ctx.request_id).await;
        }
        FailToProxy { error_code: reject.map_or(0, |r| r.status), can_reuse_downstream: false }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // fail_to_proxy logs the failure without the request line (which may hold a token in a
        // query string).
        true
    }
}
