//! Authentication: tokens, passwords, sessions, users, and the `/auth` and `/admin/users`
//! endpoints.
//!
//! No Pingora types in here: the proxy adapts requests to these functions.

pub mod admin;
pub mod api;
pub mod passwords;
pub mod sessions;
pub mod tokens;
pub mod users;

pub use tokens::{bearer_token, Claims, TokenError, TokenKind, TokenManager, TokenPair, TokenSpec};
