//! API keys and the denylist: registries under the `{credentials}` hash tag, with notices.

use async_trait::async_trait;
use redis::AsyncCommands;
use std::collections::HashMap;

use super::*;

#[async_trait]
impl CredentialStore for RedisStore {
    async fn put_record(&self, registry: Registry, id: &str, json: &str) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset(self.registry_key(registry.as_str()), id, json)
            .ignore()
            .publish(self.key("credentials"), registry.as_str())
            .ignore();
        pipe.query_async::<()>(&mut self.con()?).await.map_err(unavailable)
    }

    async fn remove_record(&self, registry: Registry, id: &str) -> Result<bool, StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic().hdel(self.registry_key(registry.as_str()), id);
        if registry == Registry::ApiKeys {
            pipe.hdel(self.registry_key("key-uses"), id).ignore();
        }
        pipe.publish(self.key("credentials"), registry.as_str()).ignore();
        let (removed,): (i64,) = pipe.query_async(&mut self.con()?).await.map_err(unavailable)?;
        Ok(removed == 1)
    }

    async fn records(&self, registry: Registry) -> Result<Vec<String>, StoreError> {
        self.con()?.hvals(self.registry_key(registry.as_str())).await.map_err(unavailable)
    }

    async fn touch_keys(&self, uses: &[(String, u64)]) -> Result<(), StoreError> {
        if uses.is_empty() {
            return Ok(());
        }
        let mut call = self.touch_keys.key(self.registry_key("key-uses"));
        call.key(self.registry_key("api-keys"));
        for (id, at) in uses {
            call.arg(id).arg(*at);
        }
        call.invoke_async::<()>(&mut self.con()?).await.map_err(unavailable)
    }

    async fn key_uses(&self) -> Result<HashMap<String, u64>, StoreError> {
        self.con()?.hgetall(self.registry_key("key-uses")).await.map_err(unavailable)
    }

    async fn shared_keys(&self, provider: &str) -> Result<Option<String>, StoreError> {
        self.con()?.get(self.key(&format!("idp-keys:{{{provider}}}"))).await.map_err(unavailable)
    }

    async fn put_shared_keys(&self, provider: &str, json: &str, ttl_ms: u64) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(self.key(&format!("idp-keys:{{{provider}}}")))
            .arg(json)
            .arg("PX")
            .arg(ttl_ms.max(1))
            .ignore()
            .publish(self.key("idp-keys"), provider)
            .ignore()
            .del(self.key(&format!("lock:idp:{{{provider}}}")))
            .ignore();
        pipe.query_async::<()>(&mut self.con()?).await.map_err(unavailable)
    }

    async fn claim_fetch(&self, provider: &str, owner: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        let set: Option<String> = redis::cmd("SET")
            .arg(self.key(&format!("lock:idp:{{{provider}}}")))
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms.max(1))
            .query_async(&mut self.con()?)
            .await
            .map_err(unavailable)?;
        Ok(set.is_some())
    }

    async fn watch_shared_keys(&self) -> Result<futures_util::stream::BoxStream<'static, String>, StoreError> {
        let pubsub = self.subscribe("idp-keys").await?;
        Ok(pubsub.into_on_message().map(|msg| String::from_utf8_lossy(msg.get_payload_bytes()).into_owned()).boxed())
    }

    async fn watch_records(&self) -> Result<futures_util::stream::BoxStream<'static, Registry>, StoreError> {
        let pubsub = self.subscribe("credentials").await?;
        Ok(pubsub
            .into_on_message()
            .filter_map(|msg| async move { Registry::parse(&String::from_utf8_lossy(msg.get_payload_bytes())) })
            .boxed())
    }
}
