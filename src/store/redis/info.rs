//! Connection settings shared by every deployment: addresses as connection info with the
//! configured credentials and TLS, and the timeouts.

use std::time::Duration;

use redis::{ConnectionInfo, IntoConnectionInfo};

use crate::store::{RedisSettings, StoreError};

pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
pub const RESPONSE_TIMEOUT: Duration = Duration::from_millis(1000);

pub fn invalid(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// `host:port` as connection info with the settings' credentials and TLS.
pub fn node_info(address: &str, s: &RedisSettings) -> Result<ConnectionInfo, StoreError> {
    let scheme = if s.tls { "rediss" } else { "redis" };
    let info = format!("{scheme}://{address}").into_connection_info().map_err(invalid)?;
    Ok(with_credentials(info, s))
}

pub fn with_credentials(info: ConnectionInfo, s: &RedisSettings) -> ConnectionInfo {
    let mut redis = info.redis_settings().clone();
    if let Some(u) = &s.username {
        redis = redis.set_username(u);
    }
    if let Some(p) = &s.password {
        redis = redis.set_password(p);
    }
    info.set_redis_settings(redis)
}
