//! A mock LLM provider for the demo, the docker-compose stack and the tests. It never calls
//! anything. It speaks both APIs the gateway's chains speak:
//! - OpenAI: `GET /v1/models`; `POST /v1/chat/completions` answers JSON, or server-sent
//!   `chat.completion.chunk` events ending in `data: [DONE]` (with a final usage chunk when the
//!   request asks for `stream_options.include_usage`), as OpenAI does.
//! - Anthropic: `POST /v1/messages` (it requires `x-api-key` and `anthropic-version`, as the real
//!   API does; the demo's keyless provider runs it without `--require-key`) answers a message, or the real event sequence: `message_start`,
//!   `content_block_start`, `ping`, `content_block_delta`..., `content_block_stop`,
//!   `message_delta`, `message_stop`. A request with tools is answered with a `tool_use` block.
//!
//! Every answer names the model the request named and reports usage (prompt: about four
//! characters a token; completion: one token a word). Errors take each API's own shape.
//!
//! cargo run --example mock_llm -- [ADDR] [--api openai|anthropic|both] [--require-key]
//! (default 127.0.0.1:8000, both APIs, no key required)

use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// The words of every answer.
pub const WORDS: [&str; 5] = ["Hello", " from", " the", " mock", " provider."];

/// Which API the mock serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    OpenAi,
    Anthropic,
    Both,
}

/// The mock's state: what it serves, a status to fail with, and every call it saw.
pub struct Mock {
    pub mode: Mode,
    /// Non-zero: every completion/message request is answered with this status.
    pub fail_with: AtomicU16,
    /// (path, model) of every completion/message request.
    pub seen: Mutex<Vec<(String, String)>>,
    /// Refuse Anthropic requests without `x-api-key` (401), as the real API does.
    pub require_key: bool,
    /// Non-zero: a streamed answer breaks (the connection drops) after this many events.
    pub cut_after: AtomicUsize,
    /// Pause between streamed events.
    pub pace: Duration,
}

impl Mock {
    pub fn new(mode: Mode) -> Arc<Self> {
        Arc::new(Mock {
            mode,
            require_key: true,
            fail_with: AtomicU16::new(0),
            seen: Mutex::new(Vec::new()),
            cut_after: AtomicUsize::new(0),
            pace: Duration::from_millis(20),
        })
    }
}

fn json_reply(status: u16, v: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())).map_err(|never| match never {}).boxed())
        .unwrap_or_default()
}

fn openai_error(status: u16, message: &str) -> Response<Body> {
    json_reply(status, json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}}))
}

fn anthropic_error(status: u16, kind: &str, message: &str) -> Response<Body> {
    json_reply(status, json!({"type": "error", "error": {"type": kind, "message": message}}))
}

fn sse_reply(events: Vec<Vec<u8>>, pace: Duration, cut_after: usize) -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(8);
    tokio::spawn(async move {
        for (i, e) in events.into_iter().enumerate() {
            if cut_after > 0 && i == cut_after {
                let _ = tx.send(Err(std::io::Error::other("the mock provider breaks the stream on purpose"))).await;
                return;
            }
            if tx.send(Ok(Frame::data(Bytes::from(e)))).await.is_err() {
                return;
            }
            tokio::time::sleep(pace).await;
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(StreamBody::new(stream).boxed())
        .unwrap_or_default()
}

/// Prompt tokens: about four characters a token of every string in the messages.
fn prompt_tokens(asked: &Value) -> u64 {
    fn chars(v: &Value) -> usize {
        match v {
            Value::String(s) => s.chars().count(),
            Value::Array(a) => a.iter().map(chars).sum(),
            Value::Object(o) => o.values().map(chars).sum(),
            _ => 0,
        }
    }
    (["messages", "system"].iter().map(|k| chars(&asked[*k])).sum::<usize>() as u64).div_ceil(4).max(1)
}

fn openai(asked: &Value, pace: Duration, cut_after: usize) -> Response<Body> {
    let model = asked["model"].as_str().unwrap_or("mock-1").to_string();
    let prompt = prompt_tokens(asked);
    let completion = WORDS.len() as u64;
    let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
    if asked["stream"] != true {
        return json_reply(
            200,
            json!({
                "id": "chatcmpl-mock", "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": WORDS.concat()}, "finish_reason": "stop"}],
                "usage": usage,
            }),
        );
    }
    let chunk = |delta: Value, finish: Value| {
        let c = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": model,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": null});
        format!("data: {c}\n\n").into_bytes()
    };
    let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
    events.extend(WORDS.iter().map(|w| chunk(json!({"content": w}), Value::Null)));
    events.push(chunk(json!({}), json!("stop")));
    if asked["stream_options"]["include_usage"] == true {
        let c =
            json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [], "usage": usage});
        events.push(format!("data: {c}\n\n").into_bytes());
    }
    events.push(b"data: [DONE]\n\n".to_vec());
    sse_reply(events, pace, cut_after)
}

fn anthropic(asked: &Value, pace: Duration, cut_after: usize) -> Response<Body> {
    let model = asked["model"].as_str().unwrap_or("claude-mock").to_string();
    if asked["max_tokens"].as_u64().is_none() {
        return anthropic_error(400, "invalid_request_error", "max_tokens: Field required");
    }
    if asked["messages"].as_array().is_none_or(|m| m.is_empty()) {
        return anthropic_error(400, "invalid_request_error", "messages: at least one message is required");
    }
    let prompt = prompt_tokens(asked);
    let tool = asked["tools"][0]["name"].as_str().map(str::to_string);
    let completion = WORDS.len() as u64;
    let stop_reason = if tool.is_some() { "tool_use" } else { "end_turn" };
    if asked["stream"] != true {
        let content = match &tool {
            Some(name) => json!([{"type": "tool_use", "id": "toolu_mock", "name": name, "input": {"city": "Oslo"}}]),
            None => json!([{"type": "text", "text": WORDS.concat()}]),
        };
        return json_reply(
            200,
            json!({
                "id": "msg_mock", "type": "message", "role": "assistant", "model": model, "content": content,
                "stop_reason": stop_reason, "stop_sequence": null,
                "usage": {"input_tokens": prompt, "output_tokens": completion},
            }),
        );
    }
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n").into_bytes();
    let mut events = vec![event(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_mock", "type": "message", "role": "assistant", "model": model,
                   "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": prompt, "output_tokens": 1}}}),
    )];
    match &tool {
        Some(name) => {
            events.push(event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_mock", "name": name, "input": {}}}),
            ));
            events.push(event("ping", json!({"type": "ping"})));
            for part in ["{\"city\":", " \"Oslo\"}"] {
                events.push(event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": part}}),
                ));
            }
        }
        None => {
            events.push(event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ));
            events.push(event("ping", json!({"type": "ping"})));
            for w in WORDS {
                events.push(event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}),
                ));
            }
        }
    }
    events.push(event("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
    events.push(event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": {"output_tokens": completion}}),
    ));
    events.push(event("message_stop", json!({"type": "message_stop"})));
    sse_reply(events, pace, cut_after)
}

/// Answers one request.
pub async fn handle(mock: Arc<Mock>, req: Request<Incoming>) -> Result<Response<Body>, hyper::Error> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let has = |h: &str| req.headers().contains_key(h);
    let (anthropic_key, anthropic_version) = (has("x-api-key"), has("anthropic-version"));
    let body = req.into_body().collect().await?.to_bytes();
    let asked: Value = serde_json::from_slice(&body).unwrap_or_default();
    let serves = |m: Mode| mock.mode == m || mock.mode == Mode::Both;
    let failing = mock.fail_with.load(Ordering::Relaxed);
    let note = || {
        let model = asked["model"].as_str().unwrap_or("").to_string();
        mock.seen.lock().unwrap_or_else(|p| p.into_inner()).push((path.clone(), model));
    };
    Ok(match (method.as_str(), path.as_str()) {
        ("GET", "/v1/models") => json_reply(200, json!({"object": "list", "data": [{"id": "mock-1", "object": "model"}]})),
        ("POST", "/v1/chat/completions") if serves(Mode::OpenAi) => {
            note();
            match failing {
                0 if !asked.is_object() => openai_error(400, "the body must be a JSON object"),
                0 => openai(&asked, mock.pace, mock.cut_after.load(Ordering::Relaxed)),
                status => openai_error(status, "the mock provider is failing on purpose"),
            }
        }
        ("POST", "/v1/messages") if serves(Mode::Anthropic) => {
            note();
            match failing {
                _ if mock.require_key && !anthropic_key => anthropic_error(401, "authentication_error", "x-api-key header is required"),
                _ if !anthropic_version => anthropic_error(400, "invalid_request_error", "anthropic-version header is required"),
                0 => anthropic(&asked, mock.pace, mock.cut_after.load(Ordering::Relaxed)),
                status => anthropic_error(status, "overloaded_error", "Overloaded"),
            }
        }
        _ => openai_error(404, "not found"),
    })
}

/// Serves `mock` on `listener` until the process ends.
pub async fn serve(listener: TcpListener, mock: Arc<Mock>) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let mock = mock.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(mock.clone(), req));
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut addr = "127.0.0.1:8000".to_string();
    let mut mode = Mode::Both;
    let mut require_key = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--api" => {
                mode = match args.next().as_deref() {
                    Some("openai") => Mode::OpenAi,
                    Some("anthropic") => Mode::Anthropic,
                    Some("both") => Mode::Both,
                    other => {
                        eprintln!("mock_llm: --api takes openai, anthropic or both (got {other:?})");
                        std::process::exit(2);
                    }
                }
            }
            "--require-key" => require_key = true,
            other => addr = other.to_string(),
        }
    }
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("mock LLM provider ({mode:?}) listening on http://{addr}");
    let mut mock = Mock::new(mode);
    if let Some(m) = Arc::get_mut(&mut mock) {
        m.require_key = require_key;
    }
    serve(listener, mock).await
}
