//! A small demo upstream: answers every request with JSON describing what it received (method,
//! path, the identity headers the gateway set, the request id, the identity assertion's claims). `scripts/run` starts it on
//! 127.0.0.1:3000 so the README's walk-through answers at once.
//!
//! cargo run --example echo -- [ADDR]    (default 127.0.0.1:3000)

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let summary = serde_json::json!({
        "service": "echo",
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query(),
        "user_id": header("x-user-id"),
        "role": header("x-user-role"),
        "session_id": header("x-session-id"),
        "request_id": header("x-request-id"),
        "saw_authorization": req.headers().contains_key("authorization"),
        "api_key_id": header("x-api-key-id"),
        // The signed identity assertion (`upstreams.NAME.identity_assertion: true`), shown
        // decoded; a real application verifies it against the gateway's /.well-known/jwks.json
        // (see the README's Python example).
        "identity_assertion": header("x-portcullis-assertion")
            .and_then(|t| jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(t).ok())
            .map(|d| d.claims),
    });
    let body_len = req.into_body().collect().await?.to_bytes().len();
    let mut summary = summary;
    summary["body_bytes"] = body_len.into();
    Ok(Response::builder().header("content-type", "application/json").body(Full::new(Bytes::from(summary.to_string()))).unwrap_or_default())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:3000".into());
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("echo upstream listening on http://{addr}");
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(echo)).await;
        });
    }
}
