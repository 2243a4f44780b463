//! The tokens an LLM answer used, as its provider reports them (OpenAI's `usage`, Anthropic's
//! `usage` in the message and in `message_start`/`message_delta`), or estimated from the text
//! when a stream broke before its usage arrived. Pure.

use serde_json::Value;

use super::Api;

/// Tokens one call used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt: u64,
    pub completion: u64,
    /// Estimated from the text (the provider reported none).
    pub estimated: bool,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.prompt + self.completion
    }
}

/// Tokens for `chars` characters of text: about four characters a token, rounded up.
pub fn estimate_tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4)
}

/// The usage in a whole (non-streamed) answer of `api`.
pub fn from_answer(api: Api, v: &Value) -> Option<Usage> {
    from_usage(api, v.get("usage")?)
}

/// The usage in a whole answer's bytes (only its `usage` object is built; the rest is skipped).
pub fn from_answer_bytes(api: Api, bytes: &[u8]) -> Option<Usage> {
    #[derive(serde::Deserialize)]
    struct Answer {
        usage: Option<Value>,
    }
    from_usage(api, &serde_json::from_slice::<Answer>(bytes).ok()?.usage?)
}

/// A `usage` object of `api`.
fn from_usage(api: Api, u: &Value) -> Option<Usage> {
    match api {
        Api::OpenAi => Some(Usage {
            prompt: u.get("prompt_tokens")?.as_u64()?,
            completion: u.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0),
            estimated: false,
        }),
        Api::Anthropic => Some(Usage { prompt: anthropic_input(u)?, completion: u.get("output_tokens")?.as_u64()?, estimated: false }),
    }
}

/// Anthropic's input tokens: uncached, written to the cache and read from it.
pub fn anthropic_input(u: &Value) -> Option<u64> {
    let more = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    Some(u.get("input_tokens")?.as_u64()? + more("cache_creation_input_tokens") + more("cache_read_input_tokens"))
}

/// Usage gathered from a stream's events, whatever API it speaks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamUsage {
    prompt: Option<u64>,
    completion: Option<u64>,
    /// Characters of generated text seen (for the estimate).
    text_chars: usize,
    /// The final usage arrived (OpenAI's usage chunk, Anthropic's `message_delta`).
    complete: bool,
}

impl StreamUsage {
    /// Takes what one event's JSON says.
    pub fn observe(&mut self, api: Api, v: &Value) {
        match api {
            Api::OpenAi => {
                if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
                    self.prompt = u.get("prompt_tokens").and_then(Value::as_u64).or(self.prompt);
                    self.completion = u.get("completion_tokens").and_then(Value::as_u64).or(self.completion);
                    self.complete = true;
                }
                for choice in v.get("choices").and_then(Value::as_array).into_iter().flatten() {
                    let delta = &choice["delta"];
                    self.text_chars += delta["content"].as_str().map_or(0, |s| s.chars().count());
                    for call in delta["tool_calls"].as_array().into_iter().flatten() {
                        self.text_chars += call["function"]["arguments"].as_str().map_or(0, |s| s.chars().count());
                    }
                }
            }
            Api::Anthropic => match v.get("type").and_then(Value::as_str) {
                Some("message_start") => {
                    let u = &v["message"]["usage"];
                    self.prompt = anthropic_input(u).or(self.prompt);
                    self.completion = u.get("output_tokens").and_then(Value::as_u64).or(self.completion);
                }
                Some("message_delta") => {
                    let u = &v["usage"];
                    self.prompt = anthropic_input(u).or(self.prompt);
                    self.completion = u.get("output_tokens").and_then(Value::as_u64).or(self.completion);
                    self.complete |= self.completion.is_some();
                }
                Some("content_block_delta") => {
                    let d = &v["delta"];
                    let text = d["text"].as_str().or(d["partial_json"].as_str()).or(d["thinking"].as_str());
                    self.text_chars += text.map_or(0, |s| s.chars().count());
                }
                _ => {}
            },
        }
    }

    /// The usage reported, or (when the stream ended before reporting it) estimated: the
    /// prompt from the request, the completion from the text streamed.
    pub fn finish(&self, prompt_estimate: u64) -> Usage {
        match (self.complete, self.prompt, self.completion) {
            (true, Some(prompt), Some(completion)) => Usage { prompt, completion, estimated: false },
            (_, prompt, completion) => Usage {
                prompt: prompt.unwrap_or(prompt_estimate),
                completion: estimate_tokens(self.text_chars).max(completion.unwrap_or(0)),
                estimated: true,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_report_usage_in_each_api() {
        let o = json!({"usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}});
        assert_eq!(from_answer(Api::OpenAi, &o), Some(Usage { prompt: 12, completion: 5, estimated: false }));
        let a = json!({"usage": {"input_tokens": 10, "cache_read_input_tokens": 3, "output_tokens": 4}});
        assert_eq!(from_answer(Api::Anthropic, &a), Some(Usage { prompt: 13, completion: 4, estimated: false }));
        assert_eq!(from_answer(Api::OpenAi, &json!({"id": "x"})), None);
        let cached = json!({"input_tokens": 10, "cache_creation_input_tokens": 4, "cache_read_input_tokens": 3});
        assert_eq!(anthropic_input(&cached), Some(17), "uncached, written and read input all count");
        assert_eq!(from_answer_bytes(Api::OpenAi, o.to_string().as_bytes()), from_answer(Api::OpenAi, &o));
        assert_eq!(
            from_answer_bytes(Api::Anthropic, b"{\"content\":[1,2],\"usage\":{\"input_tokens\":1,\"output_tokens\":2}}").map(|u| u.total()),
            Some(3)
        );
        assert_eq!(from_answer_bytes(Api::OpenAi, b"not json"), None);
        assert_eq!(Usage { prompt: 2, completion: 3, estimated: false }.total(), 5);
    }

    #[test]
    fn streams_report_usage_at_their_end() {
        let mut s = StreamUsage::default();
        s.observe(Api::OpenAi, &json!({"choices": [{"delta": {"content": "Hello there"}}], "usage": null}));
        s.observe(Api::OpenAi, &json!({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3}}));
        assert_eq!(s.finish(100), Usage { prompt: 9, completion: 3, estimated: false });
        let mut a = StreamUsage::default();
        a.observe(Api::Anthropic, &json!({"type": "message_start", "message": {"usage": {"input_tokens": 20, "output_tokens": 1}}}));
        a.observe(Api::Anthropic, &json!({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "abcd"}}));
        a.observe(Api::Anthropic, &json!({"type": "message_delta", "usage": {"output_tokens": 7}}));
        assert_eq!(a.finish(100), Usage { prompt: 20, completion: 7, estimated: false });
    }

    #[test]
    fn broken_streams_are_estimated_from_their_text() {
        let mut s = StreamUsage::default();
        s.observe(Api::OpenAi, &json!({"choices": [{"delta": {"content": "abcdefghi"}}]}));
        s.observe(Api::OpenAi, &json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}}]}));
        assert_eq!(s.finish(40), Usage { prompt: 40, completion: 3, estimated: true });
        // Anthropic's message_start gives the prompt; the completion is estimated.
        let mut a = StreamUsage::default();
        a.observe(Api::Anthropic, &json!({"type": "message_start", "message": {"usage": {"input_tokens": 20, "output_tokens": 1}}}));
        a.observe(Api::Anthropic, &json!({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "abcdefghijkl"}}));
        assert_eq!(a.finish(100), Usage { prompt: 20, completion: 3, estimated: true });
        assert_eq!(StreamUsage::default().finish(7), Usage { prompt: 7, completion: 0, estimated: true });
        assert_eq!(estimate_tokens(0), 0);
        assert_eq!(estimate_tokens(5), 2);
    }
}
