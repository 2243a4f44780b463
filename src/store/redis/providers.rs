//! Provider health shared by every instance, and the probe locks.

use async_trait::async_trait;

use super::*;

#[async_trait]
impl ProviderStore for RedisStore {
    async fn provider_states(&self, names: &[String]) -> Result<Vec<Option<String>>, StoreError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        // GETs, not MGET: each provider's key is in its own Cluster slot.
        let mut pipe = redis::pipe();
        for n in names {
            pipe.get(self.key(&format!("provider:{n}")));
        }
        pipe.query_async(&mut self.con()?).await.map_err(unavailable)
    }

    async fn provider_cas(&self, name: &str, expected: u64, json: &str) -> Result<bool, StoreError> {
        let ok: i64 = self
            .provider_cas
            .key(self.key(&format!("provider:{name}")))
            .arg(expected)
            .arg(json)
            .arg(PROVIDER_STATE_TTL_MS)
            .arg(self.key("provider-health"))
            .arg(name)
            .invoke_async(&mut self.con()?)
            .await
            .map_err(unavailable)?;
        Ok(ok == 1)
    }

    async fn try_lock(&self, key: &str, owner: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        let set: Option<String> = redis::cmd("SET")
            .arg(self.key(&format!("lock:{key}")))
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut self.con()?)
            .await
            .map_err(unavailable)?;
        Ok(set.is_some())
    }

    async fn watch_providers(&self) -> Result<futures_util::stream::BoxStream<'static, String>, StoreError> {
        let pubsub = self.subscribe("provider-health").await?;
        Ok(pubsub.into_on_message().map(|msg| String::from_utf8_lossy(msg.get_payload_bytes()).into_owned()).boxed())
    }
}
