//! OpenAI chat completions <-> Anthropic's Messages API: the request (system, user, assistant and
//! tool messages, images, tools and tool calls, sampling and stop options), the answer
//! (content, tool calls, finish reason, usage), errors, and the event stream
//! (`message_start` / `content_block_*` / `message_delta` / `message_stop` become
//! `chat.completion.chunk` events ending in `data: [DONE]`). Pure.

use serde_json::{json, Map, Value};

use super::usage::{self, Usage};

/// The `anthropic-version` header the translated requests carry.
pub const VERSION: &str = "2023-06-01";

/// An OpenAI chat-completions request as an Anthropic Messages request (`model` left as the
/// client named it; the caller sets the provider's own). `default_max_tokens` when the request
/// names none (Anthropic requires it).
pub fn request_from_openai(body: &Value, default_max_tokens: u64) -> Result<Value, String> {
    let messages = body.get("messages").and_then(Value::as_array).ok_or("`messages` must be an array")?;
    let mut system: Vec<Value> = Vec::new();
    let mut out: Vec<Value> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).ok_or_else(|| format!("messages[{i}] has no `role`"))?;
        match role {
            "system" | "developer" => system.extend(blocks(&m["content"], i)?),
            "user" => push(&mut out, "user", blocks(&m["content"], i)?),
            "assistant" => {
                let mut content = if m["content"].is_null() { Vec::new() } else { blocks(&m["content"], i)? };
                for call in m.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    let f = &call["function"];
                    let args = f["arguments"].as_str().unwrap_or("{}");
                    let input: Value = serde_json::from_str(if args.trim().is_empty() { "{}" } else { args })
                        .map_err(|_| format!("messages[{i}]: a tool call's `arguments` is not JSON"))?;
                    content.push(json!({"type": "tool_use", "id": call["id"], "name": f["name"], "input": input}));
                }
                push(&mut out, "assistant", content);
            }
            "tool" => {
                let text = match &m["content"] {
                    Value::String(s) => Value::String(s.clone()),
                    other => Value::Array(blocks(other, i)?),
                };
                let result = json!({"type": "tool_result", "tool_use_id": m["tool_call_id"], "content": text});
                push(&mut out, "user", vec![result]);
            }
            other => return Err(format!("messages[{i}]: unknown role `{other}`")),
        }
    }
    let mut req = Map::new();
    req.insert("model".into(), body.get("model").cloned().unwrap_or(Value::Null));
    req.insert("messages".into(), Value::Array(out));
    let max = body.get("max_tokens").or_else(|| body.get("max_completion_tokens")).and_then(Value::as_u64);
    req.insert("max_tokens".into(), json!(max.unwrap_or(default_max_tokens)));
    if !system.is_empty() {
        req.insert("system".into(), Value::Array(system));
    }
    if let Some(t) = body.get("temperature").and_then(Value::as_f64) {
        // OpenAI's range is 0 to 2, Anthropic's 0 to 1.
        req.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    if let Some(p) = body.get("top_p").filter(|v| v.is_number()) {
        req.insert("top_p".into(), p.clone());
    }
    match body.get("stop") {
        Some(Value::String(s)) => {
            req.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if !a.is_empty() => {
            req.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        req.insert("stream".into(), Value::Bool(true));
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        let tools: Vec<Value> = tools
            .iter()
            .filter(|t| t["type"] == "function")
            .map(|t| {
                let f = &t["function"];
                let mut tool =
                    json!({"name": f["name"], "input_schema": f.get("parameters").cloned().unwrap_or(json!({"type": "object"}))});
                if let Some(d) = f.get("description") {
                    tool["description"] = d.clone();
                }
                tool
            })
            .collect();
        if !tools.is_empty() {
            req.insert("tools".into(), Value::Array(tools));
        }
    }
    match body.get("tool_choice") {
        Some(Value::String(s)) if s == "auto" => {
            req.insert("tool_choice".into(), json!({"type": "auto"}));
        }
        Some(Value::String(s)) if s == "required" => {
            req.insert("tool_choice".into(), json!({"type": "any"}));
        }
        Some(Value::String(s)) if s == "none" => {
            req.insert("tool_choice".into(), json!({"type": "none"}));
        }
        Some(Value::Object(o)) => {
            if let Some(name) = o.get("function").and_then(|f| f.get("name")) {
                req.insert("tool_choice".into(), json!({"type": "tool", "name": name}));
            }
        }
        _ => {}
    }
    if let Some(u) = body.get("user").and_then(Value::as_str) {
        req.insert("metadata".into(), json!({"user_id": u}));
    }
    Ok(Value::Object(req))
}

/// Appends content to the conversation, merging it into the last message when the role is the
/// same (Anthropic's turns alternate; OpenAI's tool results come one message each).
fn push(out: &mut Vec<Value>, role: &str, content: Vec<Value>) {
    if let Some(last) = out.last_mut().filter(|l| l["role"] == role) {
        if let Some(a) = last["content"].as_array_mut() {
            a.extend(content);
            return;
        }
    }
    out.push(json!({"role": role, "content": content}));
}

/// An OpenAI message's content (a string or parts) as Anthropic content blocks.
fn blocks(content: &Value, i: usize) -> Result<Vec<Value>, String> {
    match content {
        Value::String(s) => Ok(vec![json!({"type": "text", "text": s})]),
        Value::Array(parts) => parts.iter().map(|p| part(p, i)).collect(),
        Value::Null => Ok(Vec::new()),
        _ => Err(format!("messages[{i}]: `content` must be a string or an array of parts")),
    }
}

fn part(p: &Value, i: usize) -> Result<Value, String> {
    match p.get("type").and_then(Value::as_str) {
        Some("text") => Ok(json!({"type": "text", "text": p["text"]})),
        Some("image_url") => {
            let url =
                p["image_url"]["url"].as_str().or(p["image_url"].as_str()).ok_or_else(|| format!("messages[{i}]: an image has no url"))?;
            match url.strip_prefix("data:").and_then(|rest| rest.split_once(";base64,")) {
                Some((media_type, data)) => {
                    Ok(json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}))
                }
                None => Ok(json!({"type": "image", "source": {"type": "url", "url": url}})),
            }
        }
        other => Err(format!("messages[{i}]: content parts of type `{}` are not supported", other.unwrap_or("?"))),
    }
}

/// Anthropic's `stop_reason` as OpenAI's `finish_reason`.
pub fn finish_reason(stop_reason: Option<&str>) -> Value {
    match stop_reason {
        None => Value::Null,
        Some("max_tokens") => json!("length"),
        Some("tool_use") => json!("tool_calls"),
        Some("refusal") => json!("content_filter"),
        Some(_) => json!("stop"),
    }
}

fn openai_usage(u: Usage) -> Value {
    json!({"prompt_tokens": u.prompt, "completion_tokens": u.completion, "total_tokens": u.total()})
}

/// An Anthropic message as an OpenAI chat completion, under the model name the client used.
pub fn answer_to_openai(msg: &Value, model: &str, created: u64) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in msg["content"].as_array().into_iter().flatten() {
        match block["type"].as_str() {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or("")),
            Some("tool_use") => calls.push(json!({
                "id": block["id"], "type": "function",
                "function": {"name": block["name"], "arguments": block["input"].to_string()},
            })),
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let mut out = json!({
        "id": format!("chatcmpl-{}", msg["id"].as_str().unwrap_or("portcullis")),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(msg["stop_reason"].as_str()), "logprobs": null}],
    });
    if let Some(u) = usage::from_answer(super::Api::Anthropic, msg) {
        out["usage"] = openai_usage(u);
    }
    out
}

/// An Anthropic error body (`{"type":"error","error":{"type","message"}}`) in OpenAI's shape;
/// anything else is wrapped as the message.
pub fn error_to_openai(body: &[u8], status: u16) -> Value {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let err = parsed.as_ref().map(|v| &v["error"]);
    let kind = err.and_then(|e| e["type"].as_str()).unwrap_or(match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        _ => "api_error",
    });
    let message = err.and_then(|e| e["message"].as_str()).map(str::to_string).unwrap_or_else(|| format!("the provider answered {status}"));
    json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
}

/// Turns an Anthropic event stream into OpenAI `chat.completion.chunk` events, one event at a
/// time.
#[derive(Debug)]
pub struct StreamTranslator {
    id: String,
    model: String,
    created: u64,
    /// The client asked for the usage chunk.
    include_usage: bool,
    /// Anthropic content-block index -> OpenAI tool-call index (tool_use blocks only).
    tools: Vec<(u64, usize)>,
    prompt: u64,
    completion: u64,
    finish: Value,
    done: bool,
}

impl StreamTranslator {
    pub fn new(model: &str, created: u64, include_usage: bool) -> Self {
        StreamTranslator {
            id: "chatcmpl-portcullis".into(),
            model: model.to_string(),
            created,
            include_usage,
            tools: Vec::new(),
            prompt: 0,
            completion: 0,
            finish: Value::Null,
            done: false,
        }
    }

    /// Whether `message_stop` (or an error) ended the stream.
    pub fn done(&self) -> bool {
        self.done
    }

    fn chunk(&self, delta: Value, finish: Value) -> String {
        json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}],
        })
        .to_string()
    }

    /// The `data:` payloads (JSON text, or `[DONE]`) for one Anthropic event.
    pub fn event(&mut self, v: &Value) -> Vec<String> {
        match v["type"].as_str() {
            Some("message_start") => {
                let m = &v["message"];
                if let Some(id) = m["id"].as_str() {
                    self.id = format!("chatcmpl-{id}");
                }
                self.prompt = usage::anthropic_input(&m["usage"]).unwrap_or(0);
                self.completion = m["usage"]["output_tokens"].as_u64().unwrap_or(0);
                vec![self.chunk(json!({"role": "assistant", "content": ""}), Value::Null)]
            }
            Some("content_block_start") => {
                let b = &v["content_block"];
                match b["type"].as_str() {
                    Some("tool_use") => {
                        let n = self.tools.len();
                        self.tools.push((v["index"].as_u64().unwrap_or(0), n));
                        let call = json!({"index": n, "id": b["id"], "type": "function", "function": {"name": b["name"], "arguments": ""}});
                        vec![self.chunk(json!({"tool_calls": [call]}), Value::Null)]
                    }
                    Some("text") if b["text"].as_str().is_some_and(|t| !t.is_empty()) => {
                        vec![self.chunk(json!({"content": b["text"]}), Value::Null)]
                    }
                    _ => Vec::new(),
                }
            }
            Some("content_block_delta") => {
                let d = &v["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => vec![self.chunk(json!({"content": d["text"]}), Value::Null)],
                    Some("input_json_delta") => {
                        let index = v["index"].as_u64().unwrap_or(0);
                        let Some(&(_, n)) = self.tools.iter().find(|(b, _)| *b == index) else { return Vec::new() };
                        let call = json!({"index": n, "function": {"arguments": d["partial_json"]}});
                        vec![self.chunk(json!({"tool_calls": [call]}), Value::Null)]
                    }
                    _ => Vec::new(),
                }
            }
            Some("message_delta") => {
                if let Some(p) = usage::anthropic_input(&v["usage"]) {
                    self.prompt = p;
                }
                if let Some(c) = v["usage"]["output_tokens"].as_u64() {
                    self.completion = c;
                }
                self.finish = finish_reason(v["delta"]["stop_reason"].as_str());
                vec![self.chunk(json!({}), self.finish.clone())]
            }
            Some("message_stop") => {
                self.done = true;
                let mut out = Vec::new();
                if self.include_usage {
                    let u = Usage { prompt: self.prompt, completion: self.completion, estimated: false };
                    out.push(
                        json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                               "choices": [], "usage": openai_usage(u)})
                        .to_string(),
                    );
                }
                out.push("[DONE]".into());
                out
            }
            Some("error") => {
                self.done = true;
                let e = &v["error"];
                vec![json!({"error": {"message": e["message"], "type": e["type"], "param": null, "code": null}}).to_string()]
            }
            _ => Vec::new(), // ping, content_block_stop, and event types added later
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_translate_messages_tools_and_options() {
        let openai = json!({
            "model": "smart", "max_tokens": 300, "temperature": 1.5, "top_p": 0.9, "stop": "END", "stream": true,
            "user": "u1", "tool_choice": "required",
            "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "12C"},
                {"role": "user", "content": "Thanks"}
            ]
        });
        let a = request_from_openai(&openai, 1024).unwrap();
        assert_eq!(a["max_tokens"], 300);
        assert_eq!(a["temperature"], 1.0);
        assert_eq!(a["top_p"], 0.9);
        assert_eq!(a["stop_sequences"], json!(["END"]));
        assert_eq!(a["stream"], true);
        assert_eq!(a["system"], json!([{"type": "text", "text": "Be brief."}]));
        assert_eq!(a["metadata"]["user_id"], "u1");
        assert_eq!(a["tool_choice"], json!({"type": "any"}));
        assert_eq!(a["tools"][0]["name"], "weather");
        assert_eq!(a["tools"][0]["input_schema"]["properties"]["city"]["type"], "string");
        let m = a["messages"].as_array().unwrap();
        assert_eq!(m.len(), 3, "the tool result and the next user turn merge: {m:?}");
        assert_eq!(m[0]["content"][1]["source"], json!({"type": "base64", "media_type": "image/png", "data": "AAAA"}));
        assert_eq!(m[1]["content"][0], json!({"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Oslo"}}));
        assert_eq!(m[2]["role"], "user");
        assert_eq!(m[2]["content"][0], json!({"type": "tool_result", "tool_use_id": "call_1", "content": "12C"}));
        assert_eq!(m[2]["content"][1], json!({"type": "text", "text": "Thanks"}));
        // Defaults and stop lists.
        let b = request_from_openai(&json!({"messages": [{"role": "user", "content": "x"}], "stop": ["a", "b"], "tool_choice": {"type": "function", "function": {"name": "f"}}}), 77).unwrap();
        assert_eq!((b["max_tokens"].as_u64(), &b["stop_sequences"]), (Some(77), &json!(["a", "b"])));
        assert_eq!(b["tool_choice"], json!({"type": "tool", "name": "f"}));
        let msgs = json!([{"role": "user", "content": "x"}]);
        let with = |extra: Value| {
            let mut body = json!({"messages": msgs});
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            request_from_openai(&body, 1).unwrap()
        };
        assert!(with(json!({"stop": []})).get("stop_sequences").is_none(), "an empty stop list sends none");
        assert_eq!(with(json!({"tool_choice": "auto"}))["tool_choice"], json!({"type": "auto"}));
        assert_eq!(with(json!({"tool_choice": "none"}))["tool_choice"], json!({"type": "none"}));
        assert!(with(json!({"tool_choice": "sometimes"})).get("tool_choice").is_none());
        assert_eq!(with(json!({"tool_choice": "required"}))["tool_choice"], json!({"type": "any"}));
        // A tool result without content is an empty result, not an error.
        let empty = json!({"messages": [{"role": "tool", "tool_call_id": "c1", "content": null}]});
        assert_eq!(request_from_openai(&empty, 1).unwrap()["messages"][0]["content"][0]["content"], json!([]));
        assert!(b.get("system").is_none() && b.get("stream").is_none());
    }

    #[test]
    fn malformed_requests_are_refused_with_a_reason() {
        assert!(request_from_openai(&json!({}), 1).unwrap_err().contains("messages"));
        assert!(request_from_openai(&json!({"messages": [{"content": "x"}]}), 1).unwrap_err().contains("role"));
        assert!(request_from_openai(&json!({"messages": [{"role": "wizard", "content": "x"}]}), 1).unwrap_err().contains("wizard"));
        assert!(request_from_openai(&json!({"messages": [{"role": "user", "content": 5}]}), 1).is_err());
        let bad_args =
            json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{"}}]}]});
        assert!(request_from_openai(&bad_args, 1).unwrap_err().contains("arguments"));
        assert!(request_from_openai(&json!({"messages": [{"role": "user", "content": [{"type": "audio"}]}]}), 1).is_err());
    }

    #[test]
    fn answers_translate_content_tool_calls_and_usage() {
        let msg = json!({"id": "msg_1", "type": "message", "role": "assistant", "stop_reason": "tool_use",
            "content": [{"type": "text", "text": "Checking."}, {"type": "tool_use", "id": "tu_1", "name": "weather", "input": {"city": "Oslo"}}],
            "usage": {"input_tokens": 11, "output_tokens": 6}});
        let o = answer_to_openai(&msg, "smart", 42);
        assert_eq!((o["id"].as_str(), o["model"].as_str(), o["created"].as_u64()), (Some("chatcmpl-msg_1"), Some("smart"), Some(42)));
        let c = &o["choices"][0];
        assert_eq!((c["finish_reason"].as_str(), c["message"]["content"].as_str()), (Some("tool_calls"), Some("Checking.")));
        assert_eq!(c["message"]["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Oslo\"}");
        assert_eq!(o["usage"], json!({"prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17}));
        for (stop, finish) in [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("refusal", "content_filter")] {
            assert_eq!(finish_reason(Some(stop)), finish);
        }
        assert_eq!(finish_reason(None), Value::Null);
    }

    #[test]
    fn errors_keep_their_type_and_message() {
        let e = error_to_openai(br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#, 529);
        assert_eq!(e, json!({"error": {"message": "Overloaded", "type": "overloaded_error", "param": null, "code": null}}));
        let e = error_to_openai(b"<html>bad gateway</html>", 502);
        assert_eq!((e["error"]["type"].as_str(), e["error"]["message"].as_str()), (Some("api_error"), Some("the provider answered 502")));
        for (status, kind) in [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (429, "rate_limit_error"),
            (500, "api_error"),
        ] {
            assert_eq!(error_to_openai(b"", status)["error"]["type"], kind, "{status}");
        }
    }

    #[test]
    fn streams_translate_event_by_event() {
        let events = [
            json!({"type": "message_start", "message": {"id": "msg_9", "usage": {"input_tokens": 25, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "ping"}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "tu_1", "name": "f", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"a\":"}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 15}}),
            json!({"type": "message_stop"}),
        ];
        let mut t = StreamTranslator::new("smart", 7, true);
        let mut out: Vec<String> = events[..events.len() - 1].iter().flat_map(|e| t.event(e)).collect();
        assert!(!t.done(), "not done before message_stop");
        out.extend(t.event(&events[events.len() - 1]));
        assert!(t.done());
        let parsed: Vec<Value> = out[..out.len() - 1].iter().map(|s| serde_json::from_str(s).unwrap()).collect();
        assert_eq!(out.last().map(String::as_str), Some("[DONE]"));
        assert_eq!(parsed[0]["choices"][0]["delta"]["role"], "assistant");
        assert!(parsed.iter().all(|p| p["object"] == "chat.completion.chunk" && p["id"] == "chatcmpl-msg_9" && p["model"] == "smart"));
        assert_eq!(parsed[1]["choices"][0]["delta"]["content"], "Hi");
        assert_eq!(
            parsed[2]["choices"][0]["delta"]["tool_calls"][0],
            json!({"index": 0, "id": "tu_1", "type": "function", "function": {"name": "f", "arguments": ""}})
        );
        let args: String = parsed[3..5]
            .iter()
            .map(|p| p["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(args, "{\"a\":1}");
        assert_eq!(parsed[5]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(parsed[6]["choices"], json!([]));
        assert_eq!(parsed[6]["usage"], json!({"prompt_tokens": 25, "completion_tokens": 15, "total_tokens": 40}));
        // Without include_usage there is no usage chunk.
        let mut t = StreamTranslator::new("smart", 7, false);
        let out: Vec<String> = events.iter().flat_map(|e| t.event(e)).collect();
        assert!(!out.iter().any(|s| s.contains("\"usage\"")));
        // A text block that starts with text sends it at once; one that starts empty sends nothing.
        let mut t = StreamTranslator::new("smart", 7, false);
        let start = |text: &str| json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": text}});
        assert!(t.event(&start("")).is_empty());
        let first = t.event(&start("Hi"));
        assert_eq!(serde_json::from_str::<Value>(&first[0]).unwrap()["choices"][0]["delta"]["content"], "Hi");
        // An error event becomes an OpenAI error and ends the stream.
        let mut t = StreamTranslator::new("smart", 7, false);
        let out = t.event(&json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}));
        assert!(t.done() && out[0].contains("overloaded_error"));
    }
}
