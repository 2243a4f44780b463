//! One attempt at one provider, and the relay of its answer to the client.
//!
//! What a provider receives and how its answer comes back is decided once per provider as a
//! [`Plan`]: anything that is not an LLM call passes through byte for byte; an LLM call in the
//! provider's own API passes through too, its usage read on the way (OpenAI's usage chunk,
//! which the gateway asked for, removed again if the client did not ask for it); an OpenAI call
//! to an Anthropic provider is translated both ways, streams event by event. A stream outlives
//! no revocation: its credential is checked again every 250 ms.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;
use pingora::upstreams::peer::Peer;
use serde_json::Value;
use std::time::Instant;

use super::plan::{Attempt, Plan, Relay, Served};
use super::{headers, Gateway, RequestCtx};
use crate::llm::anthropic::{self, StreamTranslator};
use crate::llm::sse;
use crate::llm::usage::{self, StreamUsage, Usage};
use crate::llm::Api;
use crate::providers::request::{provider_request, retry_after_ms};
use crate::providers::Provider;

/// The largest answer read whole (to translate it or read its usage): larger ones are relayed
/// without their usage, or refused as broken when they needed translating.
const MAX_READ_ANSWER: usize = 16 << 20;
/// The largest server-sent event.
const MAX_EVENT: usize = 1 << 20;

/// One read of the answer's body.
enum Read {
    Chunk(Bytes),
    End,
    Failed(Box<Error>),
    CutOff,
}

/// An answer on its way to the client: the provider connection and what has been seen.
struct Answer<'a> {
    up: HttpSession,
    provider: &'a Provider,
    started: Instant,
    status: u16,
    recheck: tokio::time::Interval,
    first_byte_seen: bool,
    /// Count the time to the first byte (an LLM call).
    llm: bool,
}

impl Gateway {
    pub(super) async fn attempt(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        provider: &Provider,
        peer: &HttpPeer,
        plan: &Plan,
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
        let mut req = match provider_request(session.req_header(), &plan.path, provider, &plan.body, &ctx.request_id) {
            Ok(r) => r,
            Err(_) => return Attempt::Failover("request could not be built".into()),
        };
        if plan.relay != Relay::Raw {
            // The answer is read: it must come uncompressed.
            req.remove_header("accept-encoding");
            if plan.anthropic
                && !req.headers.contains_key("anthropic-version")
                && req.insert_header("anthropic-version", anthropic::VERSION).is_err()
            {
                return Attempt::Failover("request could not be built".into());
            }
        }
        if up.write_request_header(Box::new(req)).await.is_err() {
            return fail("write error".into(), None);
        }
        let body = &plan.body;
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
                    Err(e) => return Attempt::Broken(e, Served::nothing("client_closed")),
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
        // From here on the wait that matters is the gap between chunks.
        up.set_read_timeout(Some(provider.stream_idle_timeout));
        // The first check a quarter second from now. (Not `interval()` and a first `tick()`:
        // that tick is due "now", which tokio's millisecond timer wheel fires on its next turn,
        // up to a millisecond later; every call through a chain waited for it.)
        let every = std::time::Duration::from_millis(250);
        let recheck = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let stream =
            resp.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|c| c.starts_with("text/event-stream"));
        let ok = resp.status.is_success();
        let mut answer = Answer { up, provider, started, status, recheck, first_byte_seen: false, llm: plan.relay != Relay::Raw };
        let outcome = match plan.relay {
            Relay::Raw => self.relay_bytes(session, ctx, &mut answer, resp, None).await,
            Relay::Observe { api, strip_usage } if stream => {
                self.relay_events(session, ctx, &mut answer, resp, Events::Observe { api, strip_usage }, plan.prompt_estimate).await
            }
            Relay::Observe { api, .. } => self.relay_bytes(session, ctx, &mut answer, resp, Some((api, ok, plan.prompt_estimate))).await,
            Relay::Translate { include_usage } if stream && ok => {
                let t = StreamTranslator::new(&plan.model, crate::clock::unix_now(), include_usage);
                self.relay_events(session, ctx, &mut answer, resp, Events::Translate(Box::new(t)), plan.prompt_estimate).await
            }
            Relay::Translate { .. } => self.relay_translated(session, ctx, &mut answer, resp, &plan.model, ok).await,
        };
        if matches!(outcome, Attempt::Done(_)) && answer.up.response_done() {
            self.services.connector.release_http_session(answer.up, peer, peer.idle_timeout()).await;
        }
        outcome
    }

    /// The next chunk of the answer's body, checking every 250 ms that the caller's access
    /// still holds (the pending read is polled across checks, never cancelled).
    async fn next_chunk(&self, session: &Session, ctx: &RequestCtx, a: &mut Answer<'_>) -> Read {
        let read = {
            let pending = a.up.read_response_body();
            tokio::pin!(pending);
            loop {
                tokio::select! {
                    read = &mut pending => break read,
                    _ = a.recheck.tick() => {
                        if let Some(why) = self.stream_cut_off(ctx) {
                            tracing::info!(provider = %a.provider.name, request_id = %ctx.request_id, reason = why, "stream ended: its access ended");
                            self.audit_stream_ended(session, ctx, &a.provider.name, why);
                            return Read::CutOff;
                        }
                    }
                }
            }
        };
        match read {
            Ok(Some(chunk)) => Read::Chunk(chunk),
            Ok(None) => Read::End,
            Err(e) => {
                let why = if e.etype() == &ErrorType::ReadTimedout { "stream idle timeout" } else { "broke mid-stream" };
                self.services.tracker.record(&a.provider.name, move |s, r, now| s.record_failure(why, None, now, r));
                tracing::warn!(provider = %a.provider.name, request_id = %ctx.request_id, reason = why, "provider stream ended; ending the client's stream");
                Read::Failed(e)
            }
        }
    }

    /// Sends the response header, finished like every response; false if the client is gone.
    async fn send_header(&self, session: &mut Session, ctx: &RequestCtx, mut down: ResponseHeader, end: bool) -> bool {
        let finished = headers::edit_response(&mut down, |parts| {
            for h in ["connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"] {
                parts.headers.remove(h);
            }
            headers::finish(&mut parts.headers, &ctx.finishing())
        });
        finished.is_ok() && session.write_response_header(Box::new(down), end).await.is_ok()
    }

    /// Sends body bytes (the first of an LLM answer times the first token); false if the client
    /// is gone.
    async fn send_body(&self, session: &mut Session, a: &mut Answer<'_>, bytes: Bytes, end: bool) -> bool {
        if !a.first_byte_seen && !bytes.is_empty() {
            a.first_byte_seen = true;
            if let (true, Some(m)) = (a.llm, &self.services.metrics) {
                m.llm.first_token(&a.provider.name, a.started.elapsed().as_secs_f64());
            }
        }
        session.write_response_body(Some(bytes), end).await.is_ok()
    }

    /// Relays the body byte for byte; with `usage_of`, keeps a copy to read the usage of a
    /// whole answer in that API (a successful one).
    async fn relay_bytes(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        a: &mut Answer<'_>,
        resp: ResponseHeader,
        usage_of: Option<(Api, bool, u64)>,
    ) -> Attempt {
        let status = a.status;
        let done = a.up.response_done();
        if !self.send_header(session, ctx, resp, done).await {
            return Attempt::Done(Served { usage: None, outcome: "client_closed", status });
        }
        let mut copy: Option<Vec<u8>> = usage_of.map(|_| Vec::new());
        let served = |copy: &Option<Vec<u8>>, outcome: &'static str| {
            let usage = match (usage_of, copy) {
                (Some((api, true, _)), Some(bytes)) => {
                    serde_json::from_slice::<Value>(bytes).ok().and_then(|v| usage::from_answer(api, &v))
                }
                (Some((_, false, _)), _) => Some(Usage::default()),
                _ => None,
            };
            let usage = usage.or_else(|| usage_of.map(|(_, _, prompt)| Usage { prompt, completion: 0, estimated: true }));
            Served { usage, outcome, status }
        };
        let outcome_ok = if (200..300).contains(&status) { "ok" } else { "error" };
        if done {
            return Attempt::Done(served(&copy, outcome_ok));
        }
        loop {
            match self.next_chunk(session, ctx, a).await {
                Read::Chunk(chunk) => {
                    if let Some(c) = &mut copy {
                        if c.len() + chunk.len() <= MAX_READ_ANSWER {
                            c.extend_from_slice(&chunk);
                        } else {
                            copy = None;
                        }
                    }
                    if !self.send_body(session, a, chunk, false).await {
                        return Attempt::Done(served(&copy, "client_closed"));
                    }
                }
                Read::End => {
                    let _ = session.write_response_body(None, true).await;
                    return Attempt::Done(served(&copy, outcome_ok));
                }
                Read::Failed(e) => return Attempt::Broken(e, served(&None, "broken")),
                Read::CutOff => return Attempt::Broken(cut_off(), served(&None, "cut_off")),
            }
        }
    }

    /// Relays a stream of server-sent events, event by event: passed through (reading usage,
    /// perhaps removing the usage chunk) or translated.
    async fn relay_events(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        a: &mut Answer<'_>,
        mut resp: ResponseHeader,
        mut events: Events,
        prompt_estimate: u64,
    ) -> Attempt {
        let status = a.status;
        resp.remove_header("content-length");
        if matches!(events, Events::Translate(_)) && resp.insert_header("content-type", "text/event-stream").is_err() {
            return Attempt::Broken(cut_off(), Served::nothing("broken"));
        }
        if !self.send_header(session, ctx, resp, false).await {
            return Attempt::Done(Served { usage: None, outcome: "client_closed", status });
        }
        let mut parser = sse::Parser::new(MAX_EVENT);
        let mut seen = StreamUsage::default();
        let ok = if (200..300).contains(&status) { "ok" } else { "error" };
        let served = |seen: &StreamUsage, outcome: &'static str| Served { usage: Some(seen.finish(prompt_estimate)), outcome, status };
        loop {
            let (out, end) = match self.next_chunk(session, ctx, a).await {
                Read::Chunk(chunk) => match parser.feed(&chunk) {
                    Ok(evs) => (events.relay(evs, &mut seen), false),
                    Err(sse::TooLarge) => {
                        let e = Error::explain(ErrorType::InternalError, "the provider sent an oversized event");
                        return Attempt::Broken(e, served(&seen, "broken"));
                    }
                },
                Read::End => (events.relay(parser.finish().into_iter().collect(), &mut seen), true),
                Read::Failed(e) => return Attempt::Broken(e, served(&seen, "broken")),
                Read::CutOff => return Attempt::Broken(cut_off(), served(&seen, "cut_off")),
            };
            if !out.is_empty() && !self.send_body(session, a, out.into(), false).await {
                return Attempt::Done(served(&seen, "client_closed"));
            }
            if end {
                let _ = session.write_response_body(None, true).await;
                return Attempt::Done(served(&seen, ok));
            }
        }
    }

    /// Reads an Anthropic answer whole and sends it translated: a message as a chat
    /// completion, an error in OpenAI's shape with the same status.
    async fn relay_translated(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        a: &mut Answer<'_>,
        resp: ResponseHeader,
        model: &str,
        ok: bool,
    ) -> Attempt {
        let status = a.status;
        let mut body = Vec::new();
        if !a.up.response_done() {
            loop {
                match self.next_chunk(session, ctx, a).await {
                    Read::Chunk(chunk) if body.len() + chunk.len() <= MAX_READ_ANSWER => body.extend_from_slice(&chunk),
                    Read::Chunk(_) => {
                        let e = Error::explain(ErrorType::InternalError, "the provider's answer is too large to translate");
                        return Attempt::Broken(e, Served::nothing("broken"));
                    }
                    Read::End => break,
                    Read::Failed(e) => return Attempt::Broken(e, Served::nothing("broken")),
                    Read::CutOff => return Attempt::Broken(cut_off(), Served::nothing("cut_off")),
                }
            }
        }
        let parsed = if ok { serde_json::from_slice::<Value>(&body).ok() } else { None };
        let (json, usage, outcome) = match &parsed {
            Some(msg) => (anthropic::answer_to_openai(msg, model, crate::clock::unix_now()), usage::from_answer(Api::Anthropic, msg), "ok"),
            None if ok => {
                let e = Error::explain(ErrorType::InternalError, "the provider's answer is not JSON");
                return Attempt::Broken(e, Served::nothing("broken"));
            }
            None => (anthropic::error_to_openai(&body, status), Some(Usage::default()), "error"),
        };
        let bytes = Bytes::from(json.to_string());
        let mut down = resp;
        down.remove_header("content-encoding");
        if down.insert_header("content-type", "application/json").is_err()
            || down.insert_header("content-length", bytes.len().to_string()).is_err()
        {
            return Attempt::Broken(cut_off(), Served::nothing("broken"));
        }
        let served = Served { usage, outcome, status };
        if !self.send_header(session, ctx, down, false).await || !self.send_body(session, a, bytes, true).await {
            return Attempt::Done(Served { outcome: "client_closed", ..served });
        }
        Attempt::Done(served)
    }
}

fn cut_off() -> Box<Error> {
    Error::explain(ErrorType::InternalError, "the stream's credential was revoked")
}

/// What a stream relay does with each event.
enum Events {
    Observe { api: Api, strip_usage: bool },
    Translate(Box<StreamTranslator>),
}

impl Events {
    /// The bytes the client gets for these events, with their usage noted.
    fn relay(&mut self, events: Vec<sse::Event>, seen: &mut StreamUsage) -> Vec<u8> {
        let mut out = Vec::new();
        for ev in events {
            let json: Option<Value> = serde_json::from_str(&ev.data).ok();
            match self {
                Events::Observe { api, strip_usage } => {
                    if let Some(v) = &json {
                        seen.observe(*api, v);
                    }
                    let usage_chunk = *strip_usage
                        && json.as_ref().is_some_and(|v| {
                            v["choices"].as_array().is_some_and(Vec::is_empty) && v.get("usage").is_some_and(|u| !u.is_null())
                        });
                    if !usage_chunk {
                        out.extend_from_slice(&ev.raw);
                    }
                }
                Events::Translate(t) => {
                    if let Some(v) = &json {
                        seen.observe(Api::Anthropic, v);
                        for data in t.event(v) {
                            out.extend(sse::encode(None, &data));
                        }
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(text: &str) -> Vec<sse::Event> {
        sse::Parser::new(1 << 20).feed(text.as_bytes()).unwrap()
    }

    #[test]
    fn the_usage_chunk_the_client_did_not_ask_for_is_removed() {
        let stream = "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n\
                      data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1}}\n\n\
                      data: [DONE]\n\n";
        let mut seen = StreamUsage::default();
        let out = Events::Observe { api: Api::OpenAi, strip_usage: true }.relay(events(stream), &mut seen);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\"Hi\"") && text.ends_with("data: [DONE]\n\n") && !text.contains("prompt_tokens"));
        assert_eq!(seen.finish(0), Usage { prompt: 5, completion: 1, estimated: false });
        // Asked for, it stays, byte for byte.
        let out = Events::Observe { api: Api::OpenAi, strip_usage: false }.relay(events(stream), &mut StreamUsage::default());
        assert_eq!(out, stream.as_bytes());
    }

    #[test]
    fn anthropic_events_become_openai_chunks() {
        let stream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n\
                      event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hey\"}}\n\n\
                      event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":2}}\n\n\
                      event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        let mut seen = StreamUsage::default();
        let mut e = Events::Translate(Box::new(StreamTranslator::new("smart", 1, false)));
        let text = String::from_utf8(e.relay(events(stream), &mut seen)).unwrap();
        let data: Vec<&str> = text.split("\n\n").filter(|s| !s.is_empty()).map(|s| s.trim_start_matches("data: ")).collect();
        assert_eq!(data.len(), 4);
        assert!(data[1].contains("\"content\":\"Hey\"") && data[2].contains("\"finish_reason\":\"stop\""));
        assert_eq!(data[3], "[DONE]");
        assert_eq!(seen.finish(0), Usage { prompt: 3, completion: 2, estimated: false });
    }
}
