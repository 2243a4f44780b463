//! Slow and flooding clients: the total deadline for a request's header section
//! (`server.header_timeout_ms`) and the caps on open connections (`server.max_connections`,
//! `server.max_connections_per_ip`) and on the rate of new ones
//! (`server.max_new_connections_per_ip_per_second`), through the real gateway.
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its reason

mod common;

use common::config::Config;
use common::{Connection, MockUpstream, TestGateway};
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn gateway(settings: &[(&str, &str)]) -> (TestGateway, MockUpstream) {
    let up = MockUpstream::start();
    let mut c = Config::seed(&up.url());
    for (k, v) in settings {
        c = c.set(k, v);
    }
    (TestGateway::start(&c.yaml()), up)
}

#[test]
fn a_header_section_dripping_in_is_cut_at_the_deadline_with_a_408() {
    let (gw, up) = gateway(&[("server.header_timeout_ms", "1000")]);
    // One byte every 100 ms: each read is quick, the whole header section never completes in time.
    let mut c = Connection::open(gw.addr);
    let start = Instant::now();
    assert!(c.write(b"GET /public/x HTTP/1.1\r\nHost: x\r\n"));
    let mut cut = None;
    for b in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".iter().cycle().take(400) {
        if !c.write(&[*b]) {
            cut = Some(start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if start.elapsed() > Duration::from_secs(2) {
            break;
        }
    }
    let r = c.read_reply().expect("a 408 before the close");
    assert_eq!((r.status, r.error_code().as_str()), (408, "request_timeout"), "{cut:?}");
    assert!(c.closed_by_server());
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(up.hits(), 0, "nothing reached the upstream");

    // A connection that sends nothing at all is closed the same way.
    let mut idle = Connection::open(gw.addr);
    let r = idle.read_reply().expect("a 408");
    assert_eq!(r.status, 408);
    assert!(gw.metric("portcullis_header_timeouts_total").unwrap() >= 2.0);

    // Well-behaved clients are untouched: kept-alive requests with pauses longer than the
    // deadline between them (the deadline starts with a request's first byte).
    let mut k = Connection::open(gw.addr);
    for _ in 0..3 {
        let r = k.send(gw.get("/public/x")).expect("a reply");
        assert_eq!(r.status, 200);
        std::thread::sleep(Duration::from_millis(1300));
    }
    // And a header section sent in pieces within the deadline is served.
    let mut p = Connection::open(gw.addr);
    assert!(p.write(b"GET /public/x HTTP/1.1\r\n"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(p.write(b"Host: x\r\nConnection: close\r\n"));
    std::thread::sleep(Duration::from_millis(300));
    let r = p.exchange(b"\r\n").expect("a reply");
    assert_eq!(r.status, 200);
}

#[test]
fn an_oversized_header_section_is_refused_without_waiting_for_its_end() {
    let (gw, up) = gateway(&[("server.max_header_bytes", "2048")]);
    let mut c = Connection::open(gw.addr);
    let big = format!("GET /public/x HTTP/1.1\r\nX-Big: {}\r\n", "a".repeat(4096));
    let r = c.exchange(big.as_bytes()).expect("a reply");
    assert_eq!((r.status, r.error_code().as_str()), (431, "headers_too_large"));
    assert_eq!(up.hits(), 0);
}

/// Opens a connection from `source` (a loopback address) to `to`.
fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let s = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        socket.connect(to).await.unwrap()
    });
    let s = s.into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s
}

/// Whether the gateway closed `s` at once (EOF or reset within half a second, no reply).
fn refused(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted),
    }
}

#[test]
fn connections_over_the_caps_are_closed_at_accept() {
    let (gw, _up) = gateway(&[("server.max_connections_per_ip", "3"), ("server.max_connections", "5")]);
    let mut held: Vec<TcpStream> = (0..3).map(|_| connect_from("127.0.0.1", gw.addr)).collect();
    // Wait until the gateway has admitted them (the gauge counts admitted connections).
    assert!(common::eventually(Duration::from_secs(5), || gw.metric("portcullis_connections_open") == Some(3.0)));
    let mut fourth = connect_from("127.0.0.1", gw.addr);
    assert!(refused(&mut fourth), "a fourth connection from one address is closed");
    // Another address still gets in, up to the total.
    let mut other: Vec<TcpStream> = (0..2).map(|_| connect_from("127.0.0.2", gw.addr)).collect();
    assert!(common::eventually(Duration::from_secs(5), || gw.metric("portcullis_connections_open") == Some(5.0)));
    let mut over_total = connect_from("127.0.0.3", gw.addr);
    assert!(refused(&mut over_total), "the sixth connection in all is closed");
    for s in other.iter_mut().chain(held.iter_mut()) {
        s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let mut b = [0u8; 1];
        assert!(
            matches!(s.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut),
            "admitted connections stay open"
        );
    }
    assert_eq!(gw.metric("portcullis_connections_open"), Some(5.0));
    assert!(gw.metric("portcullis_connections_refused_total{reason=\"per_ip\"}").unwrap() >= 1.0);
    assert!(gw.metric("portcullis_connections_refused_total{reason=\"total\"}").unwrap() >= 1.0);
    // Closing gives the place back.
    held.clear();
    other.clear();
    assert!(common::eventually(Duration::from_secs(5), || gw.metric("portcullis_connections_open") == Some(0.0)));
    let mut c = Connection::open(gw.addr);
    assert_eq!(c.send(gw.get("/public/x")).unwrap().status, 200);
}

#[test]
fn an_address_opening_connections_too_fast_is_refused_at_accept() {
    let (gw, up) = gateway(&[("server.max_new_connections_per_ip_per_second", "5")]);
    // Ten new connections from one address as fast as they go: the burst of five is admitted
    // (perhaps one more, refilled while the others were served), the rest are closed at accept
    // without a reply and nothing of theirs reaches the upstream.
    let mut kept = Vec::new();
    let mut refused_now = 0;
    for _ in 0..10 {
        let mut c = Connection::from_stream(connect_from("127.0.0.4", gw.addr));
        match c.send(gw.get("/public/x")) {
            Some(r) => {
                assert_eq!(r.status, 200);
                kept.push(c);
            }
            None => refused_now += 1,
        }
    }
    assert!((5..=7).contains(&kept.len()), "{} admitted of 10", kept.len());
    assert_eq!(up.hits(), kept.len(), "refused connections sent nothing upstream");
    let counted = gw.metric("portcullis_connections_refused_total{reason=\"new_per_ip\"}").unwrap();
    assert_eq!(counted, refused_now as f64, "each refusal is counted");
    // The rate is on new connections only: the admitted ones keep serving requests.
    for c in &mut kept {
        for _ in 0..3 {
            assert_eq!(c.send(gw.get("/public/x")).unwrap().status, 200);
        }
    }
    // Other addresses have their own budget.
    let mut other = Connection::from_stream(connect_from("127.0.0.5", gw.addr));
    assert_eq!(other.send(gw.get("/public/x")).unwrap().status, 200);
    // The bucket refills: the flooding address gets in again (one every 200 ms).
    assert!(common::eventually(Duration::from_secs(3), || {
        Connection::from_stream(connect_from("127.0.0.4", gw.addr)).send(gw.get("/public/x")).is_some_and(|r| r.status == 200)
    }));
}

#[test]
fn the_new_connection_rate_is_off_by_default() {
    let (gw, _up) = gateway(&[]);
    for _ in 0..50 {
        let mut c = Connection::from_stream(connect_from("127.0.0.6", gw.addr));
        assert_eq!(c.send(gw.get("/public/x")).unwrap().status, 200);
    }
    assert_eq!(gw.metric("portcullis_connections_refused_total{reason=\"new_per_ip\"}").unwrap_or(0.0), 0.0);
}
