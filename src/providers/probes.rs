//! Active health probes: each provider with a `health_check` is probed once per interval by one
//! instance (a store lock), with a cheap request (a models listing by default).

use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::request::{provider_request, Body};
use super::tracker::Tracker;
use super::{Provider, ProviderSet};
use crate::clock::now_ms;
use crate::store::ProviderStore;

/// The probing service.
pub struct Probes {
    pub tracker: Arc<Tracker>,
    /// The providers as currently configured (they change on reload).
    pub providers: Box<dyn Fn() -> Arc<ProviderSet> + Send + Sync>,
    pub connector: Arc<Connector>,
    pub store: Arc<dyn ProviderStore>,
    pub instance: String,
}

impl Probes {
    async fn probe(
        &self,
        provider: &Provider,
        peer: &HttpPeer,
        path: &str,
        method: &http::Method,
        timeout: Duration,
    ) -> Result<f64, String> {
        let started = Instant::now();
        let work = async {
            let (mut up, _) = self.connector.get_http_session(peer).await.map_err(|e| format!("connect: {:?}", e.etype()))?;
            let client = RequestHeader::build(method.clone(), path.as_bytes(), None).map_err(|e| e.to_string())?;
            let body = Body { bytes: Bytes::new(), more: false };
            let req = provider_request(&client, path, provider, &body, "health-probe").map_err(|e| e.to_string())?;
            up.write_request_header(Box::new(req)).await.map_err(|_| "write error".to_string())?;
            up.finish_request_body().await.map_err(|_| "write error".to_string())?;
            up.read_response_header().await.map_err(|e| format!("no response: {:?}", e.etype()))?;
            let status = up.response_header().map(|r| r.status.as_u16()).unwrap_or(0);
            while let Ok(Some(_)) = up.read_response_body().await {}
            if (200..300).contains(&status) {
                Ok(started.elapsed().as_secs_f64() * 1000.0)
            } else {
                Err(format!("probe answered {status}"))
            }
        };
        tokio::time::timeout(timeout, work).await.unwrap_or_else(|_| Err("probe timed out".into()))
    }

    /// Probes due providers every second until shutdown.
    pub async fn run(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut due: HashMap<String, u64> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let set = (self.providers)();
            let now = now_ms();
            for (i, p) in set.providers.iter().enumerate() {
                let Some(check) = &p.health_check else { continue };
                let interval = check.interval.as_millis() as u64;
                if due.get(&p.name).is_some_and(|d| *d > now) {
                    continue;
                }
                due.insert(p.name.clone(), now + interval);
                match self.store.try_lock(&format!("probe:{}", p.name), &self.instance, interval).await {
                    Ok(true) => {}
                    _ => continue, // another instance probes it this interval (or the store is down)
                }
                let outcome = self.probe(p, &set.peers[i], &check.path, &check.method, check.timeout).await;
                let name = p.name.clone();
                let result = match outcome {
                    Ok(rt) => self.tracker.update(&name, move |s, r, now| s.record_success(rt, now, r)).await,
                    Err(why) => self.tracker.update(&name, move |s, r, now| s.record_failure(&why, None, now, r)).await,
                };
                if let Err(e) = result {
                    tracing::debug!(provider = %name, error = %e, "probe result not saved");
                }
            }
        }
    }
}
