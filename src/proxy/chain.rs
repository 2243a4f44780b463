//! Provider-chain routes: the gateway's own forwarding loop on Pingora's client connector.
//!
//! Pingora's retry machinery cannot resend a body larger than its 64 KiB replay buffer, and LLM
//! prompts are often larger; so chain routes read the request body themselves (up to the chain's
//! `max_retry_body_bytes`), try providers in health order, and fail over on a connect error, a
//! timeout before the response header, or a status in `failover_on`, as long as no byte has
//! reached the client. A chain is the operator's explicit consent to resend a (non-idempotent)
//! request to another provider.
//!
//! An LLM call (`POST .../chat/completions` or `.../messages`) is read once ([`llm::Call`]):
//! its public model picks and renames providers, its token budget is reserved before the first
//! attempt (one store round trip), each provider receives it in its own API, and the answer is
//! relayed ([`relay`]) reading its usage on the way; the call is then counted (metrics, the
//! `llm.call` audit event) and its reservation settled. Anything else on a chain route passes
//! through byte for byte.
//!
//! The provider's key replaces the client's credentials; keys never reach a log, metric or error.

use pingora::prelude::*;
use pingora::proxy::Session;

use super::plan::{Attempt, LlmCall, Plan, Served};
use super::{reply, Answer, Gateway, RequestCtx};
use crate::admission::Reject;
use crate::clock::{now_ms, unix_now};
use crate::llm::{self, usage::Usage, Call};
use crate::providers::budget::{limit_headers, Verdict};
use crate::providers::health::{self, State};
use crate::providers::models;
use crate::providers::request::Body;
use crate::providers::{NoProvider, ProviderSet};

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

/// The refusal for a request no provider of its chain can serve.
fn no_provider(no: NoProvider, model: &str) -> Reject {
    match no {
        NoProvider::UnknownModel { usable } => {
            let message = format!("the model `{model}` is not offered here; you may use: {}", usable.join(", "));
            Reject::new(400, "unknown_model", message, "unknown_model")
        }
        NoProvider::ModelNotAllowed => {
            Reject::new(403, "model_not_allowed", format!("your role may not use the model `{model}`"), "model_not_allowed")
        }
        NoProvider::ApiNotServed(api) => {
            Reject::new(400, "api_not_served", format!("no provider of this chain serves {} requests", api.as_str()), "api_not_served")
        }
    }
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
        let (tries, panic) = health::attempts(&chain.providers, state_of, chain.order, now_ms());
        if panic {
            tracing::warn!(chain = %chain.name, "every provider is unhealthy: trying them all in chain order");
            if let Some(m) = &self.services.metrics {
                m.llm.chain_panic(&chain.name);
            }
        }
        let level = ctx.identity.as_ref().and_then(|i| i.role.as_deref()).and_then(|r| snapshot.policy.roles.level(r));
        let offered = &set.offered[chain_index];
        let method = session.req_header().method.clone();
        if !offered.is_empty() && method == http::Method::GET && path.ends_with("/models") {
            // The chain's public models this caller may use, in OpenAI's list format.
            let data: Vec<serde_json::Value> = offered
                .iter()
                .filter(|m| set.may_use(m, level))
                .map(|m| serde_json::json!({ "id": m, "object": "model", "created": 0, "owned_by": "portcullis" }))
                .collect();
            let answer = crate::api::answer(Ok((200, serde_json::json!({ "object": "list", "data": data }))));
            reply::send(session, ctx, answer.into()).await;
            return Ok(());
        }
        // An LLM call is read once; a body that is not JSON never reaches a provider.
        let api = llm::endpoint_api(path).filter(|_| method == http::Method::POST);
        let call = match api {
            Some(api) if !body.more => match Call::parse(api, &body.bytes) {
                Ok(c) => Some(c),
                Err(_) => {
                    let reject = Reject::new(400, "invalid_request", "the request body must be a JSON object", "invalid_body");
                    return self.refuse_chain(session, ctx, reject).await;
                }
            },
            _ => None,
        };
        let model = match &call {
            Some(c) => c.model.clone(),
            None => (!body.more).then(|| models::requested_model(&body.bytes)).flatten(),
        };
        // Each provider receives its own name for the public model, in its own API; one that
        // lacks the model or cannot serve the API is skipped.
        let mut tries = match set.eligible(chain_index, &tries, model.as_deref(), api, !body.more, level) {
            Ok(t) => t,
            Err(no) => return self.refuse_chain(session, ctx, no_provider(no, model.as_deref().unwrap_or_default())).await,
        };
        if body.more {
            // Too large to resend: one provider only.
            tries.truncate(1);
        }
        let mut llm_call = match api {
            Some(api) => {
                let prompt_estimate = match &call {
                    Some(c) => c.prompt_estimate,
                    None => super::headers::content_length(session.req_header()).map_or(0, |n| n / 4),
                };
                let model_label = set.llm.model_label(model.as_deref()).to_string();
                Some(LlmCall { api, call, model_label, model: model.clone(), reservation: None, prompt_estimate })
            }
            None => None,
        };
        if let Some(lc) = &mut llm_call {
            if let Err(reject) = self.reserve(set, ctx, lc).await {
                return self.refuse_chain(session, ctx, reject).await;
            }
        }
        let mut tried: Vec<&str> = Vec::new();
        for (pi, own_model) in tries.iter() {
            let pi = *pi;
            let provider = &set.providers[pi];
            // A half-open provider is tried in its place by its bounded trials only: when they
            // are all out (on any instance), the next provider serves this request.
            if !panic && state_of(pi).is_half_open(now_ms()) && !tracker.claim_trial(&provider.name).await {
                continue;
            }
            let plan = match Plan::new(llm_call.as_ref(), provider, *own_model, &body, path, set) {
                Ok(p) => p,
                Err(message) => {
                    // The client's messages cannot be put in this provider's API: its own mistake.
                    self.account(set, ctx, llm_call.take(), &provider.name, Served::nothing("invalid_request"));
                    let reject = Reject::new(400, "invalid_request", message, "invalid_body");
                    return self.refuse_chain(session, ctx, reject).await;
                }
            };
            if let (Some(m), Some(prev)) = (&self.services.metrics, tried.last()) {
                m.llm.failover(&chain.name, prev, &provider.name);
            }
            tried.push(&provider.name);
            match self.attempt(session, ctx, provider, &set.peers[pi], &plan, &chain.failover_on).await {
                Attempt::Done(served) => {
                    self.account(set, ctx, llm_call.take(), &provider.name, served);
                    return Ok(());
                }
                Attempt::Failover(why) => {
                    tracing::info!(chain = %chain.name, provider = %provider.name, reason = %why, request_id = %ctx.request_id, "provider failed; trying the next");
                    if let (Some(m), Some(lc)) = (&self.services.metrics, &llm_call) {
                        m.llm.call(&provider.name, &lc.model_label, "failover", 0, 0, None);
                    }
                }
                Attempt::Broken(e, served) => {
                    self.account(set, ctx, llm_call.take(), &provider.name, served);
                    return Err(e);
                }
            }
        }
        if let Some(lc) = llm_call.take() {
            // Nothing was produced: the whole reservation comes back.
            if let Some(r) = lc.reservation {
                self.services.budgets.settle(r, 0, &lc.model_label);
            }
        }
        let reject =
            Reject::new(502, "all_providers_failed", format!("all providers failed: {}", tried.join(", ")), "all_providers_failed");
        ctx.answer = Answer::Refused { status: reject.status, reason: reject.reason };
        reply::send(session, ctx, reply::Reply::from(&reject)).await;
        Ok(())
    }

    /// Reserves an LLM call's tokens (with `llm_limits`): 429 `token_budget_exceeded` over a
    /// window's limit, 503 when the store cannot be asked and outages deny.
    async fn reserve(&self, set: &ProviderSet, ctx: &RequestCtx, lc: &mut LlmCall) -> Result<(), Reject> {
        let (Some(rules), Some(identity)) = (&set.llm.budgets, ctx.identity.as_deref()) else { return Ok(()) };
        let max_tokens = lc.call.as_ref().and_then(|c| c.max_tokens);
        let now = unix_now();
        match self.services.budgets.reserve(rules, &identity.user_id, identity.role.as_deref(), max_tokens, lc.prompt_estimate, now).await {
            Verdict::Go(r) => {
                lc.reservation = r;
                Ok(())
            }
            Verdict::Over { window, used } => {
                if let Some(m) = &self.services.metrics {
                    m.llm.budget_rejected();
                }
                let reset = window.reset_in(now);
                let message = format!(
                    "this call needs more tokens than remain in your {} budget ({} of {} used); it resets in {reset} s",
                    window.span.as_str(),
                    used.min(window.limit),
                    window.limit
                );
                let mut reject = Reject::new(429, "token_budget_exceeded", message, "token_budget_exceeded");
                reject.headers.push(("retry-after", reset.to_string()));
                reject.headers.extend(limit_headers(&window, used, now));
                Err(reject)
            }
            Verdict::Unavailable => Err(Reject::new(
                503,
                "store_unavailable",
                "token budgets cannot be checked right now; try again shortly",
                "store_unavailable",
            )),
        }
    }

    /// Counts an LLM call that was answered (or broke): metrics, the `llm.call` audit event, and
    /// its reservation settled to what it used.
    fn account(&self, set: &ProviderSet, ctx: &RequestCtx, lc: Option<LlmCall>, provider: &str, served: Served) {
        let Some(lc) = lc else { return };
        let usage = served.usage.unwrap_or(Usage { prompt: lc.prompt_estimate, completion: 0, estimated: true });
        let usage = if served.outcome == "invalid_request" { Usage::default() } else { usage };
        if let Some(m) = &self.services.metrics {
            let cost = lc.model.as_deref().and_then(|name| set.llm.prices.get(name)).map(|p| p.cost(usage.prompt, usage.completion));
            m.llm.call(provider, &lc.model_label, served.outcome, usage.prompt, usage.completion, cost);
        }
        if let Some(r) = lc.reservation {
            self.services.budgets.settle(r, usage.total(), &lc.model_label);
        }
        if let Some(audit) = &self.services.audit {
            let origin = crate::audit::Origin { request_id: Some(&ctx.request_id), client_ip: ctx.client_text(), user_agent: None };
            let user = ctx.identity.as_ref().map(|i| i.user_id.as_str());
            audit.emit(crate::audit::Event::new(
                "llm.call",
                served.outcome,
                user,
                origin,
                serde_json::json!({
                    "model": lc.model_label, "provider": provider, "api": lc.api.as_str(), "status": served.status,
                    "prompt_tokens": usage.prompt, "completion_tokens": usage.completion, "estimated": usage.estimated,
                }),
            ));
        }
    }

    /// Why an open stream must end now: its session revoked (logout, reuse, an admin), its
    /// token expired (with `sessions.end_streams_at_expiry`), or its credential put on the
    /// denylist.
    pub(super) fn stream_cut_off(&self, ctx: &RequestCtx) -> Option<&'static str> {
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
    pub(super) fn audit_stream_ended(&self, session: &Session, ctx: &RequestCtx, provider: &str, why: &'static str) {
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
}
