//! What the gateway understands of LLM calls, pure: which API a request speaks and what it asks
//! for (model, streaming, `max_tokens`, a prompt estimate), the usage an answer reports,
//! OpenAI <-> Anthropic translation of requests, answers, errors and streams, server-sent
//! events, and token-budget arithmetic. No I/O: the provider-chain loop (`proxy::chain`) and the
//! budget service (`providers::budget`) drive it.

pub mod anthropic;
pub mod budget;
pub mod sse;
pub mod usage;

use serde_json::Value;

/// The API a client or a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// OpenAI's chat completions (and everything OpenAI-compatible).
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
}

impl Api {
    /// The name used in `gateway.yaml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::OpenAi => "openai",
            Api::Anthropic => "anthropic",
        }
    }
}

/// The endpoint a request path names: `.../chat/completions` (OpenAI) or `.../messages`
/// (Anthropic); None for anything else (models, embeddings, ...), which passes through.
pub fn endpoint_api(path: &str) -> Option<Api> {
    if path.ends_with("/chat/completions") {
        Some(Api::OpenAi)
    } else if path.ends_with("/messages") {
        Some(Api::Anthropic)
    } else {
        None
    }
}

/// The path a provider speaking `to` receives for a client's `path` in `from`'s API.
pub fn provider_path(path: &str, from: Api, to: Api) -> String {
    match (from, to) {
        (Api::OpenAi, Api::Anthropic) => format!("{}/messages", path.trim_end_matches("/chat/completions")),
        (Api::Anthropic, Api::OpenAi) => format!("{}/chat/completions", path.trim_end_matches("/messages")),
        _ => path.to_string(),
    }
}

/// Whether a client speaking `from` can be served by a provider speaking `to`.
pub fn serves(from: Api, to: Api) -> bool {
    from == to || (from, to) == (Api::OpenAi, Api::Anthropic)
}

/// What an LLM request asks for, read once from its JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub api: Api,
    pub body: Value,
    pub model: Option<String>,
    pub stream: bool,
    /// The completion tokens it allows (`max_tokens`, or OpenAI's `max_completion_tokens`).
    pub max_tokens: Option<u64>,
    /// An OpenAI client asked for the usage chunk at the end of a stream.
    pub wants_stream_usage: bool,
    /// Prompt tokens, estimated from its text (about four characters a token).
    pub prompt_estimate: u64,
}

/// A request body that is not a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotJson;

impl Call {
    /// Reads a request body in `api`.
    pub fn parse(api: Api, bytes: &[u8]) -> Result<Call, NotJson> {
        let body: Value = serde_json::from_slice(bytes).map_err(|_| NotJson)?;
        let obj = body.as_object().ok_or(NotJson)?;
        let model = obj.get("model").and_then(Value::as_str).map(str::to_string);
        let stream = obj.get("stream").and_then(Value::as_bool).unwrap_or(false);
        let max_tokens = obj.get("max_tokens").or_else(|| obj.get("max_completion_tokens")).and_then(Value::as_u64);
        let wants_stream_usage = obj.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool) == Some(true);
        let prompt_chars: usize = ["messages", "system", "tools"].iter().filter_map(|k| obj.get(*k)).map(text_chars).sum();
        let messages = obj.get("messages").and_then(Value::as_array).map_or(0, Vec::len) as u64;
        let prompt_estimate = usage::estimate_tokens(prompt_chars) + 4 * messages;
        Ok(Call { api, body, model, stream, max_tokens, wants_stream_usage, prompt_estimate })
    }

    /// The body a provider receives: in its API, with its own model name; an OpenAI stream also
    /// asks for the final usage chunk (removed again if the client did not ask for it).
    pub fn provider_body(&self, to: Api, model: Option<&str>, default_max_tokens: u64) -> Result<Value, String> {
        let mut body = match (self.api, to) {
            (Api::OpenAi, Api::Anthropic) => anthropic::request_from_openai(&self.body, default_max_tokens)?,
            (Api::Anthropic, Api::OpenAi) => return Err("an Anthropic request is not translated for OpenAI providers".into()),
            _ => self.body.clone(),
        };
        if let (Some(m), Some(obj)) = (model, body.as_object_mut()) {
            obj.insert("model".into(), Value::String(m.to_string()));
        }
        if to == Api::OpenAi && self.stream {
            if let Some(obj) = body.as_object_mut() {
                let options = obj.entry("stream_options").or_insert_with(|| Value::Object(Default::default()));
                if let Some(o) = options.as_object_mut() {
                    o.insert("include_usage".into(), Value::Bool(true));
                }
            }
        }
        Ok(body)
    }
}

/// The characters of every string inside a JSON value (keys excluded).
fn text_chars(v: &Value) -> usize {
    match v {
        Value::String(s) => s.chars().count(),
        Value::Array(a) => a.iter().map(text_chars).sum(),
        Value::Object(o) => o.values().map(text_chars).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_name_their_api_and_map_between_them() {
        assert_eq!(endpoint_api("/v1/chat/completions"), Some(Api::OpenAi));
        assert_eq!(endpoint_api("/llm/v1/messages"), Some(Api::Anthropic));
        assert_eq!(endpoint_api("/v1/models"), None);
        assert_eq!(endpoint_api("/v1/embeddings"), None);
        assert_eq!(provider_path("/v1/chat/completions", Api::OpenAi, Api::Anthropic), "/v1/messages");
        assert_eq!(provider_path("/v1/messages", Api::Anthropic, Api::OpenAi), "/v1/chat/completions");
        assert_eq!(provider_path("/v1/chat/completions", Api::OpenAi, Api::OpenAi), "/v1/chat/completions");
    }

    #[test]
    fn apis_have_their_config_names_and_translate_one_way() {
        assert_eq!((Api::OpenAi.as_str(), Api::Anthropic.as_str()), ("openai", "anthropic"));
        assert!(serves(Api::OpenAi, Api::OpenAi) && serves(Api::Anthropic, Api::Anthropic));
        assert!(serves(Api::OpenAi, Api::Anthropic), "OpenAI calls are translated for Anthropic providers");
        assert!(!serves(Api::Anthropic, Api::OpenAi), "Anthropic calls are not translated for OpenAI providers");
    }

    #[test]
    fn provider_bodies_are_translated_between_apis() {
        let c = Call::parse(
            Api::OpenAi,
            br#"{"model":"smart","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}]}"#,
        )
        .unwrap();
        let b = c.provider_body(Api::Anthropic, Some("claude-x"), 77).unwrap();
        assert_eq!((b["model"].as_str(), b["max_tokens"].as_u64()), (Some("claude-x"), Some(77)));
        assert_eq!(b["system"][0]["text"], "Be brief.");
        assert_eq!(b["messages"].as_array().map(Vec::len), Some(1), "the system message is not a turn");
        let a = Call::parse(Api::Anthropic, br#"{"model":"smart","max_tokens":5,"messages":[]}"#).unwrap();
        assert!(a.provider_body(Api::OpenAi, None, 1).is_err());
    }

    #[test]
    fn calls_read_what_they_ask_for() {
        let body = json!({"model": "smart", "stream": true, "max_completion_tokens": 50,
                          "stream_options": {"include_usage": true},
                          "messages": [{"role": "user", "content": "abcdefgh"}]});
        let c = Call::parse(Api::OpenAi, body.to_string().as_bytes()).unwrap();
        assert_eq!((c.model.as_deref(), c.stream, c.max_tokens, c.wants_stream_usage), (Some("smart"), true, Some(50), true));
        // "user" + "abcdefgh" = 12 characters = 3 tokens, plus 4 for the message.
        assert_eq!(c.prompt_estimate, 7);
        assert_eq!(Call::parse(Api::OpenAi, b"[1]"), Err(NotJson));
        assert_eq!(Call::parse(Api::OpenAi, b"{"), Err(NotJson));
        let plain = Call::parse(Api::OpenAi, br#"{"model":7}"#).unwrap();
        assert_eq!((plain.model, plain.stream, plain.max_tokens, plain.wants_stream_usage), (None, false, None, false));
    }

    #[test]
    fn openai_streams_ask_for_usage_and_models_are_renamed() {
        let c = Call::parse(Api::OpenAi, br#"{"model":"smart","stream":true,"messages":[]}"#).unwrap();
        let b = c.provider_body(Api::OpenAi, Some("gpt-4o"), 1024).unwrap();
        assert_eq!(b["model"], "gpt-4o");
        assert_eq!(b["stream_options"]["include_usage"], true);
        let c = Call::parse(Api::OpenAi, br#"{"model":"smart","messages":[]}"#).unwrap();
        let b = c.provider_body(Api::OpenAi, None, 1024).unwrap();
        assert_eq!((b["model"].as_str(), b.get("stream_options")), (Some("smart"), None));
        let a = Call::parse(Api::Anthropic, br#"{"model":"smart","max_tokens":5,"stream":true,"messages":[]}"#).unwrap();
        let b = a.provider_body(Api::Anthropic, Some("claude-x"), 1024).unwrap();
        assert_eq!((b["model"].as_str(), b.get("stream_options")), (Some("claude-x"), None));
    }
}
