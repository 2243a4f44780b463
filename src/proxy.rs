//! The Pingora `ProxyHttp` implementation. Each phase is a thin adapter: decisions are made by
//! [`crate::admission`] and [`crate::auth::api`]; this module only moves data between Pingora
//! and those functions.
//!
//! Never writes a token, a secret or a raw path into a log line.

mod access;
mod bridge;
mod guard;
mod headers;
pub mod llm;
mod reply;
mod upstream;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::Arc;

use crate::admission::{admit, Destination, Identity, Reject};
use crate::audit::Audit;
use crate::auth::passwords::Passwords;
use crate::auth::sessions::Sessions;
use crate::auth::users::UserDirectory;
use crate::auth::TokenManager;
use crate::clientip::{client_ip, Cidr};
use crate::config::security::RateLimitSettings;
use crate::config::{Config, Upstream};
use crate::cors::{CorsPolicy, Preflight};
use crate::metrics::{method_label, Metrics, RouteMetrics, UpstreamMetrics};
use crate::policy::{Policy, Target};
use crate::ratelimit::{Limiter, LockoutPolicy};
use http::header::{HeaderName, HeaderValue, STRICT_TRANSPORT_SECURITY, VARY};
use std::net::IpAddr;
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
    pub rate_limits: RateLimitSettings,
    pub lockout: Option<LockoutPolicy>,
    pub cors: Option<CorsPolicy>,
    pub trusted_proxies: Vec<Cidr>,
    pub max_header_bytes: usize,
    pub max_header_count: usize,
    pub providers: Vec<crate::config::providers::Provider>,
    pub chains: Vec<crate::config::providers::Chain>,
    provider_peers: Vec<HttpPeer>,
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
            rate_limits: config.rate_limits,
            lockout: config.lockout,
            cors: config.cors,
            trusted_proxies: config.server.trusted_proxies,
            max_header_bytes: config.server.max_header_bytes,
            max_header_count: config.server.max_header_count,
            provider_peers: config.providers.iter().map(llm::provider_peer).collect(),
            providers: config.providers,
            chains: config.chains,
        }
    }
}

/// Long-lived services that outlive config reloads.
pub struct Services {
    pub sessions: Arc<Sessions>,
    pub passwords: Arc<Passwords>,
    pub metrics: Option<Arc<Metrics>>,
    pub limiter: Arc<Limiter>,
    pub audit: Option<Audit>,
    pub tracker: Arc<crate::providers::tracker::Tracker>,
    pub connector: Arc<pingora::connectors::http::Connector>,
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

    /// Answers a refused request: counts it, audits a token refusal, writes the JSON error.
    async fn refuse(&self, session: &mut Session, ctx: &mut RequestCtx, snapshot: &Snapshot, reject: Reject) {
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
        if reject.status == 401 {
            self.audit_token_rejected(session, ctx, reject.reason);
        }
        ctx.refusal = Some((reject.status, reject.reason, reject.route.as_ref().map(|(_, n)| n.clone())));
        let extra = self.reply_headers(ctx, snapshot, &reject.headers);
        reply::send(session, &reject, &ctx.request_id, &extra).await;
    }

    /// Headers every gateway-written reply carries beyond the basics: CORS and HSTS.
    fn reply_headers(&self, ctx: &RequestCtx, snapshot: &Snapshot, more: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
        let mut h: Vec<(&'static str, String)> = more.to_vec();
        if let Some(cors) = &snapshot.cors {
            h.extend(cors.response_headers(ctx.origin.as_deref()));
        }
        if ctx.tls {
            h.push(("strict-transport-security", reply::HSTS.into()));
        }
        h
    }
}

/// Per-request state carried between phases.
pub struct RequestCtx {
    started: Instant,
    snapshot: Option<Arc<Snapshot>>,
    request_id: String,
    /// The TCP peer (the last hop, for `X-Forwarded-For`).
    peer: Option<IpAddr>,
    client_ip: Option<IpAddr>,
    /// Served over TLS.
    tls: bool,
    /// The request's Origin, kept only when CORS is configured.
    origin: Option<String>,
    route: Option<usize>,
    upstream: Option<usize>,
    /// The normalized path when it differs from the request's.
    rewritten_path: Option<String>,
    /// The normalized path for the audit trail (kept only when auditing).
    audit_path: Option<String>,
    identity: Option<Arc<Identity>>,
    /// RateLimit headers for the response.
    limit_headers: Vec<(&'static str, String)>,
    /// Why the gateway refused the request: (status, reason, route name).
    refusal: Option<(u16, &'static str, Option<String>)>,
    /// Served by the gateway's own endpoints (audited there).
    api: bool,
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
            peer: None,
            client_ip: None,
            tls: false,
            origin: None,
            route: None,
            upstream: None,
            rewritten_path: None,
            audit_path: None,
            identity: None,
            limit_headers: Vec::new(),
            refusal: None,
            api: false,
            route_metrics: None,
            upstream_started: None,
            upstream_answered: false,
        }
    }

    /// Enforces the whole admission policy: request shape and header limits, CORS preflights,
    /// path normalization, routing, authentication, revocation, authorization and rate limits;
    /// serves the gateway's own endpoints. A refused request is answered here and never reaches
    /// an upstream.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let snapshot = self.state.load_full();
        let req = session.req_header();
        ctx.request_id = headers::request_id(req);
        ctx.tls = session.digest().and_then(|d| d.ssl_digest.as_ref()).is_some();
        let peer = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        ctx.peer = peer;
        ctx.client_ip =
            peer.map(|p| client_ip(p, req.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()), &snapshot.trusted_proxies));
        if snapshot.cors.is_some() {
            ctx.origin = req.headers.get("origin").and_then(|v| v.to_str().ok()).map(str::to_string);
        }
        let raw = match session.as_downstream() {
            pingora::protocols::http::ServerSession::H1(h1) => Some(h1.get_headers_raw_bytes()),
            _ => None,
        };
        if let Err(reject) = guard::check_shape(req, raw.as_deref(), snapshot.max_header_bytes, snapshot.max_header_count) {
            self.refuse(session, ctx, &snapshot, reject).await;
            return Ok(true);
        }
        if let Some(cors) = &snapshot.cors {
            let header = |n: &str| req.headers.get(n).and_then(|v| v.to_str().ok());
            match cors.preflight(
                req.method.as_str(),
                ctx.origin.as_deref(),
                header("access-control-request-method"),
                header("access-control-request-headers"),
            ) {
                Preflight::No => {}
                Preflight::Allowed(h) => {
                    ctx.refusal = Some((204, "cors_preflight", None));
                    reply::send_empty(session, 204, &ctx.request_id, &h).await;
                    return Ok(true);
                }
                Preflight::Denied => {
                    let reject = Reject::new(403, "cors_denied", "this cross-origin request is not allowed", "cors_denied");
                    self.refuse(session, ctx, &snapshot, reject).await;
                    return Ok(true);
                }
            }
        }
        let req = session.req_header();
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
                if let Err(reject) = self.limit_admitted(ctx, &snapshot, admitted.route, admitted.identity.as_deref()) {
                    self.refuse(session, ctx, &snapshot, reject).await;
                    return Ok(true);
                }
                ctx.route = Some(admitted.route_index);
                ctx.identity = admitted.identity.clone();
                if self.services.audit.is_some() {
                    ctx.audit_path = Some(admitted.path.to_string());
                }
                ctx.route_metrics = snapshot.route_metrics.get(admitted.route_index).cloned();
                let upstream = match admitted.route.target {
                    Target::Upstream(u) => u,
                    Target::Chain(c) => {
                        let path = admitted.path.into_owned();
                        ctx.snapshot = Some(snapshot.clone());
                        self.forward_chain(session, ctx, &snapshot, c, &path).await?;
                        return Ok(true);
                    }
                };
                ctx.upstream = Some(upstream);
                if admitted.path != req.uri.path() {
                    ctx.rewritten_path = Some(admitted.path.into_owned());
                }
                ctx.snapshot = Some(snapshot);
                Ok(false)
            }
            Ok(Destination::Api(path)) => {
                let path = path.into_owned();
                ctx.api = true;
                ctx.route_metrics = self.services.metrics.as_ref().map(|m| m.gateway().clone());
                self.serve_api(session, ctx, &snapshot, &path).await;
                Ok(true)
            }
            Err(reject) => {
                // Unauthenticated requests count against the per-IP limit: token guessing is throttled.
                let reject = if reject.status == 401 { self.limit_unauthenticated(ctx, &snapshot).err().unwrap_or(reject) } else { reject };
                self.refuse(session, ctx, &snapshot, reject).await;
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
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(up) = ctx.snapshot.as_ref().zip(ctx.upstream).map(|(s, i)| &s.upstreams[i]) else {
            return Error::e_explain(ErrorType::InternalError, "no upstream decided for this request");
        };
        let peer = ctx.peer.map(crate::clientip::ip_text);
        headers::rewrite_upstream_request(
            upstream_request,
            &headers::Forwarding {
                path: ctx.rewritten_path.as_deref(),
                identity: ctx.identity.as_deref(),
                request_id: &ctx.request_id,
                client_ip: peer.as_deref(),
                tls: ctx.tls,
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

    /// Records the request's metrics and its access audit event (every request passes here,
    /// refused or not).
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        self.audit_access(session, ctx, status);
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

    /// Adds the request id, the security headers (where the upstream set none), HSTS over TLS,
    /// CORS and RateLimit headers.
    async fn response_filter(&self, _session: &mut Session, response: &mut ResponseHeader, ctx: &mut RequestCtx) -> Result<()> {
        let request_id = headers::value(&ctx.request_id)?;
        let Some(snapshot) = ctx.snapshot.as_ref() else {
            response.insert_header(headers::X_REQUEST_ID, request_id)?;
            return Ok(());
        };
        let hardened = ctx.upstream.and_then(|i| snapshot.upstreams.get(i)).is_none_or(|u| u.security_headers);
        let cors = snapshot.cors.as_ref().map(|c| c.response_headers(ctx.origin.as_deref())).unwrap_or_default();
        let limits = std::mem::take(&mut ctx.limit_headers);
        headers::edit_response(response, |parts| {
            let h = &mut parts.headers;
            h.reserve(8); // at most one rehash for everything set below
            h.insert(headers::X_REQUEST_ID, request_id);
            if hardened {
                for (name, value) in reply::SECURITY_HEADERS {
                    let name = HeaderName::from_static(name);
                    if !h.contains_key(&name) {
                        h.insert(name, HeaderValue::from_static(value));
                    }
                }
                if ctx.tls && !h.contains_key(STRICT_TRANSPORT_SECURITY) {
                    h.insert(STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(reply::HSTS));
                }
            }
            for (name, value) in cors.into_iter().chain(limits) {
                let (name, value) = (HeaderName::from_static(name), headers::value(&value)?);
                if name == VARY {
                    h.append(name, value); // keep the upstream's own Vary
                } else {
                    h.insert(name, value);
                }
            }
            Ok(())
        })
    }

    /// Answers a request that failed after admission (upstream unreachable, timed out, broke)
    /// with a JSON error, unless a response was already under way.
    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
        let reject = reply::for_error(e);
        if let (Some(reject), true) = (&reject, session.response_written().is_none()) {
            tracing::warn!(status = reject.status, reason = reject.reason, request_id = %ctx.request_id, error = ?e.etype(), "request failed");
            let extra = match ctx.snapshot.clone() {
                Some(snapshot) => self.reply_headers(ctx, &snapshot, &[]),
                None => Vec::new(),
            };
            reply::send(session, reject, &ctx.request_id, &extra).await;
        }
        FailToProxy { error_code: reject.map_or(0, |r| r.status), can_reuse_downstream: false }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // fail_to_proxy logs the failure without the request line (which may hold a token in a
        // query string).
        true
    }
}
