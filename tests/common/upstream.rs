//! A real HTTP/1.1 upstream on loopback (hyper) that records every request it receives and
//! counts connections. It runs on its own thread and runtime so tests can use blocking clients.

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// The request target exactly as received (path and query).
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    /// Every value of a header (case-insensitive name).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    /// The single value of a header, if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.all(name).first().copied()
    }
}

/// How a mock answers (providers in the failover tests).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Behavior {
    /// 200 with a small JSON body naming this mock.
    #[default]
    Ok,
    /// This status (with `Retry-After` when given).
    Status(u16, Option<u64>),
    /// Never answer.
    Hang,
    /// Server-sent events: this many, this many ms apart.
    Sse(usize, u64),
    /// Send the header and a first chunk, then drop the connection.
    DieMidStream,
}

#[derive(Default)]
struct Shared {
    seen: Mutex<Vec<Seen>>,
    connections: AtomicUsize,
    delay_ms: AtomicU64,
    behavior: Mutex<Behavior>,
    /// A different behavior for this one path (health probes).
    path_behavior: Mutex<Option<(String, Behavior)>>,
    name: Mutex<String>,
}

/// A recording upstream. Answers 200 `{"ok":true}` unless told to be slow.
pub struct MockUpstream {
    pub port: u16,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl MockUpstream {
    /// Starts on a free loopback port.
    pub fn start() -> Self {
        Self::start_on(0)
    }

    /// Starts on `port` (0: a free one), e.g. to bring a killed provider back on its address.
    pub fn start_on(port: u16) -> Self {
        let shared = Arc::new(Shared::default());
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let s = shared.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
                port_tx.send(listener.local_addr().expect("addr").port()).expect("send port");
                let accept = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else { continue };
                        s.connections.fetch_add(1, Ordering::SeqCst);
                        let s = s.clone();
                        tokio::spawn(async move {
                            let svc = service_fn(move |req| handle(s.clone(), req));
                            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stop_rx => {}
                }
            });
        });
        let port = port_rx.recv().expect("upstream port");
        MockUpstream { port, shared, stop: Some(stop_tx) }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().expect("lock").clone()
    }

    /// How many requests reached this upstream.
    pub fn hits(&self) -> usize {
        self.shared.seen.lock().expect("lock").len()
    }

    /// The last request received.
    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the upstream received no request")
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Answers from now on like this.
    pub fn set_behavior(&self, b: Behavior) {
        *self.shared.behavior.lock().expect("lock") = b;
    }

    /// Answers requests for `path` like this (others as usual).
    pub fn set_path_behavior(&self, path: &str, b: Behavior) {
        *self.shared.path_behavior.lock().expect("lock") = Some((path.to_string(), b));
    }

    /// Names this mock in its JSON answers.
    pub fn named(self, name: &str) -> Self {
        *self.shared.name.lock().expect("lock") = name.to_string();
        self
    }

    /// Requests received for `path`.
    pub fn hits_on(&self, path: &str) -> usize {
        self.seen().iter().filter(|s| s.target.split('?').next() == Some(path)).count()
    }

    /// Delay every answer by this long.
    pub fn set_delay(&self, d: Duration) {
        self.shared.delay_ms.store(d.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

type MockBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

async fn handle(s: Arc<Shared>, req: Request<Incoming>) -> Result<Response<MockBody>, hyper::Error> {
    let method = req.method().to_string();
    let target = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let path = req.uri().path().to_string();
    let headers = req.headers().iter().map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect();
    let body = req.into_body().collect().await?.to_bytes().to_vec();
    s.seen.lock().expect("lock").push(Seen { method, target, headers, body });
    let delay = s.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let behavior = match s.path_behavior.lock().expect("lock").clone() {
        Some((p, b)) if p == path => b,
        _ => s.behavior.lock().expect("lock").clone(),
    };
    let name = s.name.lock().expect("lock").clone();
    let full = |status: u16, text: String| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .header("x-upstream", "mock")
            .body(Full::new(Bytes::from(text)).map_err(|never| match never {}).boxed())
            .expect("response")
    };
    Ok(match behavior {
        Behavior::Ok if name.is_empty() => full(200, r#"{"ok":true}"#.into()),
        Behavior::Ok => full(200, format!(r#"{{"ok":true,"provider":"{name}"}}"#)),
        Behavior::Status(code, retry_after) => {
            let mut r = full(code, format!(r#"{{"error":"mock {code}"}}"#));
            if let Some(secs) = retry_after {
                r.headers_mut().insert("retry-after", secs.to_string().parse().expect("header"));
            }
            r
        }
        Behavior::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            full(200, String::new())
        }
        Behavior::Sse(n, gap_ms) => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<hyper::body::Frame<Bytes>, std::io::Error>>(4);
            tokio::spawn(async move {
                for i in 0..n {
                    if tx.send(Ok(hyper::body::Frame::data(Bytes::from(format!("data: event {i}\n\n"))))).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(gap_ms)).await;
                }
                let _ = tx.send(Ok(hyper::body::Frame::data(Bytes::from_static(b"data: [DONE]\n\n")))).await;
            });
            let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(http_body_util::StreamBody::new(stream).boxed())
                .expect("response")
        }
        Behavior::DieMidStream => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<hyper::body::Frame<Bytes>, std::io::Error>>(4);
            tokio::spawn(async move {
                let _ = tx.send(Ok(hyper::body::Frame::data(Bytes::from_static(b"data: partial\n\n")))).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = tx.send(Err(std::io::Error::other("provider died"))).await;
            });
            let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(http_body_util::StreamBody::new(stream).boxed())
                .expect("response")
        }
    })
}
