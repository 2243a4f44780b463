//! The properties every parser must keep, whatever bytes a client or an operator sends: one
//! function per parser, which panics when a property fails. The fuzz targets (`fuzz/`) run them
//! on generated inputs, the `proptest` tests (`tests/properties.rs`) on random ones in every test
//! run, and `tests/properties.rs` also replays the committed corpus (`fuzz/corpus/`) and every
//! input a fuzzer ever found (`fuzz/regressions/`). Not used by the gateway itself.
//!
//! The checks here are functions of their input and of the subjects they run against (a route
//! policy, a key ring, an identity provider); those subjects, and the one property whose input
//! *is* a `gateway.yaml`, are assembled from a config in [`fixture`], the only part that parses
//! one.

mod fixture;

use http::Method;

use crate::auth::{TokenKind, TokenSpec};
use crate::policy::path::normalize;
use fixture::subjects;

pub use fixture::{config_text, CONFIG};

/// Normalization is idempotent; a normalized path never holds `..` or `.` segments, `//`, an
/// encoded slash or backslash, or a control character; matching it never panics, and matches
/// the same route as its own normalization.
pub fn path(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else { return };
    let Ok(n) = normalize(text) else { return };
    assert_eq!(normalize(&n).as_deref(), Ok(&*n), "normalization is idempotent: {text:?} -> {n:?}");
    assert!(n.starts_with('/'), "{n:?}");
    assert!(!n.contains("//"), "no empty segment: {text:?} -> {n:?}");
    assert!(!n.split('/').any(|s| s == ".." || s == "."), "no dot segment: {text:?} -> {n:?}");
    let upper = n.to_ascii_uppercase();
    assert!(!upper.contains("%2F") && !upper.contains("%5C") && !n.contains('\\'), "no encoded separator: {text:?} -> {n:?}");
    assert!(!n.bytes().any(|b| b < 0x20 || b == 0x7f), "no control character: {n:?}");
    let policy = &subjects().policy;
    for m in [Method::GET, Method::DELETE, Method::POST] {
        let a = policy.find(&m, &n).map(|(id, _)| id);
        let b = policy.find(&m, &normalize(&n).unwrap_or_default()).map(|(id, _)| id);
        assert_eq!(a, b);
    }
}

/// A token verifies only as what it is; one that verifies re-encodes, through the gateway's own
/// minting, to a token that verifies to the same identity. Any bytes: an error, never a panic.
pub fn token(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else { return };
    let t = &subjects().tokens;
    let now = crate::clock::unix_now();
    for kind in [TokenKind::Access, TokenKind::Refresh] {
        let Ok(claims) = t.verify_at(text, kind, now) else { continue };
        assert_eq!(claims.kind, kind.as_str(), "a token verifies only as its own kind");
        let spec = TokenSpec {
            user_id: &claims.user_id,
            role: claims.role.as_deref(),
            kind,
            session_id: &claims.sid,
            ttl: Some(std::time::Duration::from_secs(60)),
            jti: Some(&claims.jti),
        };
        let again = t.create_token_at(&spec, now).expect("re-encodes");
        let back = t.verify_at(&again, kind, now).expect("the re-encoded token verifies");
        assert_eq!((&back.user_id, &back.role, &back.sid, &back.kind), (&claims.user_id, &claims.role, &claims.sid, &claims.kind));
    }
    // The same bytes as an external provider's token, against a JWKS: the first line is the JWKS,
    // the rest the token.
    let (jwks, token) = text.split_once('\n').unwrap_or((text, text));
    if let Ok((keys, _)) = crate::auth::idp::parse_jwks(jwks.as_bytes(), &crate::auth::idp::EXTERNAL_ALGORITHMS.map(|(_, a)| a)) {
        if let Some(idp) = &subjects().idp {
            let _ = crate::auth::idp::verify(token, idp, &keys, &subjects().policy.roles, now);
        }
    }
    let _ = crate::auth::idp::unverified_issuer(text);
}

/// Raw request bytes through the framing guard: never a panic; a request it passes has one
/// framing (never both Content-Length and Transfer-Encoding, never two different lengths).
pub fn framing(input: &[u8]) {
    let _ = crate::proxy::guard::raw_framing_conflict(input);
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(head_len)) = req.parse(input) else { return };
    // The guard sees the header section as received (never the body).
    let raw = &input[..head_len];
    let conflict = crate::proxy::guard::raw_framing_conflict(raw);
    let (Some(method), Some(path)) = (req.method, req.path) else { return };
    let Ok(mut head) = pingora::http::RequestHeader::build(method, path.as_bytes(), None) else { return };
    for h in req.headers.iter() {
        let _ = head.append_header(h.name.to_string(), h.value);
    }
    let verdict = crate::proxy::guard::check_shape(&head, Some(raw), 32 * 1024, 100);
    if verdict.is_ok() {
        assert!(!conflict, "a request with conflicting framing passed the guard");
        let lengths: Vec<&[u8]> = head.headers.get_all(http::header::CONTENT_LENGTH).iter().map(|v| v.as_bytes()).collect();
        assert!(lengths.is_empty() || !head.headers.contains_key(http::header::TRANSFER_ENCODING), "CL and TE together passed");
        assert!(lengths.windows(2).all(|w| w[0] == w[1]), "two different lengths passed");
    }
}

/// An API key that parses has the documented shape, a valid id and a checksum that parses
/// again; hex HMACs round-trip.
pub fn api_key(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else { return };
    if let Ok(k) = crate::apikey::parse(text) {
        assert!(crate::apikey::valid_id(k.id()), "{:?}", k.id());
        assert_eq!(crate::apikey::parse(k.expose()).map(|k| k.id().to_string()).ok().as_deref(), Some(k.id()));
        assert_eq!(crate::apikey::last4(text).len(), 4);
        // One character changed anywhere is refused (the checksum or the shape catches it).
        let mut bytes = text.as_bytes().to_vec();
        let i = input.len() % bytes.len();
        bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
        if let Ok(changed) = std::str::from_utf8(&bytes) {
            if changed != text {
                assert!(crate::apikey::parse(changed).is_err(), "a changed key {changed:?} still parses");
            }
        }
    }
    if let Some(h) = crate::apikey::from_hex(text) {
        assert_eq!(crate::apikey::from_hex(&crate::apikey::to_hex(&h)), Some(h));
    }
}

/// Server-sent events parse the same whatever the chunking; every event and every JSON body
/// goes through the OpenAI <-> Anthropic translation without a panic.
pub fn llm(input: &[u8]) {
    use crate::llm::sse::Parser;
    let whole = {
        let mut p = Parser::new(64 * 1024);
        let mut events = p.feed(input).unwrap_or_default();
        events.extend(p.finish());
        events
    };
    let split = input.first().map_or(0, |b| *b as usize % (input.len() + 1));
    let chunked = {
        let mut p = Parser::new(64 * 1024);
        let mut events = p.feed(&input[..split]).unwrap_or_default();
        events.extend(p.feed(&input[split..]).unwrap_or_default());
        events.extend(p.finish());
        events
    };
    if input.len() < 64 * 1024 {
        assert_eq!(whole, chunked, "chunking changed the events (split at {split})");
    }
    let mut translator = crate::llm::anthropic::StreamTranslator::new("m", 0, true);
    for e in &whole {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&e.data) {
            let _ = translator.event(&v);
        }
    }
    let _ = translator.done();
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(input) {
        let _ = crate::llm::anthropic::request_from_openai(&v, 1024);
        let _ = crate::llm::anthropic::answer_to_openai(&v, "m", 0);
        for api in [crate::llm::Api::OpenAi, crate::llm::Api::Anthropic] {
            let _ = crate::llm::usage::from_answer(api, &v);
        }
    }
    let _ = crate::llm::anthropic::error_to_openai(input, 400);
    for api in [crate::llm::Api::OpenAi, crate::llm::Api::Anthropic] {
        let _ = crate::llm::usage::from_answer_bytes(api, input);
    }
}

/// A fresh token of the checks' key ring (for generators that mutate real tokens).
pub fn sample_token(user_id: &str, role: &str, session_id: &str, refresh: bool) -> String {
    let kind = if refresh { TokenKind::Refresh } else { TokenKind::Access };
    let spec = TokenSpec { user_id, role: Some(role), kind, session_id, ttl: None, jti: None };
    subjects().tokens.create_token(&spec).unwrap_or_default()
}

/// Runs the property of the fuzz target named `target` on `input`.
pub fn by_target(target: &str, input: &[u8]) {
    match target {
        "token" => token(input),
        "path" => path(input),
        "config" => config_text(input),
        "framing" => framing(input),
        "apikey" => api_key(input),
        "llm" => llm(input),
        other => panic!("no fuzz target `{other}`"),
    }
}
