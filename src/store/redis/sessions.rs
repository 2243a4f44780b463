//! Sessions, their rotation and activity, and revocations with their notices.

use async_trait::async_trait;
use redis::AsyncCommands;
use std::collections::HashMap;

use super::*;

fn session_from(h: &HashMap<String, String>) -> Result<Option<SessionRecord>, StoreError> {
    if h.is_empty() {
        return Ok(None);
    }
    let s = SessionRecord {
        id: field(h, "id")?.into(),
        user_id: field(h, "user_id")?.into(),
        created_at: number(h, "created_at")?,
        last_activity: number(h, "last_activity")?,
        expires_at: number(h, "expires_at")?,
        user_agent: field(h, "user_agent")?.into(),
        ip: field(h, "ip")?.into(),
        refresh_jti: field(h, "refresh_jti")?.into(),
    };
    Ok((s.expires_at > now()).then_some(s))
}

/// Parses a revocation notice: `"{until} {sid} {sid}..."`.
fn parse_notice(payload: &str) -> Vec<(String, u64)> {
    let mut parts = payload.split(' ');
    let Some(until) = parts.next().and_then(|u| u.parse::<u64>().ok()) else {
        return Vec::new();
    };
    parts.filter(|s| !s.is_empty()).map(|s| (s.to_string(), until)).collect()
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create_session(&self, s: &SessionRecord, idle_seconds: u64, now: u64) -> Result<(), StoreError> {
        let key = self.key(&format!("session:{}", s.id));
        let index = self.key(&format!("user-sessions:{}", s.user_id));
        let fields: [(&str, String); 8] = [
            ("id", s.id.clone()),
            ("user_id", s.user_id.clone()),
            ("created_at", s.created_at.to_string()),
            ("last_activity", s.last_activity.to_string()),
            ("expires_at", s.expires_at.to_string()),
            ("user_agent", s.user_agent.clone()),
            ("ip", s.ip.clone()),
            ("refresh_jti", s.refresh_jti.clone()),
        ];
        // The index first: a session "log out everywhere" cannot find must never exist (a dangling
        // index entry is pruned when read). Two slots, so two steps rather than one transaction.
        let _: () = redis::pipe()
            .sadd(&index, &s.id)
            .ignore()
            .expire(&index, s.expires_at.saturating_sub(now).max(1) as i64)
            .ignore()
            .query_async(&mut self.con()?)
            .await
            .map_err(unavailable)?;
        let _: () = redis::pipe()
            .atomic()
            .hset_multiple(&key, &fields)
            .ignore()
            .expire(&key, session_ttl(s, idle_seconds, now) as i64)
            .ignore()
            .query_async(&mut self.con()?)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        session_from(&self.hash(&self.key(&format!("session:{id}"))).await?)
    }

    async fn sessions_of(&self, user_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        let index = self.key(&format!("user-sessions:{user_id}"));
        let ids: Vec<String> = self.con()?.smembers(&index).await.map_err(unavailable)?;
        let keys: Vec<String> = ids.iter().map(|id| self.key(&format!("session:{id}"))).collect();
        let mut live = Vec::new();
        let mut dead = Vec::new();
        for (id, h) in ids.iter().zip(self.hashes(&keys).await?) {
            match session_from(&h)? {
                Some(s) => live.push(s),
                None => dead.push(id.clone()),
            }
        }
        if !dead.is_empty() {
            let _: () = self.con()?.srem(&index, dead).await.map_err(unavailable)?;
        }
        live.sort_by_key(|s| s.created_at);
        Ok(live)
    }

    async fn rotate_refresh(
        &self,
        session_id: &str,
        presented: &str,
        next: &str,
        now: u64,
        idle_seconds: u64,
    ) -> Result<Rotation, StoreError> {
        let outcome: i64 = self
            .rotate
            .key(self.key(&format!("session:{session_id}")))
            .arg(presented)
            .arg(next)
            .arg(now)
            .arg(idle_seconds)
            .invoke_async(&mut self.con()?)
            .await
            .map_err(unavailable)?;
        Ok(match outcome {
            1 => Rotation::Rotated,
            0 => Rotation::Reused,
            _ => Rotation::Missing,
        })
    }

    async fn touch_sessions(&self, activity: &[(String, u64)], idle_seconds: u64) -> Result<(), StoreError> {
        // One script call per session (each in its own slot), pipelined in chunks; EVAL so that a
        // script cache emptied by a restart cannot fail part of a pipeline.
        let mut con = self.con()?;
        let now = now();
        for chunk in activity.chunks(500) {
            let mut pipe = redis::pipe();
            for (id, at) in chunk {
                pipe.cmd("EVAL").arg(TOUCH).arg(1).arg(self.key(&format!("session:{id}"))).arg(now).arg(idle_seconds).arg(*at).ignore();
            }
            let _: () = pipe.query_async(&mut con).await.map_err(unavailable)?;
        }
        Ok(())
    }

    async fn revoke_sessions(&self, session_ids: &[String], until: u64) -> Result<(), StoreError> {
        // The revocation first (it is what every instance enforces), then the sessions go, so
        // their refresh tokens stop rotating.
        let mut con = self.con()?;
        for chunk in session_ids.chunks(500) {
            let mut call = self.revoke.call();
            call.key(self.key("revoked")).arg(until).arg(now()).arg(self.key("revocations"));
            for id in chunk {
                call.arg(id);
            }
            let _: i64 = call.invoke_async(&mut con).await.map_err(unavailable)?;
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.del(self.key(&format!("session:{id}"))).ignore();
            }
            let _: () = pipe.query_async(&mut con).await.map_err(unavailable)?;
        }
        Ok(())
    }

    async fn revocations(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError> {
        let key = self.key("revoked");
        let (all,): (Vec<(String, f64)>,) = redis::pipe()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(now)
            .ignore()
            .cmd("ZRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut self.con()?)
            .await
            .map_err(unavailable)?;
        Ok(all.into_iter().map(|(id, until)| (id, until as u64)).collect())
    }

    async fn watch_revocations(&self) -> Result<RevocationNotices, StoreError> {
        let pubsub = self.subscribe("revocations").await?;
        Ok(pubsub.into_on_message().map(|msg| parse_notice(&String::from_utf8_lossy(msg.get_payload_bytes()))).boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_carry_a_deadline_and_session_ids() {
        assert_eq!(parse_notice("100 a b"), vec![("a".to_string(), 100), ("b".to_string(), 100)]);
        assert!(parse_notice("garbage a").is_empty());
        assert!(parse_notice("").is_empty());
    }
}
