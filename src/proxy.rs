//! The Pingora `ProxyHttp` implementation: the life of a request as a short list of phases.
//!
//! `request_filter` runs, in order:
//! 1. **identify**: request id, TCP peer, client address, TLS, CORS origin (never refuses);
//! 2. **shape**: header-section size and message framing ([`guard`]: 431, 400);
//! 3. **cors**: preflights answered (204) or refused (403) ([`crate::cors`]);
//! 4. **admit**: path, route, token, session, role ([`crate::admission`]: 400, 404, 401, 503, 403);
//! 5. **limit**: per user (or per IP when public) and the route's own limit ([`limits`]: 429);
//! 6. **dispatch**: to the route's upstream (Pingora proxies it), a provider chain ([`chain`]),
//!    or one of the gateway's own endpoints ([`endpoints`]).
//!
//! Phases 2 to 5 return `Result<_, Reject>`; one adapter ([`reply::send`]) writes every reply the
//! gateway makes, and one function ([`headers::finish`]) finishes the headers of every response,
//! whether it came from an upstream, a provider or the gateway. `logging` writes the metrics and
//! the access audit record of every request ([`audit`]).
//!
//! Never writes a token, a secret or a raw path into a log line.

mod audit;
mod chain;
mod endpoints;
pub mod guard;
pub mod headers;
mod limits;
mod plan;
mod relay;
pub mod reply;
mod snapshot;
pub mod upstream;

pub use snapshot::{Guards, Snapshot, SnapshotParts};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::HeaderValue;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::admission::{admit, Identity, Local, Presented, Presenting, Reject, Verifiers};
use crate::audit::Audit;
use crate::auth::credentials::Credentials;
use crate::auth::passwords::Passwords;
use crate::auth::sessions::Sessions;
use crate::clientcert::ClientCert;
use crate::clientip::{client_ip, ip_text};
use crate::cors::Preflight;
use crate::metrics::{method_label, Metrics, RouteMetrics, UpstreamMetrics};
use crate::policy::{Endpoint, RouteId, Target};
use crate::providers::tracker::Tracker;
use crate::ratelimit::Limiter;
use crate::store::UserStore;
use reply::Reply;

/// Long-lived services that outlive config reloads.
pub struct Services {
    pub sessions: Arc<Sessions>,
    pub credentials: Arc<Credentials>,
    pub issuers: Arc<crate::auth::issuers::Issuers>,
    pub users: Arc<dyn UserStore>,
    pub passwords: Arc<Passwords>,
    pub metrics: Option<Arc<Metrics>>,
    pub limiter: Arc<Limiter>,
    pub audit: Option<Audit>,
    pub tracker: Arc<Tracker>,
    pub connector: Arc<pingora::connectors::http::Connector>,
    pub budgets: Arc<crate::providers::budget::Budgets>,
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
}

/// How the gateway answered a request (for the audit trail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Sent to an upstream or a provider.
    Forwarded,
    /// Answered by one of the gateway's endpoints (which audit their own events).
    Endpoint,
    /// A CORS preflight, answered 204 (not an access decision).
    Preflight,
    /// Refused by the gateway.
    Refused { status: u16, reason: &'static str },
}

/// What the judging phases decided to do with an admitted request.
enum Next {
    /// Answer a CORS preflight with these headers.
    Preflight(Vec<(&'static str, String)>),
    /// Let Pingora proxy it to `ctx.upstream`.
    Upstream,
    /// Forward it along a provider chain, at this normalized path.
    Chain(usize, String),
    /// Serve it from one of the gateway's endpoints, at this normalized path.
    Endpoint(Endpoint, String),
}

/// Per-request state carried between phases.
pub struct RequestCtx {
    started: Instant,
    snapshot: Option<Arc<Snapshot>>,
    request_id: String,
    /// The same, as the header value every response carries.
    request_id_value: HeaderValue,
    /// The TCP peer (the last hop, for `X-Forwarded-For`).
    peer: Option<IpAddr>,
    client_ip: Option<IpAddr>,
    /// The peer's address as text, made once (`X-Forwarded-For`, and usually the client's too).
    peer_text: Option<String>,
    /// The client's address as text when it is not the peer's (behind a trusted proxy).
    client_text: Option<String>,
    /// Served over TLS.
    tls: bool,
    /// The request's Origin, kept only when CORS is configured.
    origin: Option<String>,
    /// The matched route, once known (refused requests too).
    route: Option<RouteId>,
    upstream: Option<usize>,
    /// The normalized path when it differs from the request's.
    rewritten_path: Option<String>,
    /// The normalized path for the audit trail (kept only when auditing).
    audit_path: Option<String>,
    /// Who the request is from, once verified (refused requests too).
    identity: Option<Arc<Identity>>,
    /// The kind of credential the request presented, if any.
    presenting: Option<Presenting>,
    /// The external issuer whose keys lacked the token's `kid` (one refetch, then judged again).
    refetch_issuer: Option<String>,
    /// `RateLimit-Policy` and `RateLimit` for the response: the last limit the request passed.
    limit_headers: Option<(HeaderValue, HeaderValue)>,
    answer: Answer,
    /// Where this request's metrics go.
    route_metrics: Option<Arc<RouteMetrics>>,
    upstream_started: Option<Instant>,
    upstream_answered: bool,
}

impl RequestCtx {
    /// The client's address as text.
    fn client_text(&self) -> Option<&str> {
        self.client_text.as_deref().or(self.peer_text.as_deref())
    }

    fn upstream_metrics(&self) -> Option<&UpstreamMetrics> {
        self.snapshot.as_ref().zip(self.upstream).and_then(|(s, i)| s.upstream_metrics.get(i))
    }

    /// How this request's responses are finished: the same for every kind of response.
    fn finishing(&self) -> headers::Finish<'_> {
        let snapshot = self.snapshot.as_deref();
        let upstream = snapshot.zip(self.upstream).and_then(|(s, i)| s.upstreams.get(i));
        headers::Finish {
            request_id: &self.request_id_value,
            harden: upstream.is_none_or(|u| u.security_headers),
            tls: self.tls,
            cors: snapshot.and_then(|s| s.guards.cors.as_ref()).map(|c| (c, self.origin.as_deref())),
            limits: self.limit_headers.as_ref(),
        }
    }
}

// === the phases ===

impl Gateway {
    /// Phase 1: what the request is and where it came from. Never refuses.
    fn identify(&self, session: &Session, ctx: &mut RequestCtx, snapshot: &Snapshot) {
        let req = session.req_header();
        (ctx.request_id, ctx.request_id_value) = headers::request_id(req);
        ctx.tls = session.digest().and_then(|d| d.ssl_digest.as_ref()).is_some();
        ctx.peer = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        ctx.client_ip = match (ctx.peer, snapshot.guards.trusted_proxies.is_empty()) {
            (Some(p), false) => Some(client_ip(
                p,
                req.headers.get(headers::X_FORWARDED_FOR).and_then(|v| v.to_str().ok()),
                &snapshot.guards.trusted_proxies,
            )),
            (peer, _) => peer,
        };
        ctx.peer_text = ctx.peer.map(ip_text);
        if ctx.client_ip != ctx.peer {
            ctx.client_text = ctx.client_ip.map(ip_text);
        }
        if snapshot.guards.cors.is_some() {
            ctx.origin = req.headers.get(http::header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_string);
        }
    }

    /// Phases 2 to 5: shape, CORS, admission, limits. Decides where an admitted request goes.
    fn judge(&self, session: &Session, ctx: &mut RequestCtx, snapshot: &Snapshot) -> Result<Next, Reject> {
        let req = session.req_header();
        let raw = match session.as_downstream() {
            pingora::protocols::http::ServerSession::H1(h1) => Some(h1.get_headers_raw_bytes()),
            _ => None,
        };
        guard::check_shape(req, raw.as_deref(), snapshot.guards.max_header_bytes, snapshot.guards.max_header_count)?;
        if let Some(cors) = &snapshot.guards.cors {
            let header = |n: &str| req.headers.get(n).and_then(|v| v.to_str().ok());
            match cors.preflight(
                req.method.as_str(),
                ctx.origin.as_deref(),
                header("access-control-request-method"),
                header("access-control-request-headers"),
            ) {
                Preflight::No => {}
                Preflight::Allowed(h) => return Ok(Next::Preflight(h)),
                Preflight::Denied => {
                    return Err(Reject::new(403, "cors_denied", "this cross-origin request is not allowed", "cors_denied"))
                }
            }
        }
        let gate = Local { sessions: &self.services.sessions, credentials: &self.services.credentials, issuers: &self.services.issuers };
        let verifiers = Verifiers {
            tokens: &snapshot.tokens,
            key_hasher: snapshot.api_keys.as_ref().map(|k| &k.hasher),
            certs: &snapshot.client_certs,
        };
        let client_cert = session.digest().and_then(|d| d.ssl_digest.as_ref()).and_then(|d| d.extension.get::<ClientCert>());
        let presented = Presented { authorization: headers::authorization(req), api_key: headers::api_key(req), client_cert };
        ctx.presenting = presented.kind();
        let admitted = match admit(&snapshot.policy, &verifiers, &gate, &req.method, req.uri.path(), &presented) {
            Ok(a) => a,
            Err(refused) => {
                let refused = *refused;
                ctx.refetch_issuer = refused.refetch;
                (ctx.route, ctx.identity) = (refused.route, refused.identity);
                if self.services.audit.is_some() {
                    ctx.audit_path = refused.path;
                }
                if refused.reject.status == 401 {
                    // Failed authentication counts against the per-IP limit: token guessing is throttled.
                    self.limit_unauthenticated(ctx, snapshot)?;
                }
                return Err(refused.reject);
            }
        };
        (ctx.route, ctx.identity) = (Some(admitted.id), admitted.identity.clone());
        if self.services.audit.is_some() {
            ctx.audit_path = Some(admitted.path.to_string());
        }
        if let (Some(m), Some(_)) = (&self.services.metrics, &admitted.api_key) {
            m.auth.api_key_request("accepted");
        }
        self.limit_admitted(ctx, snapshot, admitted.id, admitted.route, admitted.identity.as_deref(), admitted.api_key.as_deref())?;
        Ok(match admitted.route.target {
            Target::Upstream(u) => {
                ctx.upstream = Some(u);
                if admitted.path != req.uri.path() {
                    ctx.rewritten_path = Some(admitted.path.into_owned());
                }
                Next::Upstream
            }
            Target::Chain(c) => Next::Chain(c, admitted.path.into_owned()),
            Target::Gateway(e) => Next::Endpoint(e, admitted.path.into_owned()),
        })
    }

    /// Phase 6: sends an admitted request where it goes. `Ok(false)`: Pingora proxies it.
    async fn dispatch(&self, session: &mut Session, ctx: &mut RequestCtx, next: Next) -> Result<bool> {
        match next {
            Next::Upstream => Ok(false),
            Next::Preflight(h) => {
                ctx.answer = Answer::Preflight;
                reply::send(session, ctx, Reply::empty(204, h)).await;
                Ok(true)
            }
            // Boxed: these futures are large (an upstream session, a body buffer), and an unboxed
            // one would make every request's future that large, which Pingora moves by memcpy.
            Next::Chain(chain, path) => {
                Box::pin(self.forward_chain(session, ctx, chain, &path)).await?;
                Ok(true)
            }
            Next::Endpoint(endpoint, path) => {
                ctx.answer = Answer::Endpoint;
                Box::pin(self.serve_endpoint(session, ctx, endpoint, &path)).await;
                Ok(true)
            }
        }
    }

    /// Answers a refused request: counts it, audits a token refusal, writes the JSON error.
    async fn refuse(&self, session: &mut Session, ctx: &mut RequestCtx, reject: Reject) {
        tracing::debug!(status = reject.status, reason = reject.reason, request_id = %ctx.request_id, "request refused");
        if let Some(m) = &self.services.metrics {
            if ctx.presenting == Some(Presenting::ApiKey) {
                m.auth.api_key_request(if reject.status == 401 { reject.reason } else { "denied" });
            }
            match reject.status {
                401 => {
                    m.auth.auth_failure(reject.reason);
                    m.auth.auth_failure_from(ctx.client_ip);
                }
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
        ctx.answer = Answer::Refused { status: reject.status, reason: reject.reason };
        reply::send(session, ctx, Reply::from(&reject)).await;
    }

    /// Where a request's metrics go: its route's, the gateway endpoints', or the unmatched ones.
    fn route_metrics(&self, snapshot: &Snapshot, route: Option<RouteId>) -> Option<Arc<RouteMetrics>> {
        let m = self.services.metrics.as_ref()?;
        match route {
            Some(RouteId::Configured(i)) => snapshot.route_metrics.get(i).cloned(),
            Some(RouteId::Gateway(_)) => Some(m.traffic.gateway().clone()),
            None => Some(m.traffic.unmatched().clone()),
        }
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
            request_id_value: HeaderValue::from_static("-"),
            peer: None,
            client_ip: None,
            peer_text: None,
            client_text: None,
            tls: false,
            origin: None,
            route: None,
            upstream: None,
            rewritten_path: None,
            audit_path: None,
            identity: None,
            presenting: None,
            refetch_issuer: None,
            limit_headers: None,
            answer: Answer::Forwarded,
            route_metrics: None,
            upstream_started: None,
            upstream_answered: false,
        }
    }

    /// Enforces the whole admission policy, phase by phase (see the module docs). A refused
    /// request is answered here and never reaches an upstream.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let snapshot = self.state.load_full();
        self.identify(session, ctx, &snapshot);
        let mut judged = self.judge(session, ctx, &snapshot);
        if let (Err(_), Some(iss)) = (&judged, ctx.refetch_issuer.take()) {
            // A token naming a key the provider's current set lacks: after a refetch (single
            // flight, at most one per cooldown) it is judged once more.
            if self.services.issuers.refetch_for_unknown_kid(&iss).await {
                judged = self.judge(session, ctx, &snapshot);
                ctx.refetch_issuer = None;
            }
        }
        if !matches!(judged, Ok(Next::Preflight(_))) {
            ctx.route_metrics = self.route_metrics(&snapshot, ctx.route);
        }
        ctx.snapshot = Some(snapshot);
        match judged {
            Ok(next) => self.dispatch(session, ctx, next).await,
            Err(reject) => {
                self.refuse(session, ctx, reject).await;
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
        let assertion = match (up.identity_assertion, &ctx.snapshot) {
            (true, Some(snapshot)) => {
                let minted = crate::auth::assertion::assertion(
                    &snapshot.tokens,
                    &up.name,
                    ctx.identity.as_deref(),
                    &ctx.request_id,
                    crate::clock::unix_now(),
                );
                match minted.ok().and_then(|a| HeaderValue::from_str(&a).ok()) {
                    Some(v) => Some(v),
                    // The upstream trusts only asserted requests: never send one without.
                    None => return Error::e_explain(ErrorType::InternalError, "the identity assertion could not be signed"),
                }
            }
            _ => None,
        };
        headers::rewrite_upstream_request(
            upstream_request,
            &headers::Forwarding {
                path: ctx.rewritten_path.as_deref(),
                identity: ctx.identity.as_deref(),
                request_id: &ctx.request_id_value,
                client_ip: ctx.peer_text.as_deref(),
                tls: ctx.tls,
                upstream: up,
                assertion,
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

    /// Finishes an upstream response's headers like every other response's.
    async fn response_filter(&self, _session: &mut Session, response: &mut ResponseHeader, ctx: &mut RequestCtx) -> Result<()> {
        headers::edit_response(response, |parts| headers::finish(&mut parts.headers, &ctx.finishing()))
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

    /// Answers a request that failed after admission (upstream unreachable, timed out, broke)
    /// with a JSON error, unless a response was already under way.
    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
        let reject = reply::for_error(e);
        if let (Some(reject), true) = (&reject, session.response_written().is_none()) {
            tracing::warn!(status = reject.status, reason = reject.reason, request_id = %ctx.request_id, error = ?e.etype(), "request failed");
            let mut reply = Reply::from(reject);
            reply.close = true;
            reply::send(session, ctx, reply).await;
        }
        FailToProxy { error_code: reject.map_or(0, |r| r.status), can_reuse_downstream: false }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // fail_to_proxy logs the failure without the request line (which may hold a token in a
        // query string).
        true
    }
}
