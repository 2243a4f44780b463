//! LLM providers: health tracking shared through the store, chain ordering, active probes.
//!
//! Picking a provider never waits on the store: each instance keeps a local snapshot of every
//! provider's state, refreshed from the store every second and on a pub/sub notice.

pub mod health;
pub mod tracker;
