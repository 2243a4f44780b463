//! The types a provider-chain call is made of, shared by the chain (which picks providers and
//! settles the call) and the relay (which makes one attempt): the call as the client made it,
//! the plan for one provider, and what an attempt came to.

use bytes::Bytes;
use pingora::prelude::*;

use crate::llm::usage::Usage;
use crate::llm::{self, Api, Call};
use crate::providers::budget::Reservation;
use crate::providers::models;
use crate::providers::request::Body;
use crate::providers::{Provider, ProviderSet};

/// An LLM call on its way through a chain: what it asked, under which public model it is
/// counted, and its reservation.
pub(super) struct LlmCall {
    pub api: Api,
    /// None when the body was too large to read whole (passed through unread).
    pub call: Option<Call>,
    /// The `model` label (a name from the config, or `other`).
    pub model_label: String,
    /// The public model the client named.
    pub model: Option<String>,
    pub reservation: Option<Reservation>,
    /// Prompt tokens estimated from the request (for answers that report no usage).
    pub prompt_estimate: u64,
}

/// How an answer comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Relay {
    /// Byte for byte, unread (not an LLM call).
    Raw,
    /// Byte for byte in the provider's API, its usage read on the way; `strip_usage`: remove
    /// OpenAI's usage chunk, which the client did not ask for.
    Observe { api: Api, strip_usage: bool },
    /// An Anthropic answer translated for an OpenAI client.
    Translate { include_usage: bool },
}

/// What one provider receives for this request, and how its answer comes back.
pub(super) struct Plan {
    pub body: Body,
    pub path: String,
    pub relay: Relay,
    /// The provider speaks Anthropic's API (`anthropic-version` is due).
    pub anthropic: bool,
    /// The public model the client named (translated answers carry it).
    pub model: String,
    pub prompt_estimate: u64,
}

impl Plan {
    /// The plan for `provider`; Err when the client's call cannot be put in its API.
    pub fn new(
        lc: Option<&LlmCall>,
        provider: &Provider,
        own_model: Option<&str>,
        body: &Body,
        path: &str,
        set: &ProviderSet,
    ) -> Result<Plan, String> {
        let anthropic = provider.api == Api::Anthropic;
        let renamed = || -> Body {
            match own_model.and_then(|m| models::with_model(&body.bytes, m)).filter(|_| !body.more) {
                Some(b) => Body { bytes: b.into(), more: false },
                None => Body { bytes: body.bytes.clone(), more: body.more },
            }
        };
        let Some(lc) = lc else {
            return Ok(Plan {
                body: renamed(),
                path: path.to_string(),
                relay: Relay::Raw,
                anthropic,
                model: String::new(),
                prompt_estimate: 0,
            });
        };
        let model = lc.model.clone().unwrap_or_default();
        let Some(call) = &lc.call else {
            // Too large to read: passed through to a provider of the client's API.
            let relay = Relay::Observe { api: provider.api, strip_usage: false };
            return Ok(Plan { body: renamed(), path: path.to_string(), relay, anthropic, model, prompt_estimate: lc.prompt_estimate });
        };
        let default_max = set.llm.budgets.as_ref().map_or(4096, |b| b.reserve_tokens);
        // The client's own bytes when the provider would receive the same JSON.
        let unchanged = call.api == provider.api
            && own_model.is_none_or(|m| Some(m) == call.model.as_deref())
            && !(provider.api == Api::OpenAi && call.stream && !call.wants_stream_usage);
        let bytes: Bytes = if unchanged {
            body.bytes.clone()
        } else {
            let json = call.provider_body(provider.api, own_model, default_max)?;
            serde_json::to_vec(&json).map_err(|e| e.to_string())?.into()
        };
        let relay = match (call.api, provider.api) {
            (Api::OpenAi, Api::Anthropic) => Relay::Translate { include_usage: call.wants_stream_usage },
            (client, theirs) => {
                Relay::Observe { api: theirs, strip_usage: client == Api::OpenAi && call.stream && !call.wants_stream_usage }
            }
        };
        Ok(Plan {
            body: Body { bytes, more: false },
            path: llm::provider_path(path, call.api, provider.api),
            relay,
            anthropic,
            model,
            prompt_estimate: call.prompt_estimate,
        })
    }
}

/// How an answered attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Served {
    /// Tokens used, if the answer said (or they were estimated).
    pub usage: Option<Usage>,
    /// ok, error (a non-2xx answer), broken, cut_off, client_closed, invalid_request.
    pub outcome: &'static str,
    pub status: u16,
}

impl Served {
    pub fn nothing(outcome: &'static str) -> Self {
        Served { usage: None, outcome, status: 0 }
    }
}

/// What one attempt came to.
pub(super) enum Attempt {
    /// The response was relayed (or the client went away).
    Done(Served),
    /// Nothing reached the client: the next provider may be tried.
    Failover(String),
    /// Bytes already reached the client and the provider broke (or the stream was cut off):
    /// the stream must end abruptly.
    Broken(Box<Error>, Served),
}
