//! LLM provider routing: key injection, failover, health, streaming, two instances.
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its reason

mod common;

use common::{redis_store, seed_config, seed_config_with_store, Behavior, MockUpstream, RedisServer, TestGateway};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEYS: [(&str, &str); 2] = [("P1_KEY", "sk-p1-secret-key"), ("P2_KEY", "sk-p2-secret-key")];

fn llm_section(p1: &str, p2: &str, p3: &str, extra: &str) -> String {
    llm_section_probing(p1, p2, p3, extra, "", 1)
}

fn llm_section_probing(p1: &str, p2: &str, p3: &str, extra: &str, p1_extra: &str, unhealthy_seconds: u64) -> String {
    format!(
        "  - {{ name: llm, path: \"/v1/**\", methods: [POST, GET], require_role: user, chain: llm }}
providers:
  p1: {{ url: \"{p1}\", api_key_env: P1_KEY, auth: bearer, read_timeout_ms: 800{p1_extra} }}
  p2: {{ url: \"{p2}\", api_key_env: P2_KEY, auth: {{ header: x-api-key }}, read_timeout_ms: 800 }}
  p3: {{ url: \"{p3}\", read_timeout_ms: 800 }}
provider_chains:
  llm: {{ primary: p1, fallbacks: [p2, p3]{extra} }}
health: {{ failure_threshold: 3, unhealthy_seconds: {unhealthy_seconds}, degraded_latency_ms: 2000 }}
"
    )
}

struct World {
    gw: TestGateway,
    p: [MockUpstream; 3],
    token: String,
}

fn world_with(chain_extra: &str) -> World {
    world_probing(chain_extra, "")
}

fn world_probing(chain_extra: &str, p1_extra: &str) -> World {
    let p = [MockUpstream::start().named("p1"), MockUpstream::start().named("p2"), MockUpstream::start().named("p3")];
    let app = MockUpstream::start();
    let config =
        format!("{}{}", seed_config(&app.url()), llm_section_probing(&p[0].url(), &p[1].url(), &p[2].url(), chain_extra, p1_extra, 1));
    let gw = TestGateway::start_with_env(&config, &KEYS);
    let token = gw.token("u1", "user");
    std::mem::forget(app);
    World { gw, p, token }
}

fn world() -> World {
    world_with("")
}

impl World {
    fn chat(&self) -> common::Reply {
        self.gw
            .request("POST", "/v1/chat/completions")
            .bearer(&self.token)
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    }

    /// Marks every provider healthy again (a clean slate between test phases).
    fn heal_all(&self) {
        let admin = self.gw.token("root", "admin");
        for name in ["p1", "p2", "p3"] {
            let r = self
                .gw
                .request("POST", &format!("/admin/providers/{name}/status"))
                .bearer(&admin)
                .json(&json!({"status": "healthy"}))
                .send();
            assert_eq!(r.status, 200);
        }
    }

    fn provider_of(r: &common::Reply) -> String {
        r.json()["provider"].as_str().unwrap_or_default().to_string()
    }
}

#[test]
fn the_providers_key_replaces_the_clients_credentials() {
    let w = world();
    let r =
        w.gw.request("POST", "/v1/chat/completions")
            .bearer(&w.token)
            .header("X-Api-Key", "client-own-key")
            .header("X-User-Id", "forged")
            .json(&json!({"x": 1}))
            .send();
    assert_eq!(r.status, 200);
    assert_eq!(World::provider_of(&r), "p1");
    let seen = w.p[0].last();
    assert_eq!(seen.all("authorization"), vec!["Bearer sk-p1-secret-key"]);
    assert!(seen.all("x-api-key").is_empty(), "the client's provider key is stripped");
    assert!(seen.all("x-user-id").is_empty(), "identity headers do not go to third-party providers");
    assert_eq!(seen.target, "/v1/chat/completions");
    assert_eq!(seen.body, br#"{"x":1}"#);
    // A header-auth provider gets its key in that header.
    w.p[0].set_behavior(Behavior::Status(500, None));
    let r = w.chat();
    assert_eq!(World::provider_of(&r), "p2");
    let seen = w.p[1].last();
    assert_eq!(seen.all("x-api-key"), vec!["sk-p2-secret-key"]);
    assert!(seen.all("authorization").is_empty());
    // Keys never reach the logs, metrics or the audit trail.
    let metrics = String::from_utf8_lossy(&w.gw.admin_get("/metrics").body).into_owned();
    for key in ["sk-p1-secret-key", "sk-p2-secret-key"] {
        assert!(!w.gw.log().contains(key) && !metrics.contains(key), "a provider key leaked");
    }
}

#[test]
fn failover_on_5xx_429_connect_errors_and_timeouts_without_client_errors() {
    let w = world();
    w.p[0].set_behavior(Behavior::Status(503, None));
    let r = w.chat();
    assert_eq!((r.status, World::provider_of(&r)), (200, "p2".into()));
    assert_eq!(w.gw.metric(r#"portcullis_failovers_total{chain="llm",from="p1",to="p2"}"#), Some(1.0));

    w.heal_all();
    w.p[1].set_behavior(Behavior::Hang);
    w.p[0].set_behavior(Behavior::Status(429, Some(30)));
    let r = w.chat();
    assert_eq!((r.status, World::provider_of(&r)), (200, "p3".into()), "p1 429, p2 timed out, p3 answered");
    // The 429's Retry-After keeps p1 out of rotation, even once the others are healthy again.
    let p1_hits = w.p[0].hits();
    w.p[1].set_behavior(Behavior::Ok);
    let admin = w.gw.token("root", "admin");
    w.gw.request("POST", "/admin/providers/p2/status").bearer(&admin).json(&json!({"status": "healthy"})).send();
    let r = w.chat();
    assert_eq!(World::provider_of(&r), "p2");
    assert_eq!(w.p[0].hits(), p1_hits, "p1 rests for its Retry-After");
}

#[test]
fn a_dead_provider_fails_over_and_when_all_fail_the_client_gets_502_naming_them() {
    let dead = common::free_port();
    let p2 = MockUpstream::start().named("p2");
    let p3 = MockUpstream::start().named("p3");
    let app = MockUpstream::start();
    let config = format!("{}{}", seed_config(&app.url()), llm_section(&format!("http://127.0.0.1:{dead}"), &p2.url(), &p3.url(), ""));
    let gw = TestGateway::start_with_env(&config, &KEYS);
    let token = gw.token("u", "user");
    let chat = || gw.request("POST", "/v1/chat/completions").bearer(&token).json(&json!({})).send();
    assert_eq!(World::provider_of(&chat()), "p2");
    p2.set_behavior(Behavior::Status(500, None));
    p3.set_behavior(Behavior::Status(502, None));
    let r = chat();
    assert_eq!((r.status, r.error_code().as_str()), (502, "all_providers_failed"));
    let message = r.json()["message"].as_str().unwrap().to_string();
    assert!(message.contains("p1") && message.contains("p2") && message.contains("p3"), "{message}");
}

#[test]
fn an_unhealthy_provider_is_skipped_until_its_period_ends_then_one_success_heals_it() {
    let w = world();
    for p in &w.p {
        p.set_behavior(Behavior::Status(500, None));
    }
    // After one failure a provider is degraded and healthy ones go first; with every provider
    // failing, each request tries all three, so the failures add up to the threshold (3).
    for _ in 0..3 {
        let r = w.chat();
        assert_eq!((r.status, r.error_code().as_str()), (502, "all_providers_failed"));
    }
    w.p[1].set_behavior(Behavior::Ok);
    w.p[2].set_behavior(Behavior::Ok);
    let admin = w.gw.token("root", "admin");
    for name in ["p2", "p3"] {
        w.gw.request("POST", &format!("/admin/providers/{name}/status")).bearer(&admin).json(&json!({"status": "healthy"})).send();
    }
    let view = w.gw.get("/admin/providers").bearer(&admin).send().json();
    let p1 = view["providers"].as_array().unwrap().iter().find(|p| p["name"] == "p1").unwrap().clone();
    assert_eq!(
        (p1["status"].as_str(), p1["consecutive_failures"].as_u64(), p1["available"].as_bool()),
        (Some("unhealthy"), Some(3), Some(false))
    );
    assert_eq!(view["chains"][0]["current_order"], json!(["p2", "p3"]));
    assert_eq!(w.gw.metric(r#"portcullis_provider_health{provider="p1",status="unhealthy"}"#), Some(1.0));
    assert_eq!(w.gw.metric(r#"portcullis_provider_consecutive_failures{provider="p1"}"#), Some(3.0));
    // Skipped while unhealthy, even when the others fail.
    let hits = w.p[0].hits();
    w.p[1].set_behavior(Behavior::Status(500, None));
    w.p[2].set_behavior(Behavior::Status(500, None));
    assert_eq!(w.chat().status, 502);
    assert_eq!(w.p[0].hits(), hits, "skipped while unhealthy");
    // unhealthy_seconds is 1 here: then p1 is tried again (half-open) and one success heals it.
    w.p[0].set_behavior(Behavior::Ok);
    assert_eventually!(World::provider_of(&w.chat()) == "p1", "p1 is tried again once its unhealthy second is over");
    assert_eq!(w.gw.metric(r#"portcullis_provider_health{provider="p1",status="healthy"}"#), Some(1.0));
}

#[test]
fn server_sent_events_stream_through_as_they_come() {
    let w = world();
    w.p[0].set_behavior(Behavior::Sse(4, 300));
    let mut stream = std::net::TcpStream::connect(w.gw.addr).unwrap();
    use std::io::{Read, Write};
    let body = r#"{"stream":true}"#;
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        w.token,
        body.len()
    );
    let start = Instant::now();
    stream.write_all(req.as_bytes()).unwrap();
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    let first_event_at = loop {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended early");
        got.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&got).contains("event 0") {
            break start.elapsed();
        }
    };
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    let total = start.elapsed();
    got.extend_from_slice(&rest);
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("text/event-stream") && text.contains("[DONE]"), "{text}");
    assert!(first_event_at < Duration::from_millis(600), "first event after {first_event_at:?}");
    assert!(total >= Duration::from_millis(900), "the provider took {total:?} to finish, so the first event was not held back");
}

#[test]
fn a_provider_breaking_mid_stream_ends_the_clients_stream_abruptly() {
    let w = world();
    w.p[0].set_behavior(Behavior::DieMidStream);
    let raw = common::client::send_raw_bytes(w.gw.addr, &w.gw.request("POST", "/v1/chat").bearer(&w.token).json(&json!({})).to_bytes());
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("partial"));
    assert!(!text.ends_with("0\r\n\r\n"), "no clean end of a chunked body: {text:?}");
    assert_eventually!(
        w.gw.metric(r#"portcullis_provider_consecutive_failures{provider="p1"}"#) == Some(1.0),
        "the break is recorded as a failure"
    );
}

#[test]
fn large_bodies_are_resent_whole_and_oversized_ones_are_not_retried() {
    let w = world_with(", max_retry_body_bytes: 300000");
    w.p[0].set_behavior(Behavior::Status(500, None));
    let big = "x".repeat(200 * 1024); // over Pingora's 64 KiB replay buffer
    let r = w.gw.request("POST", "/v1/chat").bearer(&w.token).header("Content-Type", "text/plain").body(big.clone()).send();
    assert_eq!(World::provider_of(&r), "p2");
    assert_eq!(w.p[1].last().body.len(), big.len(), "p2 received the whole body");
    let huge = "y".repeat(400 * 1024);
    w.heal_all(); // p1 first again
    let p2_hits = w.p[1].hits();
    let r = w.gw.request("POST", "/v1/chat").bearer(&w.token).header("Content-Type", "text/plain").body(huge.clone()).send();
    assert_eq!((r.status, r.error_code().as_str()), (502, "all_providers_failed"), "too large to buffer: one provider only");
    assert!(r.json()["message"].as_str().unwrap().ends_with("p1"));
    assert_eq!(w.p[0].last().body.len(), huge.len());
    assert_eq!(w.p[1].hits(), p2_hits, "not retried");
}

#[test]
fn manual_overrides_and_panic_mode() {
    let w = world();
    let admin = w.gw.token("root", "admin");
    let set = |name: &str, status: &str| {
        w.gw.request("POST", &format!("/admin/providers/{name}/status"))
            .bearer(&admin)
            .json(&json!({"status": status, "reason": "maintenance", "duration_seconds": 60}))
            .send()
    };
    assert_eq!(set("p1", "unhealthy").status, 200);
    assert_eq!(World::provider_of(&w.chat()), "p2");
    assert_eq!(w.gw.request("POST", "/admin/providers/p1/status").bearer(&w.token).json(&json!({"status": "healthy"})).send().status, 403);
    assert_eq!(set("nope", "healthy").status, 404);
    set("p2", "unhealthy");
    set("p3", "unhealthy");
    // Every provider unhealthy: try them anyway, in chain order.
    assert_eq!(World::provider_of(&w.chat()), "p1");
    assert_eq!(set("p1", "healthy").status, 200);
}

#[test]
fn killing_the_primary_under_load_costs_no_client_error_and_it_recovers() {
    // p1 is also probed every second, so a dead p1 keeps failing and crosses the threshold.
    let mut w = world_probing("", ", health_check: { path: /v1/models, interval_seconds: 1, timeout_ms: 300 }");
    let gw = Arc::new(std::mem::replace(&mut w.gw, TestGateway::start(&seed_config("http://127.0.0.1:9"))));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (gw, token, ok, failed, stop) = (gw.clone(), w.token.clone(), ok.clone(), failed.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let r = gw.request("POST", "/v1/chat").bearer(&token).json(&json!({})).send();
                    if r.status == 200 {
                        ok.fetch_add(1, Ordering::Relaxed)
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed)
                    };
                }
            })
        })
        .collect();
    assert_eventually!(ok.load(Ordering::Relaxed) > 0, "load is running");
    let p1_port = w.p[0].port;
    let killed = std::mem::replace(&mut w.p[0], MockUpstream::start());
    drop(killed);
    assert_eventually!(gw.metric(r#"portcullis_provider_health{provider="p1",status="unhealthy"}"#) == Some(1.0), "p1 becomes unhealthy");
    let p2_before = w.p[1].hits();
    assert_eventually!(w.p[1].hits() > p2_before, "traffic shifted to p2");
    // Bring p1 back on its address; after the unhealthy period the next probe heals it.
    let back = MockUpstream::start_on(p1_port).named("p1");
    assert_eventually!(gw.metric(r#"portcullis_provider_health{provider="p1",status="healthy"}"#) == Some(1.0), "p1 is healthy again");
    stop.store(true, Ordering::Relaxed);
    for t in workers {
        t.join().unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("kill test: {ok} requests answered, {failed} client-visible errors");
    assert_eq!(failed, 0, "no client saw an error");
    assert!(back.hits() > 0);
}

#[test]
fn two_instances_learn_of_each_others_failures_within_a_second() {
    let redis = RedisServer::start();
    let p = [MockUpstream::start().named("p1"), MockUpstream::start().named("p2"), MockUpstream::start().named("p3")];
    let app = MockUpstream::start();
    let config = format!(
        "{}{}",
        seed_config_with_store(&app.url(), &redis_store(&redis.url())),
        llm_section_probing(&p[0].url(), &p[1].url(), &p[2].url(), "", "", 60)
    );
    let a = TestGateway::start_with_env(&config, &KEYS);
    let b = TestGateway::start_with_env(&config, &KEYS);
    let token = a.token("u", "user");
    p[0].set_behavior(Behavior::Status(500, None));
    assert_eq!(World::provider_of(&a.request("POST", "/v1/chat").bearer(&token).json(&json!({})).send()), "p2");
    let seen_by_a = Instant::now();
    let p1_hits = p[0].hits();
    assert_eventually!(b.metric(r#"portcullis_provider_health{provider="p1",status="degraded"}"#) == Some(1.0), "B learns of p1's failure");
    let delay = seen_by_a.elapsed();
    println!("B learned of A's failures after {delay:?}");
    assert!(delay < Duration::from_secs(1), "{delay:?}");
    let r = b.request("POST", "/v1/chat").bearer(&token).json(&json!({})).send();
    assert_eq!(World::provider_of(&r), "p2");
    assert_eq!(p[0].hits(), p1_hits, "B routes around p1 without trying it");
}

#[test]
fn active_probes_run_once_per_interval_across_instances_and_mark_failures() {
    let redis = RedisServer::start();
    let p1 = MockUpstream::start().named("p1");
    let app = MockUpstream::start();
    let section = format!(
        "  - {{ name: llm, path: \"/v1/**\", require_role: user, chain: llm }}
providers:
  p1: {{ url: \"{}\", health_check: {{ path: /v1/models, interval_seconds: 1, timeout_ms: 500 }} }}
provider_chains:
  llm: {{ primary: p1 }}
health: {{ failure_threshold: 2, unhealthy_seconds: 60 }}
",
        p1.url()
    );
    let config = format!("{}{}", seed_config_with_store(&app.url(), &redis_store(&redis.url())), section);
    let a = TestGateway::start(&config);
    let _b = TestGateway::start(&config);
    let probes = || p1.hits_on("/v1/models");
    assert_eventually!(probes() >= 1, "probes run");
    let first = Instant::now();
    assert_eventually!(probes() >= 5, "probes go on");
    // One probe per interval across both instances: four more take about 4 s (one each would
    // take about 2 s).
    let span = first.elapsed().as_secs_f64();
    assert!(span >= 2.5, "one probe per interval across both instances, not one each: 4 probes in {span:.1} s");
    assert!(p1.seen().iter().all(|s| s.method == "GET"), "probes are cheap GETs, never completions");
    p1.set_path_behavior("/v1/models", Behavior::Status(500, None));
    assert_eventually!(
        a.metric(r#"portcullis_provider_health{provider="p1",status="unhealthy"}"#) == Some(1.0),
        "failed probes make it unhealthy"
    );
}

#[test]
fn a_missing_provider_key_is_a_config_error_unless_the_provider_needs_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.yaml");
    std::fs::write(&path, "providers:\n  openai: { url: \"http://127.0.0.1:1\", api_key_env: OPENAI_TEST_KEY, auth: bearer }\n  local: { url: \"http://127.0.0.1:2\" }\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "-c"])
        .arg(&path)
        .env("JWT_SECRET_KEY", common::TEST_SECRET)
        .env_remove("OPENAI_TEST_KEY")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2));
    assert!(text.contains("providers.openai.api_key_env: environment variable `OPENAI_TEST_KEY` is not set"), "{text}");
    assert!(!text.contains("local"), "{text}");
}

/// Found by an acceptance run: with failures and no active probe, a degraded primary was never
/// tried again. Now it is tried in its configured place after `health.degraded_seconds`.
#[test]
fn a_primary_degraded_by_a_blip_is_tried_first_again_after_degraded_seconds() {
    let p = [MockUpstream::start().named("p1"), MockUpstream::start().named("p2"), MockUpstream::start().named("p3")];
    let app = MockUpstream::start();
    let config = format!("{}{}", seed_config(&app.url()), llm_section(&p[0].url(), &p[1].url(), &p[2].url(), ""))
        .replace("degraded_latency_ms: 2000 }", "degraded_latency_ms: 2000, degraded_seconds: 1 }");
    let gw = TestGateway::start_with_env(&config, &KEYS);
    let token = gw.token("u1", "user");
    let chat = || {
        let r = gw.request("POST", "/v1/chat/completions").bearer(&token).json(&json!({"model": "m", "messages": []})).send();
        assert_eq!(r.status, 200);
        World::provider_of(&r)
    };
    assert_eq!(chat(), "p1");
    p[0].set_behavior(Behavior::Status(500, None));
    assert_eq!(chat(), "p2", "a blip: failed over");
    p[0].set_behavior(Behavior::Ok);
    assert_eq!(chat(), "p2", "the degraded primary goes after the healthy fallback");
    let blip_hits = p[0].hits();
    let started = Instant::now();
    assert_eventually!(chat() == "p1", "the primary is tried first again");
    assert!(started.elapsed() >= Duration::from_millis(500), "not before degraded_seconds");
    assert_eq!(p[0].hits(), blip_hits + 1, "tried once, and it answered");
    let admin = gw.token("root", "admin");
    let listed = gw.get("/admin/providers").bearer(&admin).send().json();
    let p1 = listed["providers"].as_array().unwrap().iter().find(|x| x["name"] == "p1").unwrap().clone();
    assert_eq!(p1["status"], "healthy", "{p1}");
    drop(app);
}

/// `first_byte_timeout_ms` bounds the wait for a provider's response header (then the chain
/// fails over) apart from `read_timeout_ms`; `stream_idle_timeout_ms` bounds the gap between
/// stream chunks (then the client's stream ends and the provider is recorded as failed).
#[test]
fn first_byte_and_stream_idle_timeouts_are_the_providers_own() {
    let w = world_probing("", ", first_byte_timeout_ms: 150, stream_idle_timeout_ms: 150");
    w.p[0].set_behavior(Behavior::Hang);
    let started = Instant::now();
    assert_eq!(World::provider_of(&w.chat()), "p2");
    // read_timeout_ms is 800 for every provider here: failing over well before it shows the
    // first-byte bound in effect (generous margin: a functional check, not a speed target).
    assert!(started.elapsed() < Duration::from_millis(700), "{:?}", started.elapsed());
    w.heal_all();
    w.p[0].set_behavior(Behavior::Sse(4, 400));
    let raw = common::client::send_raw_bytes(
        w.gw.addr,
        &w.gw.request("POST", "/v1/chat").bearer(&w.token).json(&json!({"stream": true})).to_bytes(),
    );
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200") && text.contains("event 0"), "{text}");
    assert!(!text.contains("event 3"), "the stream was ended at the first long gap: {text}");
    let admin = w.gw.token("root", "admin");
    assert_eventually!(
        w.gw.get("/admin/providers").bearer(&admin).send().json()["providers"][0]["reason"] == "stream idle timeout",
        "recorded as a failure of p1"
    );
}

/// Public model names mapped per provider, model permissions, and `/v1/models` from the gateway.
#[test]
fn public_models_are_mapped_per_provider_and_authorized_by_role() {
    let p = [MockUpstream::start().named("p1"), MockUpstream::start().named("p2")];
    let app = MockUpstream::start();
    let config = common::config::Config::seed(&app.url())
        .add_route("{ name: llm, path: \"/v1/**\", methods: [POST, GET], require_role: viewer, chain: llm }")
        .set(
            "providers",
            &format!(
                "{{ p1: {{ url: \"{}\", models: {{ smart: gpt-4o, fast: gpt-4o-mini }} }}, p2: {{ url: \"{}\", models: {{ smart: claude-sonnet-4-5 }} }} }}",
                p[0].url(),
                p[1].url()
            ),
        )
        .set("provider_chains", "{ llm: { primary: p1, fallbacks: [p2] } }")
        .set("permissions.models", "{ admin: [\"*\"], user: [smart, fast], viewer: [fast], guest: [] }");
    let gw = TestGateway::start(&config.yaml());
    let (user, viewer, admin) = (gw.token("u", "user"), gw.token("v", "viewer"), gw.token("a", "admin"));
    let chat = |token: &str, model: &str| {
        gw.request("POST", "/v1/chat/completions")
            .bearer(token)
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    let model_seen =
        |u: &MockUpstream| serde_json::from_slice::<serde_json::Value>(&u.last().body).unwrap()["model"].as_str().unwrap().to_string();
    assert_eq!(chat(&user, "smart").status, 200);
    assert_eq!(model_seen(&p[0]), "gpt-4o");
    p[0].set_behavior(Behavior::Status(500, None));
    let r = chat(&user, "smart");
    assert_eq!((r.status, World::provider_of(&r).as_str()), (200, "p2"));
    assert_eq!(model_seen(&p[1]), "claude-sonnet-4-5", "each provider receives its own name");
    let p2_hits = p[1].hits();
    let r = chat(&user, "fast");
    assert_eq!(r.status, 502, "p2 does not offer `fast`: skipped, so only p1 was tried");
    assert_eq!(p[1].hits(), p2_hits);
    p[0].set_behavior(Behavior::Ok);
    assert_eq!(chat(&viewer, "fast").status, 200);
    assert_eq!(model_seen(&p[0]), "gpt-4o-mini");
    let r = chat(&viewer, "smart");
    assert_eq!((r.status, r.error_code().as_str()), (403, "model_not_allowed"));
    let r = chat(&user, "gpt-5");
    assert_eq!((r.status, r.error_code().as_str()), (400, "unknown_model"));
    assert!(r.json()["message"].as_str().unwrap().ends_with("you may use: fast, smart"), "{}", r.json());
    assert_eq!(chat(&admin, "gpt-5").status, 400, "the wildcard allows every model, but nobody offers this one");
    let ids = |token: &str| {
        let v = gw.get("/v1/models").bearer(token).send().json();
        assert_eq!(v["object"], "list");
        v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(ids(&viewer), ["fast"]);
    assert_eq!(ids(&admin), ["fast", "smart"]);
    assert_eventually!(
        gw.metric(r#"portcullis_authz_denied_total{route="llm"}"#) == Some(1.0),
        "the model denial is counted like any denial"
    );
    drop(app);
}

/// The three-provider chain with an audit file and one more setting (`key` = `value`).
fn streaming_world(key: &str, value: &str) -> (TestGateway, [MockUpstream; 3], MockUpstream) {
    let p = [MockUpstream::start().named("p1"), MockUpstream::start().named("p2"), MockUpstream::start().named("p3")];
    let app = MockUpstream::start();
    let config = common::config::Config::from_yaml(&format!(
        "{}{}",
        seed_config(&app.url()),
        llm_section(&p[0].url(), &p[1].url(), &p[2].url(), "")
    ))
    .set("audit", "{ sink: file, file: audit.log }")
    .set(key, value)
    .yaml();
    (TestGateway::start_with_env(&config, &KEYS), p, app)
}

/// A stream whose session is revoked ends within a second, and the audit log says why.
#[test]
fn a_stream_ends_when_its_session_is_revoked() {
    let (gw, p, app) = streaming_world("providers.p1.stream_idle_timeout_ms", "5000");
    gw.create_user("streamer@example.com", "demo-password-123", "user");
    let login = gw.request("POST", "/auth/login").json(&json!({"email": "streamer@example.com", "password": "demo-password-123"})).send();
    let access = login.json()["access_token"].as_str().unwrap().to_string();
    p[0].set_behavior(Behavior::Sse(20, 300)); // six seconds of events
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(gw.addr).unwrap();
    let body = r#"{"stream":true}"#;
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {access}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("event 1") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended early");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(gw.request("POST", "/auth/logout").bearer(&access).send().status, 200);
    let revoked_at = Instant::now();
    let _ = stream.read_to_end(&mut got);
    let took = revoked_at.elapsed();
    let text = String::from_utf8_lossy(&got);
    println!("stream ended {took:?} after the logout");
    assert!(took < Duration::from_millis(1500), "the stream went on {took:?} after the logout");
    assert!(!text.contains("event 19"), "the stream did not run to its end");
    assert_eventually!(
        gw.audit_events().iter().any(|e| e["event"] == "llm.stream_ended" && e["details"]["reason"] == "session_revoked"),
        "the audit log says why"
    );
    drop(app);
}

/// With `sessions.end_streams_at_expiry`, a stream ends when the token it started with expires.
#[test]
fn a_stream_ends_when_its_token_expires_if_asked() {
    let (gw, p, app) = streaming_world("sessions.end_streams_at_expiry", "true");
    let spec = portcullis::auth::TokenSpec {
        user_id: "u1",
        role: Some("user"),
        kind: portcullis::auth::TokenKind::Access,
        session_id: "s-short",
        ttl: Some(Duration::from_secs(2)),
        jti: None,
    };
    let short = gw.tokens().create_token(&spec).unwrap();
    p[0].set_behavior(Behavior::Sse(20, 300)); // six seconds of events
    let started = Instant::now();
    let raw =
        common::client::send_raw_bytes(gw.addr, &gw.request("POST", "/v1/chat").bearer(&short).json(&json!({"stream": true})).to_bytes());
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200") && text.contains("event 0"), "{text}");
    assert!(!text.contains("event 19"), "the stream was ended at the token's expiry");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eventually!(
        gw.audit_events().iter().any(|e| e["event"] == "llm.stream_ended" && e["details"]["reason"] == "token_expired"),
        "the audit log says why"
    );
    drop(app);
}

/// Half-open as circuit breakers mean it: when a primary's unhealthy period ends it is tried
/// again in its configured place, by `half_open_trials` requests shared by every instance (the
/// others go to the fallback while the trial is out); a failed trial makes it unhealthy for a
/// period `unhealthy_backoff` times longer, a successful one makes it healthy.
#[test]
fn a_half_open_primary_gets_one_trial_across_instances_in_its_place_and_backs_off_when_it_fails() {
    let redis = RedisServer::start();
    let p = [MockUpstream::start().named("p1"), MockUpstream::start().named("p2"), MockUpstream::start().named("p3")];
    let app = MockUpstream::start();
    let config = format!(
        "{}{}",
        seed_config_with_store(&app.url(), &redis_store(&redis.url())),
        llm_section_probing(&p[0].url(), &p[1].url(), &p[2].url(), "", "", 2)
    )
    .replace(
        "failure_threshold: 3, unhealthy_seconds: 2, degraded_latency_ms: 2000 }",
        "failure_threshold: 1, unhealthy_seconds: 2, degraded_latency_ms: 2000, degraded_seconds: 600, half_open_trials: 1, unhealthy_backoff: 2, max_unhealthy_seconds: 60 }",
    );
    assert!(config.contains("half_open_trials: 1"));
    let (a, b) = (TestGateway::start_with_env(&config, &KEYS), TestGateway::start_with_env(&config, &KEYS));
    let token = a.token("u1", "user");
    let admin = a.token("root", "admin");
    let chat = |gw: &TestGateway| {
        let r = gw.request("POST", "/v1/chat/completions").bearer(&token).json(&json!({"model": "m", "messages": []})).send();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        World::provider_of(&r)
    };
    let p1_of = |gw: &TestGateway| {
        let v = gw.get("/admin/providers").bearer(&admin).send().json();
        v["providers"].as_array().unwrap().iter().find(|x| x["name"] == "p1").unwrap().clone()
    };
    let ejected = || {
        // The primary fails once (threshold 1): unhealthy, and both instances know it.
        p[0].set_behavior(Behavior::Status(500, None));
        assert_eq!(chat(&a), "p2", "failed over");
        for gw in [&a, &b] {
            assert_eventually!(p1_of(gw)["status"] == "unhealthy", "every instance knows p1 is out");
        }
        assert_eq!(chat(&b), "p2", "skipped while its period lasts");
    };
    ejected();

    // The period ends: one trial, whichever instance sends it; while it is out (p1 answers
    // slowly), every other request goes to the fallback.
    p[0].set_behavior(Behavior::Ok);
    p[0].set_delay(Duration::from_millis(600));
    for gw in [&a, &b] {
        assert!(common::eventually(Duration::from_secs(10), || p1_of(gw)["half_open"] == true), "half-open once the period ends");
    }
    let hits = p[0].hits();
    let served: Vec<String> = std::thread::scope(|s| {
        let (a, b, chat) = (&a, &b, &chat);
        let runs: Vec<_> = (0..6).map(|i| s.spawn(move || chat(if i % 2 == 0 { a } else { b }))).collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(served.iter().filter(|p| *p == "p1").count(), 1, "exactly one trial across both instances: {served:?}");
    assert_eq!(p[0].hits(), hits + 1);
    assert!(served.iter().all(|p| p == "p1" || p == "p2"), "the others went to the fallback: {served:?}");
    // The trial answered: healthy, first again, on both instances.
    p[0].set_delay(Duration::ZERO);
    for gw in [&a, &b] {
        assert_eventually!(p1_of(gw)["status"] == "healthy", "the trial healed p1 everywhere");
        assert_eq!(chat(gw), "p1");
    }

    // Out again (a first period of 2 s), and this time the trial fails: the next period is
    // twice as long (4 s), and the fallback serves meanwhile.
    ejected();
    assert!(common::eventually(Duration::from_secs(10), || p1_of(&a)["half_open"] == true));
    assert_eq!(chat(&a), "p2", "the trial failed and the fallback answered the same request");
    let p1 = p1_of(&a);
    assert_eq!(
        (p1["status"].as_str(), p1["unhealthy_periods"].as_u64(), p1["half_open"].as_bool()),
        (Some("unhealthy"), Some(2), Some(false))
    );
    let until = p1["unavailable_until"].as_str().unwrap().to_string();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let until_s = rfc3339_seconds(&until);
    assert!((now + 3..=now + 5).contains(&until_s), "a 4 s period after a failed trial: until {until}, now {now}");
    drop(app);
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339_seconds(t: &str) -> u64 {
    let n = |r: std::ops::Range<usize>| t[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)) as u64
}
