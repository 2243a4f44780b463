//! Random identifiers: token ids (`jti`), session ids (`sid`), instance names. A leaf.

/// A new random identifier (128 bits, 32 lower-case hex digits).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
