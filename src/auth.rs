//! Authentication: tokens now; passwords, sessions and the /auth endpoints as they arrive.
//!
//! No Pingora types in here: the proxy adapts requests to these functions.

pub mod api;
pub mod passwords;
pub mod sessions;
pub mod tokens;
pub mod users;

pub use tokens::{bearer_token, Claims, TokenError, TokenKind, TokenManager, TokenPair, TokenSpec};
