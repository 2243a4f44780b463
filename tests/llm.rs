//! LLM calls that real clients can live on: the official OpenAI Python SDK against chains of the
//! repo's mock provider in OpenAI and Anthropic modes (translation both ways, a failover midway,
//! tool calls), Anthropic clients passed through, usage and token budgets shared by instances.
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its reason

mod common;

use common::llm::{MockLlm, Mode, WORDS};
use common::{redis_store, seed_config, seed_config_with_store, MockUpstream, RedisServer, TestGateway};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

const KEYS: [(&str, &str); 2] = [("OA_KEY", "sk-oa-secret-key"), ("AN_KEY", "sk-ant-secret-key")];

/// The chain of docs/llm.md: an OpenAI-compatible provider, then an Anthropic one, models mapped.
fn llm_config(base: String, primary: &str, fallback: &str, oa: &MockLlm, an: &MockLlm, extra: &str) -> String {
    format!(
        "{base}  - {{ name: llm, path: \"/v1/**\", methods: [POST, GET], require_role: viewer, chain: llm }}
providers:
  oa: {{ url: \"{}\", api: openai, api_key_env: OA_KEY, models: {{ smart: gpt-4o, fast: gpt-4o-mini }} }}
  an: {{ url: \"{}\", api: anthropic, api_key_env: AN_KEY, models: {{ smart: claude-sonnet-4-5, fast: claude-haiku-4-5 }} }}
provider_chains:
  llm: {{ primary: {primary}, fallbacks: [{fallback}] }}
audit: {{ sink: file, file: audit.log }}
{extra}",
        oa.url(),
        an.url()
    )
}

/// The OpenAI SDK, one call per command.
struct Sdk {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Sdk {
    fn start(gw: &TestGateway, token: &str) -> Sdk {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/openai_client.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(format!("http://{}/v1", gw.addr))
            .arg(token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 with the openai package (scripts/ensure-deps installs it)");
        let out = BufReader::new(child.stdout.take().unwrap());
        Sdk { child, out }
    }

    fn call(&mut self, model: &str, stream: bool, extra: Value) -> Value {
        let cmd = json!({"model": model, "stream": stream, "extra": extra,
                         "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]});
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{cmd}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("the SDK script printed {line:?}"))
    }
}

impl Drop for Sdk {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn weather_tool() -> Value {
    json!({"tools": [{"type": "function", "function": {"name": "weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]})
}

/// The acceptance run: the official SDK, streaming and not, across an OpenAI-compatible
/// provider and an Anthropic one, with the primary failing midway.
#[test]
fn the_openai_sdk_works_across_openai_and_anthropic_providers_with_a_failover_midway() {
    let (oa, an) = (MockLlm::start(Mode::OpenAi), MockLlm::start(Mode::Anthropic));
    let app = MockUpstream::start();
    let extra = "llm_limits: { default: { tokens_per_minute: 100000, tokens_per_day: 1000000 } }
models_pricing: { smart: { prompt_per_million: 2.5, completion_per_million: 10 } }
";
    let config = common::config::Config::from_yaml(&llm_config(seed_config(&app.url()), "oa", "an", &oa, &an, extra))
        .set("permissions.models", "{ admin: [\"*\"], user: [smart, fast], viewer: [fast], guest: [] }")
        .yaml();
    let gw = TestGateway::start_with_env(&config, &KEYS);
    let token = gw.token("sdk-user", "user");
    let mut sdk = Sdk::start(&gw, &token);
    let hello = WORDS.concat();

    // The primary answers: plain and streamed, the usage chunk only when asked for.
    let r = sdk.call("smart", false, json!({}));
    assert_eq!((r["content"].as_str(), r["finish_reason"].as_str()), (Some(hello.as_str()), Some("stop")), "{r}");
    assert!(r["usage"]["completion_tokens"].as_u64() == Some(5), "{r}");
    let r = sdk.call("smart", true, json!({}));
    assert_eq!((r["content"].as_str(), r["usage"].is_null()), (Some(hello.as_str()), true), "no usage chunk unless asked: {r}");
    let r = sdk.call("fast", true, json!({"stream_options": {"include_usage": true}}));
    assert_eq!(r["usage"]["completion_tokens"], 5, "{r}");
    assert_eq!(oa.seen().iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>(), ["gpt-4o", "gpt-4o", "gpt-4o-mini"]);
    assert!(an.seen().is_empty());

    // The primary breaks: every call fails over to the Anthropic provider, translated.
    oa.fail_with(503);
    let r = sdk.call("smart", false, json!({}));
    assert_eq!(
        (r["content"].as_str(), r["finish_reason"].as_str(), r["model"].as_str()),
        (Some(hello.as_str()), Some("stop"), Some("smart")),
        "{r}"
    );
    assert_eq!(r["usage"]["completion_tokens"], 5, "{r}");
    let r = sdk.call("smart", true, json!({}));
    assert_eq!(
        (r["content"].as_str(), r["finish_reason"].as_str(), r["usage"].is_null()),
        (Some(hello.as_str()), Some("stop"), true),
        "{r}"
    );
    let r = sdk.call("fast", true, json!({"stream_options": {"include_usage": true}, "max_tokens": 64}));
    assert_eq!((r["usage"]["completion_tokens"].as_u64(), r["content"].as_str()), (Some(5), Some(hello.as_str())), "{r}");
    // Tool calls, both ways.
    for stream in [false, true] {
        let r = sdk.call("smart", stream, weather_tool());
        assert_eq!(r["finish_reason"], "tool_calls", "{r}");
        assert_eq!(r["tool_calls"][0]["name"], "weather", "{r}");
        let args: Value = serde_json::from_str(r["tool_calls"][0]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"city": "Oslo"}));
    }
    let an_seen = an.seen();
    assert_eq!(an_seen.len(), 5);
    assert!(an_seen.iter().all(|(path, _)| path == "/v1/messages"), "{an_seen:?}");
    assert_eq!(
        an_seen.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>(),
        ["claude-sonnet-4-5", "claude-sonnet-4-5", "claude-haiku-4-5", "claude-sonnet-4-5", "claude-sonnet-4-5"]
    );

    // An Anthropic error that is not failed over reaches the SDK in OpenAI's shape, same status.
    an.fail_with(529);
    let r = sdk.call("smart", false, json!({}));
    assert_eq!(r["status"], 529, "{r}");
    assert!(r["message"].as_str().unwrap().contains("Overloaded"), "{r}");
    an.fail_with(0);
    // A model the role may not use, and one nobody offers, never reach a provider.
    let viewer = gw.token("v", "viewer");
    let mut viewer_sdk = Sdk::start(&gw, &viewer);
    assert_eq!(viewer_sdk.call("smart", false, json!({}))["status"], 403);
    assert_eq!(sdk.call("gpt-5", false, json!({}))["status"], 400);
    assert_eq!(an.seen().len(), 6);

    // Usage per user and model, metrics, the audit trail.
    let usage = gw.get("/auth/usage").bearer(&token).send().json();
    let minute = &usage["windows"][0];
    assert_eq!((minute["window"].as_str(), minute["limit"].as_u64()), (Some("minute"), Some(100_000)), "{usage}");
    let day = &usage["windows"][1];
    assert!(day["by_model"]["smart"].as_u64().unwrap() > 0 && day["by_model"]["fast"].as_u64().unwrap() > 0, "{usage}");
    assert!(usage["windows"][1]["used"].as_u64() >= minute["used"].as_u64(), "the day holds the minute: {usage}");
    assert_eq!(minute["remaining"].as_u64().unwrap(), 100_000 - minute["used"].as_u64().unwrap());
    assert_eventually!(
        gw.metric(r#"portcullis_llm_tokens_total{kind="completion",model="smart",provider="an"}"#) == Some(20.0),
        "tokens counted"
    );
    assert!(
        gw.metric(r#"portcullis_llm_requests_total{model="smart",outcome="failover",provider="oa"}"#) >= Some(1.0),
        "the failing primary was tried first, then demoted"
    );
    assert_eq!(gw.metric(r#"portcullis_llm_requests_total{model="smart",outcome="ok",provider="oa"}"#), Some(2.0));
    assert_eq!(gw.metric(r#"portcullis_llm_requests_total{model="smart",outcome="error",provider="an"}"#), Some(1.0));
    assert!(gw.metric(r#"portcullis_llm_time_to_first_token_seconds_count{provider="an"}"#) >= Some(5.0));
    assert!(gw.metric(r#"portcullis_llm_cost_total{model="smart"}"#).unwrap() > 0.0);
    assert_eq!(gw.metric("portcullis_llm_budget_rejections_total"), Some(0.0));
    let calls: Vec<Value> = gw.audit_events().into_iter().filter(|e| e["event"] == "llm.call").collect();
    assert_eq!(calls.len(), 9, "one llm.call per answered call");
    let last = calls.last().unwrap();
    assert_eq!(
        (last["user_id"].as_str(), last["details"]["provider"].as_str(), last["details"]["model"].as_str()),
        (Some("sdk-user"), Some("an"), Some("smart")),
        "{last}"
    );
    let log = std::fs::read_to_string(gw.dir().join("audit.log")).unwrap() + &gw.log();
    assert!(!log.contains("sk-oa-secret-key") && !log.contains("sk-ant-secret-key") && !log.contains(&token));
    drop(app);
}

/// An Anthropic client speaks Anthropic's API to Anthropic providers, natively; it is not
/// translated for OpenAI ones. Bodies that are not JSON, or that cannot be translated, never
/// reach a provider. An Anthropic failure in `failover_on` fails over like any other.
#[test]
fn anthropic_clients_pass_through_and_bad_bodies_never_reach_a_provider() {
    let (oa, an) = (MockLlm::start(Mode::OpenAi), MockLlm::start(Mode::Anthropic));
    let app = MockUpstream::start();
    let gw = TestGateway::start_with_env(&llm_config(seed_config(&app.url()), "an", "oa", &oa, &an, ""), &KEYS);
    let token = gw.token("u", "user");
    let messages =
        |stream: bool| json!({"model": "smart", "max_tokens": 100, "stream": stream, "messages": [{"role": "user", "content": "Hi"}]});
    let r = gw.request("POST", "/v1/messages").bearer(&token).header("anthropic-version", "2023-06-01").json(&messages(false)).send();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!((r.json()["type"].as_str(), r.json()["usage"]["output_tokens"].as_u64()), (Some("message"), Some(5)));
    let r = gw.request("POST", "/v1/messages").bearer(&token).header("anthropic-version", "2023-06-01").json(&messages(true)).send();
    let text = String::from_utf8_lossy(&r.body);
    for event in ["message_start", "content_block_start", "content_block_delta", "message_delta", "message_stop"] {
        assert!(text.contains(&format!("event: {event}\n")), "Anthropic's events pass through unchanged: {text}");
    }
    assert_eq!(an.seen(), vec![("/v1/messages".to_string(), "claude-sonnet-4-5".to_string()); 2]);
    // Messages that cannot be put in Anthropic's API: 400, and no provider is called.
    let bad_role = json!({"model": "smart", "messages": [{"role": "wizard", "content": "Hi"}]});
    let r = gw.request("POST", "/v1/chat/completions").bearer(&token).json(&bad_role).send();
    assert_eq!((r.status, r.error_code().as_str()), (400, "invalid_request"));
    assert!(r.json()["message"].as_str().unwrap().contains("wizard"));
    assert_eq!(an.seen().len(), 2);
    // With the Anthropic provider failing, an Anthropic request has nobody to go to.
    an.fail_with(503);
    let r = gw.request("POST", "/v1/messages").bearer(&token).json(&messages(false)).send();
    assert_eq!(r.status, 502, "the OpenAI provider is not tried for an Anthropic request");
    assert!(oa.seen().is_empty());
    // An OpenAI request fails over from the Anthropic provider to the OpenAI one.
    let chat = json!({"model": "smart", "messages": [{"role": "user", "content": "Hi"}]});
    let r = gw.request("POST", "/v1/chat/completions").bearer(&token).json(&chat).send();
    assert_eq!((r.status, r.json()["model"].as_str()), (200, Some("gpt-4o")));
    an.fail_with(0);
    // Bodies that are not JSON objects, or whose messages cannot be translated: 400, no call.
    let (oa_before, an_before) = (oa.seen().len(), an.seen().len());
    for body in [&b"{not json"[..], b"[1,2]", b""] {
        let r = gw.request("POST", "/v1/chat/completions").bearer(&token).header("content-type", "application/json").body(body).send();
        assert_eq!((r.status, r.error_code().as_str()), (400, "invalid_request"), "{body:?}");
    }
    assert_eq!((oa.seen().len(), an.seen().len()), (oa_before, an_before));
    drop(app);
}

fn budget_config(base: String, oa: &MockLlm, an: &MockLlm, limits: &str) -> String {
    llm_config(base, "oa", "an", oa, an, &format!("llm_limits: {limits}\n"))
}

fn chat(gw: &TestGateway, token: &str) -> common::Reply {
    gw.request("POST", "/v1/chat/completions")
        .bearer(token)
        .json(&json!({"model": "fast", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
}

/// A user who runs out of tokens gets 429 with Retry-After and RateLimit headers, and service
/// again when the window turns.
#[test]
fn a_user_out_of_tokens_gets_429_until_the_window_turns() {
    let (oa, an) = (MockLlm::start(Mode::OpenAi), MockLlm::start(Mode::Anthropic));
    let app = MockUpstream::start();
    // Each call reserves 10 + 6 (its prompt estimate) and uses 7 (2 prompt + 5 completion).
    let limits = "{ default: { tokens_per_minute: 40 }, roles: { admin: { unlimited: true } } }";
    let gw = TestGateway::start_with_env(&budget_config(seed_config(&app.url()), &oa, &an, limits), &KEYS);
    let (token, admin) = (gw.token("u", "user"), gw.token("a", "admin"));
    // The calls below must fall in one minute window: late in one, the gateway's clock is moved
    // to the next one's start (the calls and their settlements take milliseconds).
    let into_minute = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 60;
    if into_minute > 45 {
        gw.advance_clock(60 - into_minute);
    }
    let mut served = 0;
    let refused = loop {
        let r = chat(&gw, &token);
        if r.status != 200 {
            break r;
        }
        served += 1;
        assert!(served < 10, "the budget never ran out");
        // Settlements are written behind (within 20 ms): let each land before the next call.
        let used = || gw.get("/auth/usage").bearer(&token).send().json()["windows"][0]["used"].as_u64();
        assert_eventually!(used() == Some(7 * served), "settled: {:?}", used());
    };
    assert_eq!((refused.status, refused.error_code().as_str()), (429, "token_budget_exceeded"));
    assert_eq!(served, 4, "7 tokens a call: the fifth reservation of 16 does not fit in 40 - 28");
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(refused.header("ratelimit-policy"), Some("\"tokens_minute\";q=40;w=60"));
    assert!(refused.header("ratelimit").unwrap().starts_with("\"tokens_minute\";r=12;t="), "{:?}", refused.header("ratelimit"));
    let usage = || gw.get("/auth/usage").bearer(&token).send().json();
    assert_eventually!(usage()["windows"][0]["used"] == 28 && usage()["windows"][0]["by_model"]["fast"] == 28, "{}", usage());
    assert_eq!(chat(&gw, &admin).status, 200, "other users, and unlimited roles, are not affected");
    assert_eq!(gw.metric("portcullis_llm_budget_rejections_total"), Some(1.0));
    assert_eq!(oa.seen().len(), 5, "the refused call never reached a provider");
    // Retry-After is rounded up: the window has turned once that many seconds pass.
    gw.advance_clock(retry);
    assert_eq!(chat(&gw, &token).status, 200, "a new window");
    drop((app, an));
}

/// 20 parallel calls at the edge of a budget shared by two instances through Redis: the calls
/// that go through fit in the budget, and the overshoot is at most one reservation per instance.
#[test]
fn parallel_calls_at_a_shared_budgets_edge_overshoot_by_at_most_one_reservation_per_instance() {
    let redis = RedisServer::start();
    let (oa, an) = (MockLlm::start(Mode::OpenAi), MockLlm::start(Mode::Anthropic));
    let app = MockUpstream::start();
    let base = || seed_config_with_store(&app.url(), &redis_store(&redis.url()));
    let limits = "{ default: { tokens_per_day: 100 } }";
    let gws = [
        TestGateway::start_with_env(&budget_config(base(), &oa, &an, limits), &KEYS),
        TestGateway::start_with_env(&budget_config(base(), &oa, &an, limits), &KEYS),
    ];
    let token = gws[0].token("edge", "user");
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let (gw, token) = (&gws[i % 2], &token);
                s.spawn(move || chat(gw, token).status)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = statuses.iter().filter(|s| **s == 200).count() as u64;
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "{statuses:?}");
    // Reservations of 16 each: at most 6 fit in 100.
    assert!((1..=6).contains(&ok), "{ok} calls went through: {statuses:?}");
    let used = || gws[1].get("/auth/usage").bearer(&token).send().json()["windows"][1]["used"].as_u64().unwrap();
    assert_eventually!(used() == ok * 7, "settled to real use, seen by both instances");
    let overshoot = used().saturating_sub(100);
    assert!(overshoot <= 2 * 16, "overshoot {overshoot}");
    eprintln!("budget edge: {ok} of 20 parallel calls served, {} tokens used of 100, overshoot {overshoot}", used());
    assert_eq!(gws[0].get("/auth/usage").bearer(&token).send().json()["windows"][1]["used"].as_u64(), Some(ok * 7));
    drop(app);
}

/// A stream that breaks, and a client that goes away, are still counted with what was produced:
/// estimated from the streamed text, and marked as estimated.
#[test]
fn broken_streams_are_counted_with_what_they_produced() {
    let (oa, an) = (MockLlm::start(Mode::OpenAi), MockLlm::start(Mode::Anthropic));
    let app = MockUpstream::start();
    let limits = "{ default: { tokens_per_day: 100000 } }";
    let gw = TestGateway::start_with_env(&budget_config(seed_config(&app.url()), &oa, &an, limits), &KEYS);
    let token = gw.token("u", "user");
    // The role chunk and two words ("Hello from": 10 characters, 3 tokens), then the break.
    oa.cut_after(3);
    let req = gw
        .request("POST", "/v1/chat/completions")
        .bearer(&token)
        .json(&json!({"model": "fast", "stream": true, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}));
    let raw = common::client::send_raw_bytes(gw.addr, &req.to_bytes());
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200") && text.contains("\"Hello\"") && !text.contains("[DONE]"), "{text}");
    let call = || gw.audit_events().into_iter().find(|e| e["event"] == "llm.call");
    assert_eventually!(call().is_some(), "the call is audited");
    let d = call().unwrap()["details"].clone();
    assert_eq!(
        (d["estimated"].as_bool(), d["completion_tokens"].as_u64(), d["prompt_tokens"].as_u64()),
        (Some(true), Some(3), Some(6)),
        "{d}"
    );
    assert_eq!(call().unwrap()["status"], "broken");
    // Its reservation (50 + 6) is settled to the estimate (9), not kept and not dropped.
    assert_eventually!(gw.get("/auth/usage").bearer(&token).send().json()["windows"][1]["used"] == 9, "settled to the estimate");
    assert_eq!(gw.metric(r#"portcullis_llm_requests_total{model="fast",outcome="broken",provider="oa"}"#), Some(1.0));
    drop((app, an));
}

/// A client that goes away mid-stream: the call is still counted with what was produced,
/// estimated, and its reservation settled to that.
#[test]
fn a_client_that_goes_away_mid_stream_is_counted_with_what_was_produced() {
    use std::io::{Read, Write as _};
    // Events 100 ms apart: the gateway notices the closed connection long before the end.
    let (oa, an) = (MockLlm::start_paced(Mode::OpenAi, Duration::from_millis(100)), MockLlm::start(Mode::Anthropic));
    let app = MockUpstream::start();
    let limits = "{ default: { tokens_per_day: 100000 } }";
    let gw = TestGateway::start_with_env(&budget_config(seed_config(&app.url()), &oa, &an, limits), &KEYS);
    let token = gw.token("u", "user");
    let req = gw
        .request("POST", "/v1/chat/completions")
        .bearer(&token)
        .json(&json!({"model": "fast", "stream": true, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}));
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    s.write_all(&req.to_bytes()).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("\"Hello\"") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    drop(s); // gone after the first word
    let call = || gw.audit_events().into_iter().find(|e| e["event"] == "llm.call");
    assert_eventually!(call().is_some(), "the call is audited");
    let e = call().unwrap();
    assert_eq!(e["status"], "client_closed", "{e}");
    let d = &e["details"];
    assert_eq!(d["estimated"], true, "{e}");
    let completion = d["completion_tokens"].as_u64().unwrap();
    assert!((1..8).contains(&completion), "what was streamed before the client left, not the whole answer (8): {e}");
    let used = 6 + completion;
    assert_eventually!(gw.get("/auth/usage").bearer(&token).send().json()["windows"][1]["used"] == used, "settled to the estimate");
    drop((app, an));
}

/// With Redis down, budgets cannot be reserved: with `on_store_outage: serve_cached` (the
/// default) LLM calls go ahead uncounted; `/auth/usage` says the store is unavailable; when
/// Redis is back, calls are counted again.
#[test]
fn with_redis_down_llm_calls_go_ahead_uncounted_and_usage_says_so() {
    let mut redis = RedisServer::start();
    let (oa, an) = (MockLlm::start(Mode::OpenAi), MockLlm::start(Mode::Anthropic));
    let app = MockUpstream::start();
    let base = seed_config_with_store(&app.url(), &redis_store(&redis.url()));
    let gw = TestGateway::start_with_env(&budget_config(base, &oa, &an, "{ default: { tokens_per_minute: 100000 } }"), &KEYS);
    let token = gw.token("u", "user");
    assert_eq!(chat(&gw, &token).status, 200);
    let used = || gw.get("/auth/usage").bearer(&token).send();
    assert_eventually!(used().json()["windows"][1]["used"] == 7, "counted while Redis is up");
    redis.kill();
    assert_eq!(chat(&gw, &token).status, 200, "the call goes ahead uncounted");
    let r = used();
    assert_eq!((r.status, r.error_code().as_str()), (503, "store_unavailable"));
    redis.restart();
    assert_eventually!(chat(&gw, &token).status == 200 && used().status == 200, "Redis is back");
    assert_eventually!(used().json()["windows"][1]["used"].as_u64().is_some_and(|n| n >= 7), "counted again");
    assert!(gw.log().contains("token budget: the store could not reserve"), "the outage is logged");
    drop((app, an));
}
