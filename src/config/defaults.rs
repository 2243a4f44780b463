//! Defaults of gateway.yaml's keys that serde needs as functions.
pub fn connect_timeout_ms() -> u64 {
    2_000
}
pub fn read_timeout_ms() -> u64 {
    60_000
}
pub fn write_timeout_ms() -> u64 {
    60_000
}
pub fn idle_timeout_seconds() -> u64 {
    60
}
pub fn yes() -> bool {
    true
}
pub fn api() -> String {
    "openai".into()
}
pub fn reserve_tokens() -> u64 {
    1024
}
pub fn idp_leeway() -> u64 {
    30
}

pub fn idp_max_lifetime() -> u64 {
    24 * 60
}

pub fn tls_min() -> String {
    "1.3".into()
}
pub fn order() -> String {
    "config".into()
}
pub fn failover_on() -> Vec<u16> {
    vec![429, 500, 502, 503, 504]
}
pub fn max_retry_body_bytes() -> usize {
    1024 * 1024
}
