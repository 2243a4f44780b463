//! The Pingora `ProxyHttp` implementation. Each phase is a thin adapter: decisions are made by
//! [`crate::admission`]; this module only moves data between Pingora and those functions.
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

use crate::admission::{admit, Identity};
use crate::auth::TokenManager;
use crate::config::{Config, Upstream};
use crate::policy::{Policy, Target};
pub use reply::error_body;

/// Everything a request is judged and routed with. Swapped whole on reload; a request keeps the
/// snapshot it started with.
pub struct Snapshot {
    pub policy: Policy,
    pub tokens: TokenManager,
    pub upstreams: Vec<Upstream>,
    peers: Vec<HttpPeer>,
}

impl Snapshot {
    /// Builds the request-path view of a validated config.
    pub fn new(config: Config) -> Self {
        let peers = config.upstreams.iter().map(upstream::peer).collect();
        Snapshot {
            tokens: TokenManager::new(&config.tokens),
            policy: config.policy,
            upstreams: config.upstreams,
            peers,
        }
    }
}

/// The proxy service.
pub struct Gateway {
    state: Arc<ArcSwap<Snapshot>>,
}

impl Gateway {
    /// A gateway serving whatever snapshot `state` holds.
    pub fn new(state: Arc<ArcSwap<Snapshot>>) -> Self {
        Gateway { state }
    }
}

/// Per-request state carried between phases.
#[derive(Default)]
pub struct RequestCtx {
    snapshot: Option<Arc<Snapshot>>,
    request_id: String,
    route: Option<usize>,
    upstream: Option<usize>,
    /// The normalized path when it differs from the request's.
    rewritten_path: Option<String>,
    identity: Option<Identity>,
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    /// Enforces the whole admission policy (path normalization, routing, authentication,
    /// authorization). A refused request is answered here and never reaches an upstream.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let snapshot = self.state.load_full();
        let req = session.req_header();
        ctx.request_id = headers::request_id(req);
        let decision = admit(
            &snapshot.policy,
            &snapshot.tokens,
            &req.method,
            req.uri.path(),
            headers::authorization(req),
        );
        match decision {
            Ok(admitted) => {
                let Target::Upstream(upstream) = admitted.route.target;
                ctx.route = Some(admitted.route_index);
                ctx.upstream = Some(upstream);
                if admitted.path != req.uri.path() {
                    ctx.rewritten_path = Some(admitted.path.into_owned());
                }
                ctx.identity = admitted.identity;
                ctx.snapshot = Some(snapshot);
                Ok(false)
            }
            Err(reject) => {
                tracing::debug!(status = reject.status, reason = reject.reason, route = reject.route.as_deref(), request_id = %ctx.request_id, "request refused");
                reply::send(session, &reject, &ctx.request_id).await;
                Ok(true)
            }
        }
    }

    /// Sends the request to the upstream its route names.
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        match (&ctx.snapshot, ctx.upstream) {
            (Some(snapshot), Some(i)) => Ok(Box::new(snapshot.peers[i].clone())),
            _ => Error::e_explain(
                ErrorType::InternalError,
                "no upstream decided for this request",
            ),
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
        let Some(up) = ctx
            .snapshot
            .as_ref()
            .zip(ctx.upstream)
            .map(|(s, i)| &s.upstreams[i])
        else {
            return Error::e_explain(
                ErrorType::InternalError,
                "no upstream decided for this request",
            );
        };
        headers::rewrite_upstream_request(
            upstream_request,
            &headers::Forwarding {
                path: ctx.rewritten_path.as_deref(),
                identity: ctx.identity.as_ref(),
                request_id: &ctx.request_id,
                client_ip: session
                    .client_addr()
                    .and_then(|a| a.as_inet())
                    .map(|a| a.ip()),
                upstream: up,
            },
        )
    }

    /// Tells the client which request id the gateway used.
    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        response.insert_header("x-request-id", &ctx.request_id)?;
        Ok(())
    }

    /// Answers a request that failed after admission (upstream unreachable, timed out, broke)
    /// with a JSON error, unless a response was already under way.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let reject = reply::for_error(e);
        if let (Some(reject), true) = (&reject, session.response_written().is_none()) {
            tracing::warn!(status = reject.status, reason = reject.reason, request_id = %ctx.request_id, error = ?e.etype(), "request failed");
            reply::send(session, reject, &ctx.request_id).await;
        }
        FailToProxy {
            error_code: reject.map_or(0, |r| r.status),
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // fail_to_proxy logs the failure without the request line (which may hold a token in a
        // query string).
        true
    }
}
