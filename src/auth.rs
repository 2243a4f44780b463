//! Authentication: tokens, API keys, the denylist, passwords, sessions, users, and the `/auth`,
//! `/admin/users`, `/admin/api-keys` and `/admin/revocations` endpoints.
//!
//! No Pingora types in here: the proxy adapts requests to these functions.

pub mod admin;
pub mod api;
pub mod assertion;
pub mod credentials;
pub mod denylist;
pub mod fetch;
pub mod idp;
pub mod issuers;
pub mod keygen;
pub mod keys;
pub mod keys_api;
pub mod passwords;
pub mod revocations;
pub mod sessions;
pub mod tokens;
pub mod users;
pub mod wellknown;

pub use tokens::{bearer_bytes, bearer_token, Claims, TokenError, TokenKind, TokenManager, TokenPair, TokenSpec};
