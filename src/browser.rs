//! Signing people in with a browser: the parts that are pure decisions.
//!
//! - [`redirect`]: where a browser may be sent after signing in (`rd=`).

pub mod redirect;
