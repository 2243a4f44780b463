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

use pingora::prelude::*;
use pingora::proxy::Session;
use pingora::upstreams::peer::Peer;
use std::time::Instant;

use super::{headers, reply, Answer, Gateway, RequestCtx};
use crate::admission::Reject;
use crate::clock::now_ms;
use crate::providers::health::{self, State};
use crate::providers::models;
use crate::providers::request::{provider_request, retry_after_ms, Body};
use crate::providers::Provider;

/// What one attempt came to.
enum Attempt {
    /// The response was relayed (or the client went away).
    Done,
    /// Nothing reached the client: the next provider may be tried.
    Failover(String),
    /// Bytes already reached the client and the provider broke: the stream must end abruptly.
    Broken(Box<Error>),
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

impl Gateway {
    /// Serves a request on a provider-chain route.
    pub(super) async fn forward_chain(&self, session: &mut Session, ctx: &mut RequestCtx, chain_index: usize, path: &str) -> Result<()> {
        let Some(snapshot) = ctx.snapshot.clone() else { return Ok(()) };
        let set = &snapshot.providers;
        let chain = &set.chains[chain_index];
        let tracker = &self.services.tracker;
        let body = match read_prefix(session, chain.max_retry_body_bytes).await {
            Ok(b) => b,
            Err(_) => return Ok(()), // the client went away
        };
        let states = tracker.snapshot();
        let default = State::default();
        let state_of = |i: usize| states.get(&set.providers[i].name).unwrap_or(&default);
        let (mut tries, panic) = health::attempts(&chain.providers, state_of, chain.order, now_ms());
        if panic {
            tracing::warn!(chain = %chain.name, "every provider is unhealthy: trying them all in chain order");
        }
        let level = ctx.identity.as_ref().and_then(|i| i.role.as_deref()).and_then(|r| snapshot.policy.roles.level(r));
        let offered = models::offered(chain.providers.iter().map(|i| set.providers[*i].models.as_ref()));
        let may_use = |m: &str| set.model_access.as_ref().is_none_or(|a| a.allows(m, level));
        if !offered.is_empty() && session.req_header().method == http::Method::GET && path.ends_with("/models") {
            // The chain's public models this caller may use, in OpenAI's list format.
            let data: Vec<serde_json::Value> = offered
                .iter()
                .filter(|m| may_use(m))
                .map(|m| serde_json::json!({ "id": m, "object": "model", "created": 0, "owned_by": "portcullis" }))
                .collect();
            let answer = crate::api::answer(Ok((200, serde_json::json!({ "object": "list", "data": data }))));
            reply::send(session, ctx, answer.into()).await;
            return Ok(());
        }
        // Each provider receives its own name for the public model; one that lacks it is skipped.
        let mut bodies: Vec<Option<Body>> = (0..set.providers.len()).map(|_| None).collect();
        if let Some(model) = (!body.more).then(|| models::requested_model(&body.bytes)).flatten() {
            tries.retain(|&pi| match models::provider_model(set.providers[pi].models.as_ref(), &model) {
                None => false,
                Some(own) if own == model => true,
                Some(own) => {
                    bodies[pi] = models::with_model(&body.bytes, &own).map(|b| Body { bytes: b.into(), more: false });
                    true
                }
            });
            if tries.is_empty() {
                let usable: Vec<&str> = offered.iter().map(String::as_str).filter(|m| may_use(m)).collect();
                let message = format!("the model `{model}` is not offered here; you may use: {}", usable.join(", "));
                return self.refuse_chain(session, ctx, Reject::new(400, "unknown_model", message, "unknown_model")).await;
            }
            if !may_use(&model) {
                let reject =
                    Reject::new(403, "model_not_allowed", format!("your role may not use the model `{model}`"), "model_not_allowed");
                return self.refuse_chain(session, ctx, reject).await;
            }
        }
        if body.more {
            // Too large to resend: one provider only.
            tries.truncate(1);
        }
        let mut tried: Vec<&str> = Vec::new();
        for &pi in tries.iter() {
            let provider = &set.providers[pi];
            let body = bodies[pi].as_ref().unwrap_or(&body);
            if let (Some(m), Some(prev)) = (&self.services.metrics, tried.last()) {
                m.failover(&chain.name, prev, &provider.name);
            }
            tried.push(&provider.name);
            match self.attempt(session, ctx, provider, &set.peers[pi], body, path, &chain.failover_on).await {
                Attempt::Done => return Ok(()),
                Attempt::Failover(why) => {
                    tracing::info!(chain = %chain.name, provider = %provider.name, reason = %why, request_id = %ctx.request_id, "provider failed; trying the next");
                }
                Attempt::Broken(e) => return Err(e),
            }
        }
        let reject =
            Reject::new(502, "all_providers_failed", format!("all providers failed: {}", tried.join(", ")), "all_providers_failed");
        ctx.answer = Answer::Refused { status: reject.status, reason: reject.reason };
        reply::send(session, ctx, reply::Reply::from(&reject)).await;
        Ok(())
    }

    /// Why an open stream must end now: its session revoked (logout, reuse, an admin), its
    /// token expired (with `sessions.end_streams_at_expiry`), or its credential put on the
    /// denylist.
    fn stream_cut_off(&self, ctx: &RequestCtx) -> Option<&'static str> {
        let identity = ctx.identity.as_deref()?;
        let now = crate::clock::unix_now();
        if identity.session_id().is_some_and(|sid| self.services.sessions.revocations.is_revoked(sid, now)) {
            return Some("session_revoked");
        }
        if self.services.sessions.settings.end_streams_at_expiry && identity.expires_at().is_some_and(|exp| exp <= now) {
            return Some("token_expired");
        }
        self.services.credentials.denies(identity, now).map(|_| "denylisted")
    }

    /// `llm.stream_ended`: a stream cut off, with why.
    fn audit_stream_ended(&self, session: &Session, ctx: &RequestCtx, provider: &str, why: &'static str) {
        let Some(audit) = &self.services.audit else { return };
        let ua = session.req_header().headers.get(http::header::USER_AGENT).and_then(|v| v.to_str().ok());
        let origin = crate::audit::Origin { request_id: Some(&ctx.request_id), client_ip: ctx.client_text(), user_agent: ua };
        let user = ctx.identity.as_ref().map(|i| i.user_id.as_str());
        audit.emit(crate::audit::Event::new(
            "llm.stream_ended",
            "ended",
            user,
            origin,
            serde_json::json!({ "reason": why, "provider": provider }),
        ));
    }

    /// Refuses a chain request after admission (a model the caller may not use, or none offered).
    async fn refuse_chain(&self, session: &mut Session, ctx: &mut RequestCtx, reject: Reject) -> Result<()> {
        if let (Some(r), 403) = (&ctx.route_metrics, reject.status) {
            r.denied.inc();
        }
        ctx.answer = Answer::Refused { status: reject.status, reason: reject.reason };
        reply::send(session, ctx, reply::Reply::from(&reject)).await;
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
        up.set_read_timeout(Some(provider.first_byte_timeout));
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
        match tokio::time::timeout(provider.first_byte_timeout, up.read_response_header()).await {
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
        let finished = headers::edit_response(&mut down, |parts| {
            for h in ["connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"] {
                parts.headers.remove(h);
            }
            headers::finish(&mut parts.headers, &ctx.finishing())
        });
        if finished.is_err() {
            return fail("response headers could not be finished".into(), Some(rt));
        }
        let done = up.response_done();
        if session.write_response_header(Box::new(down), done).await.is_err() {
            return Attempt::Done;
        }
        if done {
            self.services.connector.release_http_session(up, peer, peer.idle_timeout()).await;
            return Attempt::Done;
        }
        // From here on the wait that matters is the gap between chunks.
        up.set_read_timeout(Some(provider.stream_idle_timeout));
        // A stream outlives no revocation: its credential is checked again every 250 ms.
        let mut recheck = tokio::time::interval(std::time::Duration::from_millis(250));
        recheck.tick().await;
        loop {
            // The same read is polled across ticks (never cancelled unless the stream ends).
            let read = {
                let pending = up.read_response_body();
                tokio::pin!(pending);
                loop {
                    tokio::select! {
                        read = &mut pending => break read,
                        _ = recheck.tick() => {
                            if let Some(why) = self.stream_cut_off(ctx) {
                                tracing::info!(provider = %name, request_id = %ctx.request_id, reason = why, "stream ended: its access ended");
                                self.audit_stream_ended(session, ctx, &name, why);
                                return Attempt::Broken(Error::explain(ErrorType::InternalError, "the stream's credential was revoked"));
                            }
                        }
                    }
                }
            };
            match read {
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
                    let why = if e.etype() == &ErrorType::ReadTimedout { "stream idle timeout" } else { "broke mid-stream" };
                    tracker.record(&name, move |s, r, now| s.record_failure(why, None, now, r));
                    tracing::warn!(provider = %name, request_id = %ctx.request_id, reason = why, "provider stream ended; ending the client's stream");
                    return Attempt::Broken(e);
                }
            }
        }
    }
}
