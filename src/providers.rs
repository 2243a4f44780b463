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

/// Why a chain request goes to no provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoProvider {
    /// No provider of the chain offers the model; these are the ones the caller may use.
    UnknownModel { usable: Vec<String> },
    /// The caller's role may not use the model.
    ModelNotAllowed,
    /// No provider of the chain serves requests in this API.
    ApiNotServed(crate::llm::Api),
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

    /// Whether a caller whose role has `level` may use `model` (always, without `permissions.models`).
    pub fn may_use(&self, model: &str, level: Option<u32>) -> bool {
        self.llm.model_access.as_ref().is_none_or(|a| a.allows(model, level))
    }

    /// The providers, among `tries` (in that order), that can serve a request of chain `chain`
    /// for `model` in `api`, each with its own name for the model. A provider whose `models`
    /// lacks the model is skipped; so is one that cannot serve the API (the gateway translates
    /// OpenAI calls for Anthropic providers, not the reverse; a body too large to read whole
    /// goes only to providers of the client's own API).
    pub fn eligible<'a>(
        &'a self,
        chain: usize,
        tries: &[usize],
        model: Option<&'a str>,
        api: Option<crate::llm::Api>,
        whole_body: bool,
        level: Option<u32>,
    ) -> Result<Vec<(usize, Option<&'a str>)>, NoProvider> {
        let mut out: Vec<(usize, Option<&str>)> = tries.iter().map(|&pi| (pi, None)).collect();
        if let Some(model) = model {
            out = tries
                .iter()
                .filter_map(|&pi| models::provider_model(self.providers[pi].models.as_ref(), model).map(|own| (pi, Some(own))))
                .collect();
            if out.is_empty() {
                let usable = self.offered[chain].iter().filter(|m| self.may_use(m, level)).cloned().collect();
                return Err(NoProvider::UnknownModel { usable });
            }
            if !self.may_use(model, level) {
                return Err(NoProvider::ModelNotAllowed);
            }
        }
        if let Some(api) = api {
            out.retain(|(pi, _)| {
                let theirs = self.providers[*pi].api;
                if whole_body {
                    crate::llm::serves(api, theirs)
                } else {
                    theirs == api
                }
            });
            if out.is_empty() {
                return Err(NoProvider::ApiNotServed(api));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::Api;

    fn provider(name: &str, api: Api, models: Option<&[(&str, &str)]>) -> Provider {
        Provider {
            name: name.into(),
            api,
            address: "127.0.0.1:9".parse().unwrap(),
            tls: false,
            host_header: "127.0.0.1:9".into(),
            sni: "127.0.0.1".into(),
            verify_cert: true,
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            first_byte_timeout: Duration::from_secs(1),
            stream_idle_timeout: Duration::from_secs(1),
            auth: ProviderAuth::None,
            health_check: None,
            models: models.map(|m| m.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()),
        }
    }

    /// oa (OpenAI: smart, fast), an (Anthropic: smart), raw (OpenAI, names pass through); user
    /// (2) may use both models, viewer (1) only fast.
    fn set() -> ProviderSet {
        let providers = vec![
            provider("oa", Api::OpenAi, Some(&[("smart", "gpt-4o"), ("fast", "gpt-4o-mini")])),
            provider("an", Api::Anthropic, Some(&[("smart", "claude")])),
            provider("raw", Api::OpenAi, None),
        ];
        let chain =
            Chain { name: "llm".into(), providers: vec![0, 1, 2], order: Order::Config, failover_on: vec![503], max_retry_body_bytes: 1 };
        let access = models::ModelAccess::new([("smart".to_string(), Some(2)), ("fast".to_string(), Some(1))]);
        ProviderSet::new(providers, vec![chain], LlmSettings { model_access: Some(access), ..Default::default() })
    }

    #[test]
    fn providers_are_chosen_by_model_and_api_in_the_order_given() {
        let s = set();
        assert_eq!(s.offered[0], ["fast", "smart"]);
        let chat = Some(Api::OpenAi);
        assert_eq!(
            s.eligible(0, &[1, 0, 2], Some("smart"), chat, true, Some(2)).unwrap(),
            [(1, Some("claude")), (0, Some("gpt-4o")), (2, Some("smart"))]
        );
        // `fast` is not offered by the Anthropic provider: skipped.
        assert_eq!(s.eligible(0, &[0, 1, 2], Some("fast"), chat, true, Some(1)).unwrap(), [(0, Some("gpt-4o-mini")), (2, Some("fast"))]);
        // A body too large to translate goes only to providers of the client's API.
        assert_eq!(s.eligible(0, &[1, 0], Some("smart"), chat, false, Some(2)).unwrap(), [(0, Some("gpt-4o"))]);
        // Anthropic requests are not translated for OpenAI providers.
        assert_eq!(s.eligible(0, &[0, 1, 2], Some("smart"), Some(Api::Anthropic), true, Some(2)).unwrap(), [(1, Some("claude"))]);
        // Not an LLM call, no model: every provider, names untouched.
        assert_eq!(s.eligible(0, &[2, 0], None, None, true, None).unwrap(), [(2, None), (0, None)]);
    }

    #[test]
    fn requests_no_provider_can_serve_are_refused_with_the_reason() {
        let s = set();
        let chat = Some(Api::OpenAi);
        // Only the pass-through provider would take any name: without it, `gpt-5` is unknown,
        // and the message lists the models this caller may use.
        assert_eq!(
            s.eligible(0, &[0, 1], Some("gpt-5"), chat, true, Some(1)),
            Err(NoProvider::UnknownModel { usable: vec!["fast".to_string()] })
        );
        assert_eq!(s.eligible(0, &[0, 1], Some("smart"), chat, true, Some(1)), Err(NoProvider::ModelNotAllowed));
        assert_eq!(
            s.eligible(0, &[0, 2], Some("smart"), Some(Api::Anthropic), true, Some(2)),
            Err(NoProvider::ApiNotServed(Api::Anthropic))
        );
        assert_eq!(s.eligible(0, &[1], Some("smart"), chat, false, Some(2)), Err(NoProvider::ApiNotServed(Api::OpenAi)));
        assert!(!s.may_use("smart", None) && s.may_use("fast", Some(1)));
        let open = ProviderSet::new(vec![provider("raw", Api::OpenAi, None)], Vec::new(), LlmSettings::default());
        assert!(open.may_use("anything", None), "without permissions.models every model may be used");
    }

    #[test]
    fn prices_and_labels() {
        let p = Price { prompt_per_million: 2.0, completion_per_million: 8.0 };
        assert!((p.cost(500_000, 250_000) - 3.0).abs() < 1e-12);
        let llm = LlmSettings { known_models: ["smart".to_string()].into(), ..Default::default() };
        assert_eq!((llm.model_label(Some("smart")), llm.model_label(Some("x")), llm.model_label(None)), ("smart", "other", "other"));
    }
}
