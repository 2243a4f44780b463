//! A small OpenAI-style mock LLM provider for demos and the docker-compose stack:
//! `GET /v1/models` lists one model; `POST /v1/chat/completions` answers with JSON, or with
//! server-sent events when the body asks for `"stream": true`. It never calls anything.
//!
//! cargo run --example mock_llm -- [ADDR]    (default 127.0.0.1:8000)

use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::time::Duration;
use tokio::net::TcpListener;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn json(status: u16, v: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())).boxed())
        .unwrap_or_default()
}

async fn handle(req: Request<Incoming>) -> Result<Response<Body>, hyper::Error> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let body = req.into_body().collect().await?.to_bytes();
    Ok(match (method.as_str(), path.as_str()) {
        ("GET", "/v1/models") => json(200, serde_json::json!({"object": "list", "data": [{"id": "mock-1", "object": "model"}]})),
        ("POST", "/v1/chat/completions") => {
            let asked: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            if asked["stream"] == true {
                let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(8);
                tokio::spawn(async move {
                    for word in ["Hello", " from", " the", " mock", " provider."] {
                        let event = serde_json::json!({"choices": [{"delta": {"content": word}}]});
                        if tx.send(Ok(Frame::data(Bytes::from(format!("data: {event}\n\n"))))).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"data: [DONE]\n\n")))).await;
                });
                let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .header("cache-control", "no-cache")
                    .body(StreamBody::new(stream).boxed())
                    .unwrap_or_default()
            } else {
                json(
                    200,
                    serde_json::json!({
                        "id": "chatcmpl-mock",
                        "object": "chat.completion",
                        "model": "mock-1",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the mock provider."}, "finish_reason": "stop"}],
                    }),
                )
            }
        }
        _ => json(404, serde_json::json!({"error": {"message": "not found"}})),
    })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8000".into());
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("mock LLM provider listening on http://{addr}");
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(handle)).await;
        });
    }
}
