//! Load for `bench/flood.sh` (loopback only): a well-behaved client at a fixed rate whose
//! latency is measured, slow-loris connections, and a flood of new connections.
//!
//!   flood victim   ADDR RATE SECONDS          -> prints "p50_us p99_us sent failed"
//!   flood slowloris ADDR COUNT SECONDS SOURCES -> holds COUNT connections from 127.0.1.1.. SOURCES
//!   flood connect  ADDR RATE SECONDS SOURCE    -> opens and closes RATE connections/s from SOURCE
//!
//! The victim is open-loop: request i is due at i/RATE seconds, over 16 kept-alive connections;
//! its latency counts from its write, or from when it was due if it went out more than 2 ms late
//! (a connection still busy: no coordinated omission; the 2 ms is tokio's timer slack).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark tool: a panic is its error report

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

async fn connect_from(source: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.set_reuseaddr(true)?;
    s.bind(format!("{source}:0").parse().unwrap())?;
    s.connect(to).await
}

/// Reads one response with a content-length body; false if the connection ended.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return head.starts_with("http/1.1 200");
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn victim(addr: SocketAddr, rate: u64, seconds: u64) {
    const CONNS: u64 = 16;
    let start = Instant::now() + Duration::from_millis(100);
    let total = rate * seconds;
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..CONNS {
        let failed = failed.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut buf = Vec::new();
            let req = format!("GET /public/x HTTP/1.1\r\nHost: {addr}\r\n\r\n");
            let mut i = c;
            while i < total {
                let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
                tokio::time::sleep_until(due).await;
                let sent = Instant::now();
                let ok = s.write_all(req.as_bytes()).await.is_ok() && read_response(&mut s, &mut buf).await;
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                    s = TcpStream::connect(addr).await.unwrap();
                } else {
                    // From the write: the timer's own millisecond granularity is not the server's.
                    // A connection still busy at its next due time shows up as a late write, which
                    // is counted too (from due) when it exceeds the timer's slack.
                    let late = sent.duration_since(due);
                    let from = if late > Duration::from_millis(2) { due } else { sent };
                    lat.push(from.elapsed().as_micros() as u64);
                }
                i += CONNS;
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    let pct = |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or(0);
    println!("{} {} {} {}", pct(0.50), pct(0.99), all.len(), failed.load(Ordering::Relaxed));
}

async fn slowloris(addr: SocketAddr, count: u64, seconds: u64, sources: u64) {
    let end = Instant::now() + Duration::from_secs(seconds);
    let opened = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..count {
        let source = format!("127.0.1.{}", 1 + i % sources.max(1));
        let opened = opened.clone();
        tasks.push(tokio::spawn(async move {
            // Spread the opening over the first second.
            tokio::time::sleep(Duration::from_micros(i * 1_000_000 / count.max(1))).await;
            while Instant::now() < end {
                let Ok(mut s) = connect_from(&source, addr).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                opened.fetch_add(1, Ordering::Relaxed);
                if s.write_all(b"GET /public/x HTTP/1.1\r\nHost: x\r\n").await.is_err() {
                    continue;
                }
                // A byte every two seconds until the gateway closes the connection.
                while Instant::now() < end {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    if s.write_all(b"X").await.is_err() {
                        break;
                    }
                    let mut b = [0u8; 256];
                    if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut b)).await {
                        break; // answered (408) or closed
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    eprintln!("slowloris: {} connections opened", opened.load(Ordering::Relaxed));
}

async fn connect_flood(addr: SocketAddr, rate: u64, seconds: u64, source: String) {
    let start = Instant::now();
    let total = rate * seconds;
    let done = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    // Batches every 10 ms.
    let per_tick = (rate / 100).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut sent = 0;
    while sent < total && start.elapsed() < Duration::from_secs(seconds + 2) {
        tick.tick().await;
        for _ in 0..per_tick {
            let (source, done, refused) = (source.clone(), done.clone(), refused.clone());
            tokio::spawn(async move {
                match connect_from(&source, addr).await {
                    // Closed with a reset (linger 0): no TIME_WAIT left on this side, so the
                    // flood does not run out of ports from one address.
                    Ok(s) => {
                        let _ = s.set_zero_linger();
                        drop(s)
                    }
                    Err(_) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            });
        }
        sent += per_tick;
    }
    eprintln!(
        "connect flood: {} opened in {:?} ({} failed to connect)",
        done.load(Ordering::Relaxed),
        start.elapsed(),
        refused.load(Ordering::Relaxed)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = |i: usize| args.get(i).and_then(|v| v.parse::<u64>().ok()).expect("a number");
    let addr: SocketAddr = args.get(2).and_then(|a| a.parse().ok()).expect("usage: flood victim|slowloris|connect ADDR ...");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    match args[1].as_str() {
        "victim" => rt.block_on(victim(addr, n(3), n(4))),
        "slowloris" => rt.block_on(slowloris(addr, n(3), n(4), n(5))),
        "connect" => rt.block_on(connect_flood(addr, n(3), n(4), args.get(5).cloned().unwrap_or_else(|| "127.0.0.9".into()))),
        other => panic!("unknown mode {other}"),
    }
}
