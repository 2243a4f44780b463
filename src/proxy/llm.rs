//! Provider-chain routes: the gateway's own forwarding loop on Pingora's client connector.
//!
//! Pingora's retry machinery cannot resend a body larger than its 64 KiB replay buffer, and LLM
//! prompts are often larger; so chain routes read the request body themselves (up to the chain's
//! `max_retry_body_bytes`), try providers in health order, and fail over on a connect error, a
//! timeout before the response header, or a status in `failover_on`, as long as no byte has
//! reached the client. Once a response is chosen it streams through unbuffered. A chain is the
//! operator's explicit consent to resend a (non-idempotent) request to another provider.
//!
//! The provider's key replaces the client's credentials; keys never reach a log, metric or error.

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::Session;
use pingora::upstreams::peer::Peer;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{reply, Gateway, RequestCtx, Snapshot};
use crate::admission::Reject;
use crate::config::providers::{Provider, ProviderAuth};
use crate::providers::health::{self, State};
use crate::providers::tracker::{now_ms, Tracker};

/// Client headers that carry credentials or identity, never sent to a provider.
const STRIPPED: [&str; 12] = [
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "cookie",
    "x-user-id",
    "x-user-role",
    "x-session-id",
    "connection",
    "keep-alive",
    "te",
    "upgrade",
];

/// The Pingora peer for a provider.
pub fn provider_peer(p: &Provider) -> HttpPeer {
    super::upstream::build(&super::upstream::PeerSpec {
        address: p.address,
        tls: p.tls,
        sni: &p.sni,
        verify_cert: p.verify_cert,
        connect_timeout: p.connect_timeout,
        read_timeout: p.read_timeout,
        write_timeout: p.read_timeout,
        idle_timeout: Duration::from_secs(60),
    })
}

/// What one attempt came to.
enum Attempt {
    /// The response was relayed (or the client went away).
    Done,
    /// Nothing reached the client: the next provider may be tried.
    Failover(String),
    /// Bytes already reached the client and the provider broke: the stream must end abruptly.
    Broken(Box<Error>),
}

/// The body as read so far, and whether more remains to be streamed (too large to buffer).
struct Body {
    bytes: Bytes,
    more: bool,
}

async fn read_prefix(session: &mut Session, limit: usize) -> Result<Body> {
    let mut buf = Vec::new();
    while buf.len() <= limit {
        match session.read_request_body().await? {
            Some(chunk) => buf.extend_from_slice(&chunk),
            None => return Ok(Body { bytes: buf.into(), more: false }),
        }
    }
    Ok(Body { bytes: buf.into(), more: true })
}

/// The request a provider receives: the client's method, normalized path and query and its
/// content headers; the provider's host and key instead of the client's credentials.
fn provider_request(client: &RequestHeader, path: &str, provider: &Provider, body: &Body, request_id: &str) -> Result<RequestHeader> {
    let target = match client.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut req = RequestHeader::build(client.method.clone(), target.as_bytes(), Some(client.headers.len() + 4))?;
    for (name, value) in client.headers.iter() {
        let n = name.as_str();
        let own_header = matches!(&provider.auth, ProviderAuth::Header(h, _) if h == n);
        if STRIPPED.contains(&n) || own_header || name == HOST || name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        req.append_header(name.clone(), value.clone())?;
    }
    req.insert_header(HOST, &provider.host_header)?;
    match &provider.auth {
        ProviderAuth::None => {}
        ProviderAuth::Bearer(key) => {
            let mut v = b"Bearer ".to_vec();
            v.extend_from_slice(key.expose());
            req.insert_header(
                AUTHORIZATION,
                http::HeaderValue::from_bytes(&v).or_err(InternalError, "provider key is not a header value")?,
            )?;
        }
        ProviderAuth::Header(name, key) => {
            req.insert_header(
                name.clone(),
                http::HeaderValue::from_bytes(key.expose()).or_err(InternalError, "provider key is not a header value")?,
            )?;
        }
    }
    req.insert_header("x-request-id", request_id)?;
    if body.more {
        match client.headers.get(CONTENT_LENGTH) {
            Some(cl) => req.insert_header(CONTENT_LENGTH, cl.clone())?,
            None => req.insert_header(TRANSFER_ENCODING, "chunked")?,
        }
    } else if !body.bytes.is_empty() || client.headers.contains_key(CONTENT_LENGTH) {
        req.insert_header(CONTENT_LENGTH, body.bytes.len().to_string())?;
    }
    Ok(req)
}

/// Seconds from a `Retry-After` header (delta-seconds form).
fn retry_after_ms(resp: &ResponseHeader) -> u64 {
    resp.headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(1_000, |s| s.saturating_mul(1000))
}

impl Gateway {
    /// Serves a request on a provider-chain route.
    pub(super) async fn forward_chain(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        snapshot: &Arc<Snapshot>,
        chain_index: usize,
        path: &str,
    ) -> Result<()> {
        let chain = &snapshot.chains[chain_index];
        let tracker = &self.services.tracker;
        let body = match read_prefix(session, chain.max_retry_body_bytes).await {
            Ok(b) => b,
            Err(_) => return Ok(()), // the client went away
        };
        let states = tracker.snapshot();
        let default = State::default();
        let state_of = |i: usize| states.get(&snapshot.providers[i].name).unwrap_or(&default);
        let (mut tries, panic) = health::attempts(&chain.providers, state_of, chain.order, now_ms());
        if panic {
            tracing::warn!(chain = %chain.name, "every provider is unhealthy: trying them all in chain order");
        }
        if body.more {
            // Too large to resend: one provider only.
            tries.truncate(1);
        }
        let mut tried: Vec<&str> = Vec::new();
        for &pi in tries.iter() {
            let provider = &snapshot.providers[pi];
            if let (Some(m), Some(prev)) = (&self.services.metrics, tried.last()) {
                m.failover(&chain.name, prev, &provider.name);
            }
            tried.push(&provider.name);
            match self.attempt(session, ctx, provider, &snapshot.provider_peers[pi], &body, path, &chain.failover_on).await {
                Attempt::Done => return Ok(()),
                Attempt::Failover(why) => {
                    tracing::info!(chain = %chain.name, provider = %provider.name, reason = %why, request_id = %ctx.request_id, "provider failed; trying the next");
                }
                Attempt::Broken(e) => return Err(e),
            }
        }
        let mut reject =
            Reject::new(502, "all_providers_failed", format!("all providers failed: {}", tried.join(", ")), "all_providers_failed");
        reject.headers = ctx.limit_headers.clone();
        ctx.refusal = Some((502, "all_providers_failed", None));
        let extra = self.reply_headers(ctx, snapshot, &reject.headers);
        reply::send(session, &reject, &ctx.request_id, &extra).await;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        provider: &Provider,
        peer: &HttpPeer,
        body: &Body,
        path: &str,
        failover_on: &[u16],
    ) -> Attempt {
        let tracker = &self.services.tracker;
        let name = provider.name.clone();
        let fail = |why: String, rt: Option<f64>| {
            let w = why.clone();
            tracker.record(&name, move |s, r, now| s.record_failure(&w, rt, now, r));
            Attempt::Failover(why)
        };
        let started = Instant::now();
        let (mut up, _reused) = match self.services.connector.get_http_session(peer).await {
            Ok(s) => s,
            Err(e) => return fail(format!("connect: {:?}", e.etype()), None),
        };
        up.set_read_timeout(Some(provider.read_timeout));
        let req = match provider_request(session.req_header(), path, provider, body, &ctx.request_id) {
            Ok(r) => r,
            Err(_) => return Attempt::Failover("request could not be built".into()),
        };
        if up.write_request_header(Box::new(req)).await.is_err() {
            return fail("write error".into(), None);
        }
        if !body.bytes.is_empty() && up.write_request_body(body.bytes.clone(), !body.more).await.is_err() {
            return fail("write error".into(), None);
        }
        if body.more {
            loop {
                match session.read_request_body().await {
                    Ok(Some(chunk)) => {
                        if up.write_request_body(chunk, false).await.is_err() {
                            return fail("write error".into(), None);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Attempt::Broken(e),
                }
            }
        }
        if up.finish_request_body().await.is_err() {
            return fail("write error".into(), None);
        }
        match tokio::time::timeout(provider.read_timeout, up.read_response_header()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return fail(format!("no response: {:?}", e.etype()), None),
            Err(_) => return fail("timeout before the response header".into(), None),
        }
        let rt = started.elapsed().as_secs_f64() * 1000.0;
        let Some(resp) = up.response_header().cloned() else {
            return fail("no response header".into(), Some(rt));
        };
        let status = resp.status.as_u16();
        let provider_fault = status == 429 || resp.status.is_server_error();
        if failover_on.contains(&status) {
            if status == 429 {
                let pause = retry_after_ms(&resp);
                tracker.record(&name, move |s, r, now| s.record_rate_limited(pause, now, r));
                return Attempt::Failover(format!("status {status}"));
            }
            return fail(format!("status {status}"), Some(rt));
        }
        // This response is the one the client gets.
        if status == 429 {
            let pause = retry_after_ms(&resp);
            tracker.record(&name, move |s, r, now| s.record_rate_limited(pause, now, r));
        } else if provider_fault {
            let w = format!("status {status}");
            tracker.record(&name, move |s, r, now| s.record_failure(&w, Some(rt), now, r));
        } else {
            tracker.record(&name, move |s, r, now| s.record_success(rt, now, r));
        }
        let mut down = resp;
        for h in ["connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"] {
            down.remove_header(h);
        }
        let _ = down.insert_header("x-request-id", &ctx.request_id);
        for (n, v) in reply::SECURITY_HEADERS {
            if !down.headers.contains_key(n) {
                let _ = down.insert_header(n, v);
            }
        }
        for (n, v) in &ctx.limit_headers {
            let _ = down.insert_header(*n, v);
        }
        let done = up.response_done();
        if session.write_response_header(Box::new(down), done).await.is_err() {
            return Attempt::Done;
        }
        if done {
            self.services.connector.release_http_session(up, peer, peer.idle_timeout()).await;
            return Attempt::Done;
        }
        loop {
            match up.read_response_body().await {
                Ok(Some(chunk)) => {
                    if session.write_response_body(Some(chunk), false).await.is_err() {
                        return Attempt::Done; // the client went away
                    }
                }
                Ok(None) => {
                    let _ = session.write_response_body(None, true).await;
                    if up.response_done() {
                        self.services.connector.release_http_session(up, peer, peer.idle_timeout()).await;
                    }
                    return Attempt::Done;
                }
                Err(e) => {
                    tracker.record(&name, |s, r, now| s.record_failure("broke mid-stream", None, now, r));
                    tracing::warn!(provider = %name, request_id = %ctx.request_id, "provider broke mid-stream; ending the client's stream");
                    return Attempt::Broken(e);
                }
            }
        }
    }
}

/// Active health probes: each provider with a `health_check` is probed once per interval by one
/// instance (a store lock), with a cheap request (a models listing by default).
pub struct Probes {
    pub tracker: Arc<Tracker>,
    pub state: Arc<arc_swap::ArcSwap<Snapshot>>,
    pub connector: Arc<Connector>,
    pub store: Arc<dyn crate::store::Store>,
    pub instance: String,
}

impl Probes {
    async fn probe(
        &self,
        provider: &Provider,
        peer: &HttpPeer,
        path: &str,
        method: &http::Method,
        timeout: Duration,
    ) -> Result<f64, String> {
        let started = Instant::now();
        let work = async {
            let (mut up, _) = self.connector.get_http_session(peer).await.map_err(|e| format!("connect: {:?}", e.etype()))?;
            let client = RequestHeader::build(method.clone(), path.as_bytes(), None).map_err(|e| e.to_string())?;
            let body = Body { bytes: Bytes::new(), more: false };
            let req = provider_request(&client, path, provider, &body, "health-probe").map_err(|e| e.to_string())?;
            up.write_request_header(Box::new(req)).await.map_err(|_| "write error".to_string())?;
            up.finish_request_body().await.map_err(|_| "write error".to_string())?;
            up.read_response_header().await.map_err(|e| format!("no response: {:?}", e.etype()))?;
            let status = up.response_header().map(|r| r.status.as_u16()).unwrap_or(0);
            while let Ok(Some(_)) = up.read_response_body().await {}
            if (200..300).contains(&status) {
                Ok(started.elapsed().as_secs_f64() * 1000.0)
            } else {
                Err(format!("probe answered {status}"))
            }
        };
        tokio::time::timeout(timeout, work).await.unwrap_or_else(|_| Err("probe timed out".into()))
    }

    /// Probes due providers every second until shutdown.
    pub async fn run(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut due: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let snapshot = self.state.load_full();
            let now = now_ms();
            for (i, p) in snapshot.providers.iter().enumerate() {
                let Some(check) = &p.health_check else { continue };
                let interval = check.interval.as_millis() as u64;
                if due.get(&p.name).is_some_and(|d| *d > now) {
                    continue;
                }
                due.insert(p.name.clone(), now + interval);
                match self.store.try_lock(&format!("probe:{}", p.name), &self.instance, interval).await {
                    Ok(true) => {}
                    _ => continue, // another instance probes it this interval (or the store is down)
                }
                let outcome = self.probe(p, &snapshot.provider_peers[i], &check.path, &check.method, check.timeout).await;
                let name = p.name.clone();
                let result = match outcome {
                    Ok(rt) => self.tracker.update(&name, move |s, r, now| s.record_success(rt, now, r)).await,
                    Err(why) => self.tracker.update(&name, move |s, r, now| s.record_failure(&why, None, now, r)).await,
                };
                if let Err(e) = result {
                    tracing::debug!(provider = %name, error = %e, "probe result not saved");
                }
            }
        }
    }
}
