//! Lowering of `store:`: the memory or Redis backend.

use super::raw::RawStore;
use super::{did_you_mean, problem, Problem};
use crate::store::StoreSettings;

pub(super) fn lower_store(s: &RawStore, env: &dyn Fn(&str) -> Option<String>, p: &mut Vec<Problem>) -> Option<StoreSettings> {
    match s.backend.as_str() {
        "memory" => Some(StoreSettings::Memory),
        "redis" => {
            let (url, place) = match env("REDIS_URL") {
                Some(url) => (url, "environment variable `REDIS_URL`"),
                None => match &s.redis_url {
                    Some(url) => (url.clone(), "`redis_url`"),
                    None => {
                        problem(p, "store", "the redis backend needs `redis_url` (or the environment variable `REDIS_URL`)");
                        return None;
                    }
                },
            };
            // The URL may carry a password: never repeat it.
            if redis::Client::open(url.as_str()).is_err() {
                problem(p, "store.redis_url", format!("{place} is not a valid Redis URL (redis://host:port/db or redis+unix:///path)"));
                return None;
            }
            Some(StoreSettings::Redis { url, key_prefix: s.key_prefix.clone() })
        }
        other => {
            problem(
                p,
                "store.backend",
                format!("unknown store backend `{other}`: use `memory` or `redis`{}", did_you_mean(other, ["memory", "redis"])),
            );
            None
        }
    }
}
