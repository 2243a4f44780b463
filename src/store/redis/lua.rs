//! The store's Lua scripts, run by SHA and sent whole to the node that lacks them.
//!
//! Why not the crate's `Script::invoke_async`: on `NOSCRIPT` it sends `SCRIPT LOAD`, which a
//! cluster connection fans out to every node and counts as failed unless all of them answer.
//! Redis 7 does not propagate `SCRIPT LOAD` to replicas, so right after a failover the promoted
//! replica lacks every script, and while any node is down (the killed master itself, or a
//! replica) the fan-out fails: every scripted operation on the promoted node's slots (refresh
//! rotation, revocation, rate limits) kept failing. Here the fallback is `EVAL` with the
//! script's source, routed by its first key like the `EVALSHA` it replaces; the node that runs
//! it caches it for the next `EVALSHA`.

use redis::aio::ConnectionLike;
use redis::{ErrorKind, FromRedisValue, RedisResult, ServerErrorKind, ToRedisArgs};

/// One script: its source and its SHA-1.
pub struct Lua {
    code: &'static str,
    hash: String,
}

/// One invocation being built: keys, then arguments.
pub struct Call<'a> {
    lua: &'a Lua,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl Lua {
    pub fn new(code: &'static str) -> Self {
        Lua { code, hash: redis::Script::new(code).get_hash().to_string() }
    }

    /// An invocation with no keys or arguments yet.
    pub fn call(&self) -> Call<'_> {
        Call { lua: self, keys: Vec::new(), args: Vec::new() }
    }

    /// An invocation starting with `key`.
    pub fn key<K: ToRedisArgs>(&self, key: K) -> Call<'_> {
        let mut c = self.call();
        c.key(key);
        c
    }
}

impl Call<'_> {
    pub fn key<K: ToRedisArgs>(&mut self, key: K) -> &mut Self {
        self.keys.extend(key.to_redis_args());
        self
    }

    pub fn arg<A: ToRedisArgs>(&mut self, arg: A) -> &mut Self {
        self.args.extend(arg.to_redis_args());
        self
    }

    fn command(&self, verb: &str, script: &str) -> redis::Cmd {
        let mut cmd = redis::cmd(verb);
        cmd.arg(script).arg(self.keys.len()).arg(&self.keys).arg(&self.args);
        cmd
    }

    /// Runs the script by SHA; a node that does not know it gets the source.
    pub async fn invoke_async<T: FromRedisValue>(&self, con: &mut impl ConnectionLike) -> RedisResult<T> {
        match self.command("EVALSHA", &self.lua.hash).query_async(con).await {
            Err(e) if is_noscript(&e) => self.command("EVAL", self.lua.code).query_async(con).await,
            other => other,
        }
    }
}

fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evalsha_and_eval_carry_the_same_keys_and_arguments() {
        let lua = Lua::new("return {KEYS[1], ARGV[1]}");
        let mut call = lua.key("k1");
        call.key("k2").arg(7).arg("x");
        let args = |cmd: redis::Cmd| {
            cmd.args_iter()
                .map(|a| match a {
                    redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                    _ => String::new(),
                })
                .collect::<Vec<_>>()
        };
        let sha = args(call.command("EVALSHA", &lua.hash));
        let eval = args(call.command("EVAL", lua.code));
        assert_eq!(sha, ["EVALSHA", lua.hash.as_str(), "2", "k1", "k2", "7", "x"]);
        assert_eq!(eval, ["EVAL", lua.code, "2", "k1", "k2", "7", "x"]);
    }

    #[test]
    fn only_noscript_falls_back_to_the_source() {
        let noscript: redis::RedisError = (ErrorKind::Server(ServerErrorKind::NoScript), "NOSCRIPT").into();
        assert!(is_noscript(&noscript));
        let io: redis::RedisError = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset").into();
        assert!(!is_noscript(&io));
    }
}
