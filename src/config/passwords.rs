//! Lowering of `passwords:`: argon2id cost, policy and hashing concurrency.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{problem, Problem};
use crate::auth::passwords::PasswordSettings;

/// `passwords:`: argon2id cost, the policy for new passwords, hashing concurrency.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawPasswords {
    pub min_length: usize,
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    pub max_concurrent: usize,
    pub max_queue: usize,
}

impl Default for RawPasswords {
    fn default() -> Self {
        let d = crate::auth::passwords::PasswordSettings::default();
        RawPasswords {
            min_length: d.min_length,
            memory_kib: d.memory_kib,
            iterations: d.iterations,
            parallelism: d.parallelism,
            max_concurrent: d.max_concurrent,
            max_queue: d.max_queue,
        }
    }
}

pub(super) fn lower_passwords(s: &RawPasswords, p: &mut Vec<Problem>) -> Option<PasswordSettings> {
    if argon2::Params::new(s.memory_kib, s.iterations, s.parallelism, None).is_err() {
        problem(p, "passwords", "invalid argon2 parameters (memory_kib >= 8 x parallelism, iterations >= 1, parallelism >= 1)");
    }
    if s.min_length < 8 {
        problem(p, "passwords.min_length", "must be at least 8");
    }
    if s.max_concurrent == 0 {
        problem(p, "passwords.max_concurrent", "must be at least 1");
    }
    Some(PasswordSettings {
        memory_kib: s.memory_kib,
        iterations: s.iterations,
        parallelism: s.parallelism,
        min_length: s.min_length,
        max_concurrent: s.max_concurrent,
        max_queue: s.max_queue,
    })
}
