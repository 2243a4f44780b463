//! External identity providers at run time: each provider's current keys (fetched at start,
//! refreshed in the background within the configured bounds, honouring `Cache-Control:
//! max-age`, kept when a fetch fails), a single-flight refetch for tokens naming an unknown
//! `kid` (at most one per cooldown, so forged kids cannot flood the provider), and a cache of
//! verified external tokens. The request path only reads; fetching happens in the background or
//! in the one request that waits on an unknown `kid`.

use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::fetch;
use super::idp::{self, ExternalError, IdpSettings, JwksSource, KeySet};
use crate::clock::{now_ms, unix_now};
use crate::metrics::Metrics;
use crate::policy::{Identity, Roles};
use crate::store::CredentialStore;

/// How long one fetch may take.
const FETCH_DEADLINE: Duration = Duration::from_secs(5);
/// Tokens longer than this are verified every time instead of being cached.
const MAX_CACHED_TOKEN_BYTES: usize = 4096;

/// What the last fetches of a provider did (for `/readyz` and logs; never a key).
#[derive(Debug, Clone, Default)]
struct Status {
    last_ok: Option<u64>,
    last_error: Option<String>,
}

/// One provider: its settings and its current keys.
pub struct IssuerState {
    pub settings: IdpSettings,
    keys: ArcSwap<KeySet>,
    status: Mutex<Status>,
    /// When the next background refresh is due (unix ms).
    next_refresh_ms: AtomicU64,
    /// When a fetch for an unknown `kid` last started (unix ms).
    last_kid_fetch_ms: AtomicU64,
    /// Completed fetches (a waiter knows whether another fetched meanwhile).
    fetches: AtomicU64,
    /// When the keys held were fetched (unix ms), by this instance or another.
    fetched_at_ms: AtomicU64,
    flight: tokio::sync::Mutex<()>,
}

impl IssuerState {
    fn new(settings: IdpSettings) -> Self {
        IssuerState {
            settings,
            keys: ArcSwap::from_pointee(KeySet::default()),
            status: Mutex::new(Status::default()),
            next_refresh_ms: AtomicU64::new(0),
            last_kid_fetch_ms: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
            fetched_at_ms: AtomicU64::new(0),
            flight: tokio::sync::Mutex::new(()),
        }
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A verified external token, remembered under its exact bytes for the key set it was verified
/// with (a new key set, after any fetch, verifies it again).
#[derive(Clone)]
struct Verified {
    identity: Arc<Identity>,
    exp: u64,
    keys: Arc<KeySet>,
    state: Arc<IssuerState>,
}

/// A provider's keys as shared through the store: the JWKS as fetched, when, and when the next
/// refresh is due.
#[derive(serde::Serialize, serde::Deserialize)]
struct SharedKeys {
    jwks: String,
    fetched_at_ms: u64,
    next_refresh_ms: u64,
}

/// Every configured provider.
pub struct Issuers {
    states: ArcSwap<Vec<Arc<IssuerState>>>,
    connector: Arc<pingora::connectors::http::Connector>,
    metrics: Option<Arc<Metrics>>,
    verified: quick_cache::sync::Cache<Box<str>, Verified>,
    /// With a shared store, one instance fetches each provider's keys and the others read them
    /// from the store: a fleet of any size costs the provider one fetch per refresh.
    shared: Option<Arc<dyn CredentialStore>>,
    instance: String,
}

impl Issuers {
    /// No providers yet; [`Self::configure`] sets them.
    pub fn new(connector: Arc<pingora::connectors::http::Connector>, metrics: Option<Arc<Metrics>>) -> Self {
        Issuers {
            states: ArcSwap::from_pointee(Vec::new()),
            connector,
            metrics,
            verified: quick_cache::sync::Cache::new(4096),
            shared: None,
            instance: crate::ids::new_id(),
        }
    }

    /// Shares fetched keys through `store` (when it is shared by several instances).
    pub fn with_store(mut self, store: Arc<dyn CredentialStore>) -> Self {
        if !store.is_local() {
            self.shared = Some(store);
        }
        self
    }

    /// Makes `wanted` the providers; a provider whose settings did not change keeps its keys.
    pub fn configure(&self, wanted: &[IdpSettings]) {
        let current = self.states.load();
        if current.len() == wanted.len() && current.iter().zip(wanted).all(|(s, w)| s.settings == *w) {
            return;
        }
        let next: Vec<Arc<IssuerState>> = wanted
            .iter()
            .map(|w| current.iter().find(|s| s.settings == *w).cloned().unwrap_or_else(|| Arc::new(IssuerState::new(w.clone()))))
            .collect();
        if let Some(m) = &self.metrics {
            for s in &next {
                m.auth.idp_known(&s.settings.name);
            }
        }
        self.states.store(Arc::new(next));
        self.verified.clear();
    }

    /// Whether any provider is configured (else tokens are never inspected for `iss`).
    pub fn is_empty(&self) -> bool {
        self.states.load().is_empty()
    }

    /// Authenticates a bearer token if its (unverified) `iss` names a configured provider; None
    /// if it does not (then it is the gateway's own to verify).
    pub fn authenticate(&self, token: &str, roles: &Roles, now: u64) -> Option<Result<Arc<Identity>, (ExternalError, String)>> {
        let states = self.states.load();
        if states.is_empty() {
            return None;
        }
        // A token seen before skips even reading its `iss`: its entry names its provider.
        let cacheable = token.len() <= MAX_CACHED_TOKEN_BYTES;
        if let Some(hit) = self.verified.get(token).filter(|_| cacheable) {
            if Arc::ptr_eq(&hit.keys, &hit.state.keys.load()) && hit.exp.saturating_add(hit.state.settings.leeway_seconds) >= now {
                return Some(Ok(hit.identity));
            }
            self.verified.remove(token);
        }
        let iss = idp::unverified_issuer(token)?;
        let state = states.iter().find(|s| s.settings.issuer == iss)?;
        let keys = state.keys.load_full();
        Some(match idp::verify(token, &state.settings, &keys, roles, now) {
            Ok((identity, exp)) => {
                let identity = Arc::new(identity);
                if cacheable {
                    self.verified.insert(token.into(), Verified { identity: identity.clone(), exp, keys, state: state.clone() });
                }
                Ok(identity)
            }
            Err(e) => Err((e, iss)),
        })
    }

    /// For a token naming an unknown `kid` of provider `iss`: one refetch per provider at a
    /// time, at most once per cooldown. True if the keys may have changed (check the token again).
    pub async fn refetch_for_unknown_kid(&self, iss: &str) -> bool {
        let Some(state) = self.states.load().iter().find(|s| s.settings.issuer == iss).cloned() else {
            return false;
        };
        let seen = state.fetches.load(Ordering::Acquire);
        let _flight = state.flight.lock().await;
        if state.fetches.load(Ordering::Acquire) != seen {
            return true; // another request fetched while this one waited
        }
        let now = now_ms();
        let cooldown = state.settings.refresh.unknown_kid_cooldown.as_millis() as u64;
        let last = state.last_kid_fetch_ms.load(Ordering::Acquire);
        if last != 0 && now.saturating_sub(last) < cooldown {
            return false;
        }
        state.last_kid_fetch_ms.store(now, Ordering::Release);
        self.refresh(&state, true).await
    }

    /// Fetches every provider whose refresh is due (the background task calls this each second).
    pub async fn refresh_due(&self) {
        let states = self.states.load_full();
        for state in states.iter() {
            if now_ms() >= state.next_refresh_ms.load(Ordering::Acquire) {
                let _flight = state.flight.lock().await;
                if now_ms() >= state.next_refresh_ms.load(Ordering::Acquire) {
                    self.refresh(state, false).await;
                }
            }
        }
    }

    /// New keys for a provider (the caller holds its flight): with a shared store, another
    /// instance's fresh copy if there is one, else this instance fetches (if it gets the claim)
    /// and shares what it fetched. `newer`: any copy fetched after the keys held will do (a token
    /// named an unknown kid). True if new keys are in place.
    async fn refresh(&self, state: &IssuerState, newer: bool) -> bool {
        let Some(store) = &self.shared else {
            return self.fetch(state).await.is_some();
        };
        let name = &state.settings.name;
        let usable = |c: &SharedKeys| {
            if newer {
                c.fetched_at_ms > state.fetched_at_ms.load(Ordering::Acquire)
            } else {
                c.next_refresh_ms > now_ms()
            }
        };
        if let Some(copy) = self.shared_copy(store.as_ref(), name).await.filter(|c| usable(c)) {
            return self.apply_shared(state, copy);
        }
        let deadline_ms = 2 * FETCH_DEADLINE.as_millis() as u64;
        match store.claim_fetch(name, &self.instance, deadline_ms).await {
            Ok(true) | Err(_) => {}
            Ok(false) => {
                // Another instance is fetching: its copy arrives within its fetch deadline (read
                // here); a request waiting on an unknown kid waits no longer than that.
                let until = now_ms() + FETCH_DEADLINE.as_millis() as u64;
                while now_ms() < until {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if let Some(copy) = self
                        .shared_copy(store.as_ref(), name)
                        .await
                        .filter(|c| c.fetched_at_ms > state.fetched_at_ms.load(Ordering::Acquire))
                    {
                        return self.apply_shared(state, copy);
                    }
                }
                state.next_refresh_ms.store(now_ms() + 1000, Ordering::Release);
                return false;
            }
        }
        let Some((jwks, next_ms)) = self.fetch(state).await else { return false };
        let copy = SharedKeys { jwks, fetched_at_ms: state.fetched_at_ms.load(Ordering::Acquire), next_refresh_ms: next_ms };
        if let Ok(json) = serde_json::to_string(&copy) {
            if let Err(e) = store.put_shared_keys(name, &json, next_ms.saturating_sub(now_ms())).await {
                tracing::debug!(provider = %name, error = %e, "could not share identity provider keys");
            }
        }
        true
    }

    async fn shared_copy(&self, store: &dyn CredentialStore, name: &str) -> Option<SharedKeys> {
        let json = store.shared_keys(name).await.ok()??;
        serde_json::from_str(&json).ok()
    }

    /// Puts another instance's copy in place; false if it does not parse.
    fn apply_shared(&self, state: &IssuerState, copy: SharedKeys) -> bool {
        match idp::parse_jwks(copy.jwks.as_bytes(), &state.settings.algorithms) {
            Ok((keys, _)) => {
                let n = keys.len();
                state.keys.store(Arc::new(keys));
                state.fetched_at_ms.store(copy.fetched_at_ms, Ordering::Release);
                state.next_refresh_ms.store(copy.next_refresh_ms, Ordering::Release);
                state.fetches.fetch_add(1, Ordering::AcqRel);
                *state.status() = Status { last_ok: Some(copy.fetched_at_ms / 1000), last_error: None };
                if let Some(m) = &self.metrics {
                    m.auth.idp_fetch(&state.settings.name, "shared", n);
                }
                true
            }
            Err(_) => false,
        }
    }

    /// A shared copy announced by another instance: taken if newer than the keys held.
    async fn on_notice(&self, name: &str) {
        let (Some(store), Some(state)) = (&self.shared, self.states.load().iter().find(|s| s.settings.name == name).cloned()) else {
            return;
        };
        if let Some(copy) = self.shared_copy(store.as_ref(), name).await {
            if copy.fetched_at_ms > state.fetched_at_ms.load(Ordering::Acquire) {
                self.apply_shared(&state, copy);
            }
        }
    }

    /// One fetch of a provider's keys from the provider: discovery if configured, then the
    /// JWKS. On failure the last good keys stay (stale-on-error) and the next attempt comes
    /// after the minimum refresh. The JWKS text and when the next refresh is due, if new keys
    /// are in place.
    async fn fetch(&self, state: &IssuerState) -> Option<(String, u64)> {
        let s = &state.settings;
        let result = async {
            let jwks_uri = match &s.source {
                JwksSource::Direct(u) => u.clone(),
                JwksSource::Discovery(u) => {
                    let doc = fetch::get(&self.connector, u, FETCH_DEADLINE).await?;
                    let v: serde_json::Value =
                        serde_json::from_slice(&doc.body).map_err(|_| "the discovery document is not JSON".to_string())?;
                    if v.get("issuer").and_then(|i| i.as_str()) != Some(s.issuer.as_str()) {
                        return Err("the discovery document names another issuer".to_string());
                    }
                    let uri = v.get("jwks_uri").and_then(|j| j.as_str()).ok_or("the discovery document has no jwks_uri")?;
                    let parsed = fetch::parse_url(uri).map_err(|e| format!("its jwks_uri {e}"))?;
                    if !parsed.tls && !fetch::is_loopback(&parsed.host) {
                        return Err("its jwks_uri is plain http to another machine".to_string());
                    }
                    uri.to_string()
                }
            };
            let doc = fetch::get(&self.connector, &jwks_uri, FETCH_DEADLINE).await?;
            let (keys, skipped) = idp::parse_jwks(&doc.body, &s.algorithms)?;
            for why in &skipped {
                tracing::warn!(provider = %s.name, key = %why, "identity provider key left out");
            }
            let text = String::from_utf8(doc.body).map_err(|_| "the JWKS is not UTF-8".to_string())?;
            Ok::<_, String>((keys, idp::refresh_after(doc.cache_control.as_deref(), &s.refresh), text))
        }
        .await;
        state.fetches.fetch_add(1, Ordering::AcqRel);
        match result {
            Ok((keys, after, text)) => {
                let n = keys.len();
                let next = now_ms() + after.as_millis() as u64;
                state.keys.store(Arc::new(keys));
                state.fetched_at_ms.store(now_ms(), Ordering::Release);
                state.next_refresh_ms.store(next, Ordering::Release);
                *state.status() = Status { last_ok: Some(unix_now()), last_error: None };
                tracing::info!(provider = %s.name, keys = n, next_refresh_seconds = after.as_secs(), "identity provider keys fetched");
                if let Some(m) = &self.metrics {
                    m.auth.idp_fetch(&s.name, "ok", n);
                }
                Some((text, next))
            }
            Err(e) => {
                state.next_refresh_ms.store(now_ms() + s.refresh.min.as_millis() as u64, Ordering::Release);
                tracing::warn!(provider = %s.name, error = %e, "identity provider keys could not be fetched; the last good keys stay");
                state.status().last_error = Some(e);
                if let Some(m) = &self.metrics {
                    m.auth.idp_fetch(&s.name, "error", state.keys.load().len());
                }
                None
            }
        }
    }

    /// Puts a provider's keys in place from a JWKS document without fetching (benchmarks and
    /// tests; the background refresh replaces them as usual). The number of keys taken.
    pub fn load_jwks(&self, name: &str, jwks: &[u8]) -> Result<usize, String> {
        let state = self.states.load().iter().find(|s| s.settings.name == name).cloned().ok_or("no such provider")?;
        let (keys, _) = idp::parse_jwks(jwks, &state.settings.algorithms)?;
        let n = keys.len();
        state.keys.store(Arc::new(keys));
        state.fetched_at_ms.store(now_ms(), Ordering::Release);
        Ok(n)
    }

    /// Each provider's state for `/readyz` details: keys held, last good fetch, last error.
    pub fn report(&self) -> serde_json::Value {
        let states = self.states.load();
        let entries = states.iter().map(|s| {
            let st = s.status().clone();
            let keys = s.keys.load().len();
            (
                s.settings.name.clone(),
                serde_json::json!({
                    "keys": keys,
                    "ready": keys > 0,
                    "last_fetch_ok_at": st.last_ok.map(crate::timefmt::rfc3339),
                    "last_error": st.last_error,
                    // When the keys are next fetched (or taken from another instance).
                    "next_refresh_in_seconds": s.next_refresh_ms.load(Ordering::Acquire).saturating_sub(now_ms()) / 1000,
                }),
            )
        });
        serde_json::Value::Object(entries.collect())
    }

    /// Keeps the providers in step with the config and their keys fresh, until shutdown; with
    /// a shared store, takes other instances' fetches as they are announced.
    pub async fn run(&self, wanted: impl Fn() -> Vec<IdpSettings>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        use futures_util::StreamExt;
        if let Some(store) = &self.shared {
            store.prepare();
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut notices: Option<futures_util::stream::BoxStream<'static, String>> = None;
        loop {
            let notice = async {
                match notices.as_mut() {
                    Some(n) => n.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tick.tick() => {
                    if let (None, Some(store)) = (&notices, &self.shared) {
                        if !self.states.load().is_empty() {
                            notices = store.watch_shared_keys().await.ok();
                        }
                    }
                    self.configure(&wanted());
                    self.refresh_due().await;
                }
                n = notice => match n {
                    Some(name) => self.on_notice(&name).await,
                    None => notices = None,
                },
                _ = shutdown.changed() => return,
            }
        }
    }
}
