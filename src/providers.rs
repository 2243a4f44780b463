//! LLM providers: what a provider and a fallback chain are, health tracking shared through the
//! store, chain ordering, active probes, and the `/admin/providers` endpoints.
//!
//! Picking a provider never waits on the store: each instance keeps a local snapshot of every
//! provider's state, refreshed from the store every second and on a pub/sub notice.

pub mod admin;
pub mod budget;
pub mod health;
pub mod models;
pub mod probes;
pub mod request;
pub mod tracker;

use pingora::prelude::HttpPeer;
use std::net::SocketAddr;
use std::time::Duration;

use crate::secret::Secret;
use health::Order;

/// How the provider's key is sent.
#[derive(Debug, Clone)]
pub enum ProviderAuth {
    None,
    Bearer(Secret),
    Header(String, Secret),
}

/// An active health probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub path: String,
    pub method: http::Method,
    pub interval: Duration,
    pub timeout: Duration,
}

/// An LLM provider.
#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    /// The API it speaks.
    pub api: crate::llm::Api,
    pub address: SocketAddr,
    pub tls: bool,
    /// `host[:port]` for the Host header; the host alone for SNI.
    pub host_header: String,
    pub sni: String,
    pub verify_cert: bool,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Until the response header (a timeout fails over).
    pub first_byte_timeout: Duration,
    /// The longest gap between response body chunks (exceeded: the stream ends, a failure).
    pub stream_idle_timeout: Duration,
    pub auth: ProviderAuth,
    pub health_check: Option<HealthCheck>,
    /// Public model name -> this provider's name for it (None: names pass through).
    pub models: Option<std::collections::BTreeMap<String, String>>,
}

/// A fallback chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    /// Indices into the config's providers, primary first.
    pub providers: Vec<usize>,
    pub order: Order,
    pub failover_on: Vec<u16>,
    pub max_retry_body_bytes: usize,
}

/// What a model's tokens cost, per million.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub prompt_per_million: f64,
    pub completion_per_million: f64,
}

impl Price {
    /// The cost of one call's tokens.
    pub fn cost(&self, prompt: u64, completion: u64) -> f64 {
        (prompt as f64 * self.prompt_per_million + completion as f64 * self.completion_per_million) / 1_000_000.0
    }
}

/// Who may use which model, token budgets and prices.
#[derive(Debug, Clone, Default)]
pub struct LlmSettings {
    /// Who may use which model (None: `permissions` has no `models` resource).
    pub model_access: Option<models::ModelAccess>,
    /// `llm_limits` (None: token use is counted, not limited).
    pub budgets: Option<crate::llm::budget::BudgetRules>,
    /// `models_pricing`.
    pub prices: std::collections::HashMap<String, Price>,
    /// Every model name the config mentions: the only values the `model` metric label takes
    /// (others are counted as `other`).
    pub known_models: std::collections::BTreeSet<String>,
}

impl LlmSettings {
    /// The `model` label for a requested model.
    pub fn model_label<'a>(&'a self, model: Option<&str>) -> &'a str {
        model.and_then(|m| self.known_models.get(m)).map_or("other", String::as_str)
    }
}

/// The configured providers and chains, with each provider's Pingora peer (same order). Built
/// once per config; swapped whole on reload.
pub struct ProviderSet {
    pub providers: Vec<Provider>,
    pub chains: Vec<Chain>,
    pub peers: Vec<HttpPeer>,
    /// Each chain's public models (sorted; empty when no provider of it maps models).
    pub offered: Vec<Vec<String>>,
    pub llm: LlmSettings,
}

impl ProviderSet {
    /// The set for these providers and chains.
    pub fn new(providers: Vec<Provider>, chains: Vec<Chain>, llm: LlmSettings) -> Self {
        let peers = providers.iter().map(request::provider_peer).collect();
        let offered = chains
            .iter()
            .map(|c| models::offered(c.providers.iter().map(|i| providers[*i].models.as_ref())).into_iter().collect())
            .collect();
        ProviderSet { providers, chains, peers, offered, llm }
    }
}
