//! The proxy listener's defences against slow and flooding clients, built around Pingora's own
//! reads (no patch to Pingora):
//!
//! - **connection caps**: `server.max_connections` in total and `server.max_connections_per_ip`
//!   per peer address. A Pingora `ConnectionFilter` ([`AcceptFilter`]) refuses a connection right
//!   after `accept`, before TLS or any read, when a cap is already reached; the exact count is
//!   kept by a slot ([`ConnSlot`]) each admitted connection holds until it closes.
//! - **a new-connection rate per address** (`server.max_new_connections_per_ip_per_second`,
//!   off by default): the same filter refuses a peer that opens connections faster, before
//!   Pingora spawns a task for them. A token bucket per address ([`NewConnRate`], GCRA: a
//!   burst of `rate` connections, then one every `1/rate` s); addresses idle for a second are
//!   forgotten.
//! - **a total deadline for a request's header section** (`server.header_timeout_ms`): Pingora
//!   0.9 only bounds each read (a byte every 59 s keeps a connection forever). [`Guarded`] wraps
//!   Pingora's HTTP proxy app: for each HTTP/1 request it reads the header section itself, under
//!   one deadline (from accept for the first request, from the first byte for the next ones on a
//!   kept-alive connection), and hands the bytes to Pingora's session as its pre-read buffer, so
//!   Pingora parses them without another read. A client too slow gets a 408 with a JSON body and
//!   the connection is closed. HTTP/2 connections (ALPN `h2`) go to Pingora unchanged.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::listeners::ConnectionFilter;
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout_at, Instant};

use crate::metrics::Metrics;

/// Pingora's keep-alive: how long a kept-alive connection may wait for its next request.
const KEEPALIVE: Duration = Duration::from_secs(60);

/// The caps (0 = none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnCaps {
    pub total: usize,
    pub per_ip: usize,
    /// New connections per address per second (0 = no limit).
    pub new_per_ip_per_second: u32,
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerIp,
    /// The address opened connections faster than its rate.
    NewPerIp,
}

impl Refused {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Total => "total",
            Refused::PerIp => "per_ip",
            Refused::NewPerIp => "new_per_ip",
        }
    }
}

/// Open connections, in total and per peer address.
#[derive(Debug)]
pub struct ConnLimits {
    caps: ConnCaps,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    rate: Option<NewConnRate>,
}

/// How fast each address may open connections: a GCRA token bucket per address.
#[derive(Debug)]
pub struct NewConnRate {
    /// Nanoseconds between connections at the steady rate.
    interval: u64,
    /// How far ahead of now an address's schedule may run (the burst less one).
    tolerance: u64,
    start: std::time::Instant,
    /// Per address: when its bucket is full again (ns since `start`).
    full_at: Mutex<RateMap>,
}

#[derive(Debug, Default)]
struct RateMap {
    full_at: HashMap<IpAddr, u64>,
    /// The size after the last sweep: the next sweep waits until the map doubles.
    swept_len: usize,
}

impl NewConnRate {
    pub fn new(per_second: u32) -> Self {
        let interval = 1_000_000_000 / u64::from(per_second.max(1));
        NewConnRate {
            interval,
            tolerance: interval * u64::from(per_second.max(1) - 1),
            start: std::time::Instant::now(),
            full_at: Mutex::new(RateMap::default()),
        }
    }

    /// Whether `ip` may open a connection `now_ns` after the start (and counts it if so).
    pub fn allow_at(&self, ip: IpAddr, now_ns: u64) -> bool {
        let mut m = self.full_at.lock().unwrap_or_else(|p| p.into_inner());
        let tat = m.full_at.get(&ip).copied().unwrap_or(0).max(now_ns);
        if tat - now_ns > self.tolerance {
            return false;
        }
        m.full_at.insert(ip, tat + self.interval);
        // Addresses whose bucket is full again hold no state worth keeping; swept when the
        // map has doubled since the last sweep, so the cost is amortised over the inserts.
        if m.full_at.len() > 1024 && m.full_at.len() > 2 * m.swept_len {
            m.full_at.retain(|_, at| *at > now_ns);
            m.swept_len = m.full_at.len();
        }
        true
    }

    fn allow(&self, ip: IpAddr) -> bool {
        let now = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.allow_at(ip, now)
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.full_at.lock().unwrap().full_at.len()
    }
}

/// An admitted connection's place; gives it back when dropped.
#[derive(Debug)]
pub struct ConnSlot {
    limits: Arc<ConnLimits>,
    ip: Option<IpAddr>,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.limits.total.fetch_sub(1, Ordering::Relaxed);
        if let Some(ip) = self.ip {
            let mut map = self.limits.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
    }
}

impl ConnLimits {
    pub fn new(caps: ConnCaps) -> Arc<Self> {
        let rate = (caps.new_per_ip_per_second > 0).then(|| NewConnRate::new(caps.new_per_ip_per_second));
        Arc::new(ConnLimits { caps, total: AtomicUsize::new(0), per_ip: Mutex::new(HashMap::new()), rate })
    }

    /// The check at accept: a cap already reached for `ip` (no slot taken), or `ip` opening
    /// connections faster than its rate (an admitted connection counts against it).
    pub fn refuse_at_accept(&self, ip: Option<IpAddr>) -> Option<Refused> {
        if let Some(reason) = self.full(ip) {
            return Some(reason);
        }
        match (&self.rate, ip) {
            (Some(rate), Some(ip)) if !rate.allow(ip) => Some(Refused::NewPerIp),
            _ => None,
        }
    }

    /// Whether a cap is already reached for `ip` (the cheap check at accept; no slot taken).
    pub fn full(&self, ip: Option<IpAddr>) -> Option<Refused> {
        if self.caps.total > 0 && self.total.load(Ordering::Relaxed) >= self.caps.total {
            return Some(Refused::Total);
        }
        if let (Some(ip), true) = (ip, self.caps.per_ip > 0) {
            let map = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if map.get(&ip).copied().unwrap_or(0) >= self.caps.per_ip {
                return Some(Refused::PerIp);
            }
        }
        None
    }

    /// Takes a place for a connection from `ip`, or says which cap refuses it.
    pub fn admit(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<ConnSlot, Refused> {
        let before = self.total.fetch_add(1, Ordering::Relaxed);
        if self.caps.total > 0 && before >= self.caps.total {
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err(Refused::Total);
        }
        // Without a per-address cap, addresses are not counted (no lock, no map entry).
        let ip = ip.filter(|_| self.caps.per_ip > 0);
        if let Some(ip) = ip {
            let mut map = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = map.entry(ip).or_insert(0);
            if *n >= self.caps.per_ip {
                drop(map);
                self.total.fetch_sub(1, Ordering::Relaxed);
                return Err(Refused::PerIp);
            }
            *n += 1;
        }
        Ok(ConnSlot { limits: self.clone(), ip })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

/// Refuses connections at accept, before TLS, while a cap is reached.
pub struct AcceptFilter {
    pub limits: Arc<ConnLimits>,
    pub metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for AcceptFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcceptFilter").field("limits", &self.limits).finish()
    }
}

#[async_trait]
impl ConnectionFilter for AcceptFilter {
    async fn should_accept(&self, addr: Option<&std::net::SocketAddr>) -> bool {
        match self.limits.refuse_at_accept(addr.map(|a| a.ip())) {
            None => true,
            Some(reason) => {
                if let Some(m) = &self.metrics {
                    m.traffic.connection_refused(reason.as_str());
                }
                false
            }
        }
    }
}

/// How reading a header section ended.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderRead {
    /// The blank line that ends it is in the buffer.
    Complete,
    /// The peer closed (or the connection failed) first.
    Closed,
    /// The deadline passed first.
    TimedOut,
    /// More than the allowed bytes arrived without the end.
    TooLarge,
}

/// Where the header section ends (just past its blank line), if it is in `buf`; `from` is
/// where the previous search stopped (the search resumes a few bytes before it).
pub fn header_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3).min(buf.len());
    // memchr jumps from line end to line end (a byte-by-byte loop cost ~5 instructions a
    // byte of every request's header section).
    memchr::memchr_iter(b'\n', &buf[start..]).map(|i| i + start).find_map(|i| {
        // "\n\n" or "\n\r\n" (httparse accepts both line endings)
        match (buf.get(i + 1), buf.get(i + 2)) {
            (Some(b'\n'), _) => Some(i + 2),
            (Some(b'\r'), Some(b'\n')) => Some(i + 3),
            _ => None,
        }
    })
}

/// Reads into `buf` until the header section is complete, the peer closes, `deadline` passes or
/// more than `max` bytes arrive without the end. Bytes already in `buf` count.
pub async fn read_header<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut BytesMut, deadline: Instant, max: usize) -> HeaderRead {
    let mut searched: usize = 0;
    loop {
        // Leading empty lines before a request line are allowed (RFC 9112 section 2.2).
        let skip = buf.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
        if header_end(&buf[skip..], searched.saturating_sub(skip)).is_some() {
            return HeaderRead::Complete;
        }
        searched = buf.len();
        if buf.len() > max {
            return HeaderRead::TooLarge;
        }
        match timeout_at(deadline, stream.read_buf(buf)).await {
            Err(_) => return HeaderRead::TimedOut,
            Ok(Ok(0)) | Ok(Err(_)) => return HeaderRead::Closed,
            Ok(Ok(_)) => {}
        }
    }
}

/// An error answer written straight to the socket (no request was parsed) and the end of the
/// connection.
async fn refuse(stream: &mut Stream, status: &str, code: &str, message: &str) {
    let body = crate::proxy::reply::error_body(code, message);
    let head =
        format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        stream.flush().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

/// Pingora's HTTP app with the caps and the header deadline in front of it.
pub struct Guarded<A> {
    pub inner: Arc<A>,
    pub limits: Arc<ConnLimits>,
    pub header_timeout: Duration,
    pub max_header_bytes: usize,
    pub metrics: Option<Arc<Metrics>>,
}

fn peer_ip(stream: &Stream) -> Option<IpAddr> {
    let digest = stream.get_socket_digest()?;
    digest.peer_addr()?.as_inet().map(|a| a.ip())
}

#[async_trait]
impl<A> ServerApp for Guarded<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(self: &Arc<Self>, mut stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let _slot = match self.limits.admit(peer_ip(&stream)) {
            Ok(slot) => slot,
            Err(reason) => {
                if let Some(m) = &self.metrics {
                    m.traffic.connection_refused(reason.as_str());
                }
                return None;
            }
        };
        let _open = OpenGauge::new(self.metrics.clone());
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return ServerApp::process_new(&self.inner, stream, shutdown).await;
        }
        let mut deadline = Instant::now() + self.header_timeout;
        let mut settings: Option<HttpPersistentSettings> = None;
        let mut reused = false;
        // One keep-alive timer per connection, moved forward for each request (a new timer per
        // request cost its allocation, registration and removal every time).
        let idle = tokio::time::sleep(KEEPALIVE);
        tokio::pin!(idle);
        loop {
            let mut buf = BytesMut::with_capacity(4096);
            if reused {
                // A kept-alive connection: the next request may take as long as keep-alive
                // allows to start, and then has the full deadline for its header section.
                idle.as_mut().reset(Instant::now() + KEEPALIVE);
                let read = tokio::select! {
                    biased;
                    read = stream.read_buf(&mut buf) => read,
                    () = &mut idle => return None,
                };
                match read {
                    Ok(n) if n > 0 => deadline = Instant::now() + self.header_timeout,
                    _ => return None,
                }
            }
            match read_header(&mut stream, &mut buf, deadline, self.max_header_bytes).await {
                HeaderRead::Complete => {}
                HeaderRead::Closed => return None,
                HeaderRead::TimedOut => {
                    if let Some(m) = &self.metrics {
                        m.traffic.header_timeout();
                    }
                    let message = format!("the request's header section did not arrive within {} ms", self.header_timeout.as_millis());
                    refuse(&mut stream, "408 Request Timeout", "request_timeout", &message).await;
                    return None;
                }
                HeaderRead::TooLarge => {
                    let message = format!("the request's header section is larger than {} bytes", self.max_header_bytes);
                    refuse(&mut stream, "431 Request Header Fields Too Large", "headers_too_large", &message).await;
                    return None;
                }
            }
            let mut session = ServerSession::new_http1(stream);
            match settings.take() {
                Some(s) => s.apply_to_session(&mut session),
                None => {
                    session.set_keepalive(if *shutdown.borrow() { None } else { Some(KEEPALIVE.as_secs()) });
                    session.set_keepalive_reuses_remaining(self.inner.server_options().and_then(|o| o.keepalive_request_limit));
                }
            }
            session.set_pipelined_prefix(buf);
            (stream, settings) = self.inner.process_new_http(session, shutdown).await?.consume();
            reused = true;
        }
    }

    async fn cleanup(&self) {
        self.inner.http_cleanup().await;
    }
}

/// Counts an open connection for as long as it lives.
struct OpenGauge(Option<Arc<Metrics>>);

impl OpenGauge {
    fn new(m: Option<Arc<Metrics>>) -> Self {
        if let Some(m) = &m {
            m.traffic.connection_opened(true);
        }
        OpenGauge(m)
    }
}

impl Drop for OpenGauge {
    fn drop(&mut self) {
        if let Some(m) = &self.0 {
            m.traffic.connection_opened(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_section_ends_at_its_blank_line() {
        assert_eq!(header_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody", 0), Some(27));
        assert_eq!(header_end(b"GET / HTTP/1.1\nHost: x\n\nbody", 0), Some(24));
        assert_eq!(header_end(b"GET / HTTP/1.1\r\nHost: x\r\n", 0), None);
        assert_eq!(header_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r", 0), None);
        // Resuming a search finds an end that straddles the previous read.
        let buf = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(header_end(buf, 26), Some(27));
        assert_eq!(header_end(buf, 27), Some(27));
    }

    #[tokio::test(start_paused = true)]
    async fn reading_a_header_section_ends_each_way() {
        let read = |input: &'static [u8], max: usize| async move {
            let (mut client, mut server) = tokio::io::duplex(1024);
            client.write_all(input).await.unwrap();
            let mut buf = BytesMut::new();
            let r = read_header(&mut server, &mut buf, Instant::now() + Duration::from_secs(1), max).await;
            drop(client);
            (r, buf.len())
        };
        assert_eq!(read(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1024).await, (HeaderRead::Complete, 27));
        assert_eq!(read(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n", 1024).await.0, HeaderRead::Complete, "leading blank lines skipped");
        assert_eq!(read(b"GET / HTTP/1.1\r\nHost: x\r\n", 1024).await.0, HeaderRead::TimedOut);
        assert_eq!(read(b"GET / HTTP/1.1\r\nX-Big: aaaaaaaaaaaaaaaaaaaaaaaaa", 16).await.0, HeaderRead::TooLarge);
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"GET / HT").await.unwrap();
        drop(client);
        let mut buf = BytesMut::new();
        assert_eq!(read_header(&mut server, &mut buf, Instant::now() + Duration::from_secs(1), 1024).await, HeaderRead::Closed);
    }

    #[test]
    fn new_connections_per_address_are_a_token_bucket() {
        let rate = NewConnRate::new(4);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let sec = 1_000_000_000;
        // A burst of four, then none until a quarter second has passed.
        assert!((0..4).all(|_| rate.allow_at(a, sec)));
        assert!(!rate.allow_at(a, sec), "the fifth in the same instant");
        assert!(!rate.allow_at(a, sec + sec / 4 - 1));
        assert!(rate.allow_at(a, sec + sec / 4), "one more each quarter second");
        assert!(!rate.allow_at(a, sec + sec / 4));
        assert!(rate.allow_at(b, sec), "each address has its own bucket");
        // Refused attempts do not push the schedule back: a quarter second later one is allowed.
        assert!((0..100).all(|_| !rate.allow_at(a, sec + sec / 2 - 1)));
        assert!(rate.allow_at(a, sec + sec / 2));
        // After a full second idle the whole burst is back.
        assert!((0..4).all(|_| rate.allow_at(a, 3 * sec)));
        assert!(!rate.allow_at(a, 3 * sec));
        let one = NewConnRate::new(1);
        assert!(one.allow_at(a, 0) && !one.allow_at(a, sec - 1) && one.allow_at(a, sec), "rate 1: one a second, no burst");
    }

    #[test]
    fn idle_addresses_are_forgotten_as_the_table_grows() {
        let rate = NewConnRate::new(10);
        let sec = 1_000_000_000u64;
        for i in 0..5000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            // Each address once, 1 ms apart: at any moment only the last 100 ms are live.
            assert!(rate.allow_at(ip, sec + u64::from(i) * 1_000_000));
        }
        assert!(rate.tracked() < 2100, "swept as it grew: {} addresses kept", rate.tracked());
    }

    #[test]
    fn the_accept_check_refuses_by_rate_only_when_configured() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let limited = ConnLimits::new(ConnCaps { total: 0, per_ip: 0, new_per_ip_per_second: 2 });
        assert_eq!(limited.refuse_at_accept(Some(a)), None);
        assert_eq!(limited.refuse_at_accept(Some(a)), None);
        assert_eq!(limited.refuse_at_accept(Some(a)), Some(Refused::NewPerIp));
        assert_eq!(limited.refuse_at_accept(None), None, "no address, no bucket");
        let open = ConnLimits::new(ConnCaps { total: 0, per_ip: 0, new_per_ip_per_second: 0 });
        assert!((0..1000).all(|_| open.refuse_at_accept(Some(a)).is_none()));
        assert!(open.rate.is_none());
        let capped = ConnLimits::new(ConnCaps { total: 1, per_ip: 0, new_per_ip_per_second: 100 });
        let _slot = capped.admit(Some(a)).unwrap();
        assert_eq!(capped.refuse_at_accept(Some(a)), Some(Refused::Total), "a cap reached refuses first, spending no token");
    }

    #[test]
    fn caps_count_per_address_and_in_total_and_slots_give_places_back() {
        let limits = ConnLimits::new(ConnCaps { total: 3, per_ip: 2, new_per_ip_per_second: 0 });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = limits.admit(Some(a)).unwrap();
        let a2 = limits.admit(Some(a)).unwrap();
        assert_eq!(limits.full(Some(a)), Some(Refused::PerIp));
        assert_eq!(limits.admit(Some(a)).unwrap_err(), Refused::PerIp);
        assert_eq!(limits.full(Some(b)), None);
        let b1 = limits.admit(Some(b)).unwrap();
        assert_eq!(limits.full(Some(b)), Some(Refused::Total));
        assert_eq!(limits.admit(Some(b)).unwrap_err(), Refused::Total);
        assert_eq!(limits.open(), 3);
        drop(a1);
        assert_eq!(limits.full(Some(a)), None);
        let _a3 = limits.admit(Some(a)).unwrap();
        drop((a2, b1));
        assert_eq!(limits.open(), 1);
        assert_eq!(limits.per_ip.lock().unwrap().len(), 1, "addresses with no connection are forgotten");
        let open = ConnLimits::new(ConnCaps { total: 0, per_ip: 0, new_per_ip_per_second: 0 });
        let many: Vec<_> = (0..100).map(|_| open.admit(Some(a)).unwrap()).collect();
        assert_eq!(open.open(), 100);
        assert!(open.per_ip.lock().unwrap().is_empty(), "no per-address bookkeeping without a per-address cap");
        drop(many);
        assert_eq!(open.open(), 0);
    }
}
