//! The request path's view of a validated config: policy, token verifier, upstreams and their
//! peers, metric handles and header values resolved once at load, never per request. Swapped
//! whole on reload.

use http::HeaderValue;
use pingora::prelude::HttpPeer;
use std::sync::Arc;

use super::upstream::{self, Upstream};
use crate::auth::keys::ApiKeySettings;
use crate::auth::tokens::{TokenManager, TokenSettings};
use crate::auth::users::UserDirectory;
use crate::clientcert::CertMap;
use crate::clientip::Cidr;
use crate::cors::CorsPolicy;
use crate::limits::Limit;
use crate::limits::LockoutPolicy;
use crate::metrics::{Metrics, RouteMetrics, UpstreamMetrics};
use crate::policy::Policy;
use crate::providers::{Chain, Provider, ProviderSet};
use crate::ratelimit::RateLimitSettings;
use std::collections::HashMap;

/// Everything a request is judged and routed with that comes from gateway.yaml. Swapped whole
/// on reload; a request keeps the snapshot it started with.
pub struct Snapshot {
    pub policy: Policy,
    pub tokens: TokenManager,
    pub upstreams: Vec<Upstream>,
    pub users: UserDirectory,
    pub(super) peers: Vec<HttpPeer>,
    /// Metric handles per route and per upstream (same order as the config's), if enabled.
    pub(super) route_metrics: Vec<Arc<RouteMetrics>>,
    pub(super) upstream_metrics: Vec<UpstreamMetrics>,
    pub guards: Guards,
    pub providers: Arc<ProviderSet>,
    /// `RateLimit-Policy` values, made once: the per-user and per-IP API limits, and each
    /// configured route's own limit (by route index).
    pub(super) limit_policies: LimitPolicies,
    /// None: API keys are not enabled.
    pub api_keys: Option<ApiKeySettings>,
    pub client_certs: CertMap,
    /// External identity providers (their keys live in the long-lived `Issuers`).
    pub identity_providers: Vec<crate::auth::idp::IdpSettings>,
}

/// `RateLimit-Policy` header values, made at config load.
pub(super) struct LimitPolicies {
    pub(super) api_user: Option<HeaderValue>,
    pub(super) api_ip: Option<HeaderValue>,
    pub(super) routes: Vec<Option<HeaderValue>>,
    /// The limits of `rate_limits.routes` by name, with their policy values (API keys name them).
    pub(super) named: HashMap<String, (Limit, Option<HeaderValue>)>,
}

/// The settings of the guarding phases: client address, request shape, CORS, limits, lockout.
pub struct Guards {
    pub trusted_proxies: Vec<Cidr>,
    pub max_header_bytes: usize,
    pub max_header_count: usize,
    pub cors: Option<CorsPolicy>,
    pub rate_limits: RateLimitSettings,
    pub lockout: Option<LockoutPolicy>,
}

/// The parts of a validated config a [`Snapshot`] is built from.
pub struct SnapshotParts {
    pub policy: Policy,
    pub tokens: TokenSettings,
    pub upstreams: Vec<Upstream>,
    pub file_users: Vec<crate::auth::users::FileUser>,
    pub guards: Guards,
    pub providers: Vec<Provider>,
    pub chains: Vec<Chain>,
    pub api_keys: Option<ApiKeySettings>,
    pub client_certs: CertMap,
    pub named_limits: HashMap<String, Limit>,
    pub identity_providers: Vec<crate::auth::idp::IdpSettings>,
    pub llm: crate::providers::LlmSettings,
}

impl Snapshot {
    /// Builds the request-path view of a validated config: peers and metric handles resolved
    /// once here, never per request.
    pub fn new(parts: SnapshotParts, metrics: Option<&Metrics>) -> Self {
        let peers = parts.upstreams.iter().map(upstream::peer).collect();
        let (route_metrics, upstream_metrics) = match metrics {
            Some(m) => {
                for p in &parts.providers {
                    m.llm.provider_known(&p.name);
                }
                (
                    parts.policy.routes.routes().iter().map(|r| m.traffic.route(&r.name)).collect(),
                    parts.upstreams.iter().map(|u| m.traffic.upstream(&u.name)).collect(),
                )
            }
            None => (Vec::new(), Vec::new()),
        };
        let policy = |name: &str, l: crate::limits::Limit| HeaderValue::from_str(&crate::limits::policy_value(name, l)).ok();
        let limit_policies = LimitPolicies {
            api_user: parts.guards.rate_limits.api_user.and_then(|l| policy("api_user", l)),
            api_ip: parts.guards.rate_limits.api_ip.and_then(|l| policy("api_ip", l)),
            routes: parts.policy.routes.routes().iter().map(|r| r.rate_limit.as_ref().and_then(|(n, l)| policy(n, *l))).collect(),
            named: parts.named_limits.iter().map(|(n, l)| (n.clone(), (*l, policy(n, *l)))).collect(),
        };
        Snapshot {
            limit_policies,
            tokens: TokenManager::new(&parts.tokens),
            policy: parts.policy,
            upstreams: parts.upstreams,
            users: UserDirectory::new(parts.file_users),
            peers,
            route_metrics,
            upstream_metrics,
            guards: parts.guards,
            providers: Arc::new(ProviderSet::new(parts.providers, parts.chains, parts.llm)),
            api_keys: parts.api_keys,
            client_certs: parts.client_certs,
            identity_providers: parts.identity_providers,
        }
    }
}
