//! The parsers' properties (src/properties.rs) on random inputs in every test run (proptest), and
//! on every input of the fuzz corpus and every input a fuzzer ever found (`fuzz/corpus/`,
//! `fuzz/regressions/`): the fuzz targets run the same properties for minutes (scripts/fuzz).
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its reason

use portcullis::properties as p;
use proptest::prelude::*;

const TARGETS: [&str; 6] = ["token", "path", "config", "framing", "apikey", "llm"];

#[test]
fn every_committed_fuzz_input_keeps_its_property() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut ran = 0;
    for dir in ["corpus", "regressions"] {
        for target in TARGETS {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else { continue };
            for e in entries.flatten() {
                let input = std::fs::read(e.path()).unwrap();
                let r = std::panic::catch_unwind(|| p::by_target(target, &input));
                assert!(r.is_ok(), "{target} fails on {}", e.path().display());
                ran += 1;
            }
        }
    }
    assert!(ran > 400, "the corpus is there ({ran} inputs)");
}

/// Path pieces that normalization has to think about.
fn path_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/".to_string()),
        Just("//".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("%2e".to_string()),
        Just("%2E%2e".to_string()),
        Just("%2f".to_string()),
        Just("%5C".to_string()),
        Just("%25".to_string()),
        Just("\\".to_string()),
        Just("%".to_string()),
        "%[0-9A-Fa-f]{2}",
        "[a-zA-Z0-9~_-]{1,4}",
        Just("projects".to_string()),
        Just("public".to_string()),
    ]
}

/// A token: one freshly minted, then maybe damaged.
fn a_token() -> impl Strategy<Value = String> {
    (
        "[a-z0-9]{1,8}",
        prop_oneof![Just("admin"), Just("viewer"), Just("nobody")],
        "[a-f0-9]{8}",
        any::<bool>(),
        any::<Option<(usize, u8)>>(),
    )
        .prop_map(|(user, role, sid, refresh, damage)| {
            let mut t = p::sample_token(&user, role, &sid, refresh).into_bytes();
            if let Some((at, b)) = damage {
                let i = at % t.len();
                t[i] = b"AZaz09-_.=+/"[b as usize % 12];
            }
            String::from_utf8_lossy(&t).into_owned()
        })
}

/// A request head with some framing headers.
fn a_request() -> impl Strategy<Value = Vec<u8>> {
    let header = prop_oneof![
        "Content-Length: [0-9]{1,3}",
        Just("Content-Length: 3, 4".to_string()),
        Just("Transfer-Encoding: chunked".to_string()),
        Just("Transfer-Encoding: gzip".to_string()),
        Just("transfer-encoding : chunked".to_string()),
        "X-[a-z]{1,5}: [ -~]{0,10}",
    ];
    (prop::collection::vec(header, 0..5), prop_oneof![Just("GET"), Just("POST")], "(/[a-z%.]{0,6}){1,3}").prop_map(|(hs, m, path)| {
        let mut s = format!("{m} {path} HTTP/1.1\r\nHost: x\r\n");
        for h in hs {
            s.push_str(&h);
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        s.into_bytes()
    })
}

/// An event stream with mixed line endings, comments and JSON data from both APIs.
fn a_stream() -> impl Strategy<Value = Vec<u8>> {
    let data = prop_oneof![
        Just(r#"{"type":"message_start","message":{"usage":{"input_tokens":5}}}"#.to_string()),
        Just(r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"f"}}"#.to_string()),
        Just(r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{"}}"#.to_string()),
        Just(r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}"#.to_string()),
        Just(r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":2}}"#.to_string()),
        Just(r#"{"type":"message_stop"}"#.to_string()),
        Just(r#"{"choices":[{"delta":{"content":"y"}}],"usage":null}"#.to_string()),
        Just("[DONE]".to_string()),
        "[ -~]{0,12}",
    ];
    let end = prop_oneof![Just("\n"), Just("\r\n"), Just("\r")];
    prop::collection::vec((prop::option::of("[a-z_]{1,12}"), data, end, any::<bool>()), 0..8).prop_map(|events| {
        let mut s = String::new();
        for (name, data, end, comment) in events {
            if comment {
                s.push_str(": keep-alive");
                s.push_str(end);
            }
            if let Some(n) = name {
                s.push_str(&format!("event: {n}{end}"));
            }
            s.push_str(&format!("data: {data}{end}{end}"));
        }
        s.into_bytes()
    })
}

/// gateway.yaml with a piece cut out, repeated or replaced.
fn a_config() -> impl Strategy<Value = String> {
    let text = p::CONFIG;
    (0..text.len(), 0..40usize, prop_oneof![Just(String::new()), "[ -~\n]{0,8}", Just("{".to_string()), Just(": ".to_string())]).prop_map(
        move |(at, len, with)| {
            let bytes = text.as_bytes();
            let end = (at + len).min(bytes.len());
            let mut out = bytes[..at].to_vec();
            out.extend_from_slice(with.as_bytes());
            out.extend_from_slice(&bytes[end..]);
            String::from_utf8_lossy(&out).into_owned()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn normalization_is_idempotent_and_leaves_no_traversal(pieces in prop::collection::vec(path_piece(), 0..12)) {
        p::path(format!("/{}", pieces.concat()).as_bytes());
    }

    #[test]
    fn any_bytes_as_a_path(b in prop::collection::vec(any::<u8>(), 0..64)) {
        p::path(&b);
    }

    #[test]
    fn a_token_verifies_only_as_itself(t in a_token()) {
        p::token(t.as_bytes());
    }

    #[test]
    fn a_config_that_loads_serves(text in a_config()) {
        p::config_text(text.as_bytes());
    }

    #[test]
    fn the_framing_guard_never_passes_two_framings(req in a_request()) {
        p::framing(&req);
    }

    #[test]
    fn api_keys_parse_only_in_their_shape(key in prop_oneof!["pcs_[A-Za-z0-9]{12}_[A-Za-z0-9]{43}[A-Za-z0-9]{6}", "[ -~]{0,70}"]) {
        p::api_key(key.as_bytes());
        if let Ok((key, _)) = portcullis::apikey::generate() {
            p::api_key(key.as_bytes());
        }
    }

    #[test]
    fn event_streams_parse_the_same_whatever_the_chunking(stream in a_stream()) {
        p::llm(&stream);
    }
}
