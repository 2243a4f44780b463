//! Where users come from: the users file (reloaded with the config) and the store (created
//! through the admin API). The file wins when both know an email.

use serde::Serialize;

use crate::store::{StoreError, UserRecord, UserStore};

/// Users from the users file, and the role that may manage users.
#[derive(Debug, Clone)]
pub struct UserSettings {
    pub file_users: Vec<FileUser>,
    pub admin_role: String,
}

/// A user from the users file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileUser {
    pub id: String,
    pub email: String,
    pub role: String,
    pub password_hash: String,
}

/// Where a user is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    File,
    Store,
}

/// A user, wherever defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub email: String,
    pub role: String,
    pub password_hash: String,
    pub created_at: Option<u64>,
    pub source: Source,
}

impl From<&FileUser> for User {
    fn from(f: &FileUser) -> Self {
        User {
            id: f.id.clone(),
            email: f.email.clone(),
            role: f.role.clone(),
            password_hash: f.password_hash.clone(),
            created_at: None,
            source: Source::File,
        }
    }
}

impl From<UserRecord> for User {
    fn from(r: UserRecord) -> Self {
        User {
            id: r.id,
            email: r.email,
            role: r.role,
            password_hash: r.password_hash,
            created_at: Some(r.created_at),
            source: Source::Store,
        }
    }
}

/// The users file's users, looked up before the store.
#[derive(Debug, Clone, Default)]
pub struct UserDirectory {
    file: Vec<FileUser>,
}

impl UserDirectory {
    /// A directory over the users file's entries.
    pub fn new(file: Vec<FileUser>) -> Self {
        UserDirectory { file }
    }

    /// A user by email (case-insensitive).
    pub async fn by_email(&self, store: &dyn UserStore, email: &str) -> Result<Option<User>, StoreError> {
        if let Some(f) = self.file.iter().find(|u| u.email.eq_ignore_ascii_case(email)) {
            return Ok(Some(f.into()));
        }
        Ok(store.user_by_email(email).await?.map(User::from))
    }

    /// A user by id.
    pub async fn by_id(&self, store: &dyn UserStore, id: &str) -> Result<Option<User>, StoreError> {
        if let Some(f) = self.file.iter().find(|u| u.id == id) {
            return Ok(Some(f.into()));
        }
        Ok(store.user(id).await?.map(User::from))
    }

    /// Every user: the file's, then the store's.
    pub async fn all(&self, store: &dyn UserStore) -> Result<Vec<User>, StoreError> {
        let mut all: Vec<User> = self.file.iter().map(User::from).collect();
        all.extend(store.users().await?.into_iter().map(User::from).filter(|u| !self.file.iter().any(|f| f.id == u.id)));
        Ok(all)
    }
}
