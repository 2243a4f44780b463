//! Users: accounts by id and by email, under the `{users}` hash tag.

use async_trait::async_trait;
use redis::AsyncCommands;
use std::collections::HashMap;

use super::*;

fn user_from(h: &HashMap<String, String>) -> Result<Option<UserRecord>, StoreError> {
    if h.is_empty() {
        return Ok(None);
    }
    Ok(Some(UserRecord {
        id: field(h, "id")?.into(),
        email: field(h, "email")?.into(),
        role: field(h, "role")?.into(),
        password_hash: field(h, "password_hash")?.into(),
        created_at: number(h, "created_at")?,
    }))
}

#[async_trait]
impl UserStore for RedisStore {
    async fn user(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        user_from(&self.hash(&self.user_key(id)).await?)
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        let id: Option<String> = self.con()?.get(self.email_key(email)).await.map_err(unavailable)?;
        match id {
            Some(id) => self.user(&id).await,
            None => Ok(None),
        }
    }

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let ids: Vec<String> = self.con()?.smembers(self.key("{users}:all")).await.map_err(unavailable)?;
        let keys: Vec<String> = ids.iter().map(|id| self.user_key(id)).collect();
        let mut users = Vec::new();
        for h in self.hashes(&keys).await? {
            users.extend(user_from(&h)?);
        }
        users.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(users)
    }

    async fn create_user(&self, u: &UserRecord) -> Result<bool, StoreError> {
        let created: i64 = self
            .create_user
            .key(self.email_key(&u.email))
            .key(self.user_key(&u.id))
            .key(self.key("{users}:all"))
            .arg(&u.id)
            .arg(&u.email)
            .arg(&u.role)
            .arg(&u.password_hash)
            .arg(u.created_at)
            .invoke_async(&mut self.con()?)
            .await
            .map_err(unavailable)?;
        Ok(created == 1)
    }

    async fn set_user_role(&self, id: &str, role: &str) -> Result<bool, StoreError> {
        let key = self.user_key(id);
        let mut con = self.con()?;
        let exists: bool = con.exists(&key).await.map_err(unavailable)?;
        if exists {
            let _: () = con.hset(&key, "role", role).await.map_err(unavailable)?;
        }
        Ok(exists)
    }

    async fn delete_user(&self, id: &str) -> Result<bool, StoreError> {
        let Some(user) = self.user(id).await? else {
            return Ok(false);
        };
        // The user's three keys share the `{users}` hash tag (one transaction on any deployment);
        // the session index lives in its own slot.
        let _: () = redis::pipe()
            .atomic()
            .del(self.user_key(id))
            .del(self.email_key(&user.email))
            .srem(self.key("{users}:all"), id)
            .query_async(&mut self.con()?)
            .await
            .map_err(unavailable)?;
        let _: () = self.con()?.del(self.key(&format!("user-sessions:{id}"))).await.map_err(unavailable)?;
        Ok(true)
    }
}
