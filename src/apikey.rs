//! The API key format: making a key, telling a well-formed key from anything else without a
//! lookup, and the keyed hash that is all the store ever keeps. Pure apart from the OS random
//! source that [`generate`] draws from. A leaf.
//!
//! A key reads `pcs_<id>_<secret><check>`:
//! - `pcs_`: the prefix that names it (secret scanners and people can tell what it is);
//! - `<id>`: 12 base62 characters, the key's public id (listed, revoked and logged by it);
//! - `<secret>`: 43 base62 characters drawn uniformly, 43 * log2(62) = 256.03 bits;
//! - `<check>`: 6 base62 characters, the CRC-32 of everything before it (GitHub's token
//!   format does the same), so a mistyped or truncated key is refused before any lookup.
//!
//! 66 characters in all, every one of them URL-safe.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

/// What every key starts with.
pub const PREFIX: &str = "pcs_";
/// The length of a key id.
pub const ID_LEN: usize = 12;
const SECRET_LEN: usize = 43;
const CHECK_LEN: usize = 6;
/// The length of a whole key.
pub const KEY_LEN: usize = PREFIX.len() + ID_LEN + 1 + SECRET_LEN + CHECK_LEN;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a presented key is not a key at all (refused without a lookup).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("the API key does not start with `pcs_`")]
    Prefix,
    #[error("the API key has the wrong length")]
    Length,
    #[error("the API key holds characters a key never has")]
    Alphabet,
    #[error("the API key's checksum does not match (mistyped or truncated)")]
    Checksum,
}

/// A presented key that is well formed: its id, and the whole text for the hash check.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PresentedKey<'a> {
    text: &'a str,
}

impl<'a> PresentedKey<'a> {
    /// The key's public id.
    pub fn id(&self) -> &'a str {
        &self.text[PREFIX.len()..PREFIX.len() + ID_LEN]
    }

    /// The whole key (for the hash check only; never log it).
    pub fn expose(&self) -> &'a str {
        self.text
    }
}

impl fmt::Debug for PresentedKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PresentedKey({}...)", self.id())
    }
}

fn is_base62(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// The 6-character checksum of `body` (everything before the checksum).
fn checksum(body: &str) -> [u8; CHECK_LEN] {
    let mut n = crc32fast::hash(body.as_bytes()) as u64;
    let mut out = [b'0'; CHECK_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// Checks a presented key's shape and checksum. Cheap, and never touches the store.
pub fn parse(text: &str) -> Result<PresentedKey<'_>, KeyFormatError> {
    let Some(rest) = text.strip_prefix(PREFIX) else {
        return Err(KeyFormatError::Prefix);
    };
    if !text.is_ascii() {
        return Err(KeyFormatError::Alphabet);
    }
    if text.len() != KEY_LEN {
        return Err(KeyFormatError::Length);
    }
    let b = rest.as_bytes();
    let shaped = b.iter().enumerate().all(|(i, &c)| if i == ID_LEN { c == b'_' } else { is_base62(c) });
    if !shaped {
        return Err(KeyFormatError::Alphabet);
    }
    let (body, check) = text.split_at(KEY_LEN - CHECK_LEN);
    if checksum(body) != check.as_bytes() {
        return Err(KeyFormatError::Checksum);
    }
    Ok(PresentedKey { text })
}

/// `n` characters drawn uniformly from the base62 alphabet (rejection sampling over OS random
/// bytes: a byte counts only below 248 = 4 * 62, so no character is likelier than another).
fn random_base62(n: usize) -> Result<String, getrandom::Error> {
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        getrandom::fill(&mut buf)?;
        for &b in &buf {
            if b < 248 && out.len() < n {
                out.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    Ok(out)
}

/// A new key and its id. Fails only if the OS has no randomness to give.
pub fn generate() -> Result<(String, String), getrandom::Error> {
    let id = random_base62(ID_LEN)?;
    let secret = random_base62(SECRET_LEN)?;
    let body = [PREFIX, &id, "_", &secret].concat();
    let check = checksum(&body);
    let key = body + std::str::from_utf8(&check).unwrap_or("000000");
    Ok((key, id))
}

/// The last four characters of a key (shown in listings so a person can tell keys apart).
pub fn last4(key: &str) -> &str {
    &key[key.len().saturating_sub(4)..]
}

/// Whether `id` has the shape of a key id (for ids that arrive in paths and bodies).
pub fn valid_id(id: &str) -> bool {
    id.len() == ID_LEN && id.bytes().all(is_base62)
}

/// HMAC-SHA-256 under the server's key-hashing secret: what the store keeps instead of a key.
/// Without the secret, a leaked store gives nothing to test guesses against.
#[derive(Clone)]
pub struct KeyHasher {
    mac: Hmac<Sha256>,
    /// Tells hashers apart (a verified-key cache must not outlive the secret it checked with).
    id: u64,
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHasher(..)")
    }
}

impl KeyHasher {
    /// A hasher keyed with `secret` (the config requires at least 32 bytes).
    pub fn new(secret: &[u8]) -> Self {
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes a key of any length");
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        KeyHasher { mac, id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) }
    }

    /// This hasher's identity (each one made is distinct).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The keyed hash of a whole key.
    pub fn hash(&self, key: &str) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(key.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Whether `key` hashes to `expected`, compared in constant time.
    pub fn verify(&self, key: &str, expected: &[u8; 32]) -> bool {
        let mut mac = self.mac.clone();
        mac.update(key.as_bytes());
        mac.verify_slice(expected).is_ok()
    }
}

/// Lower-case hex of a hash (how the store keeps it).
pub fn to_hex(hash: &[u8; 32]) -> String {
    use std::fmt::Write;
    hash.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A hash from its hex form.
pub fn from_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Test support for modules above: a key's checksum, to forge well-formed keys.
#[cfg(test)]
pub mod tests_support {
    /// The checksum characters for `body`.
    pub fn checksum_of(body: &str) -> String {
        String::from_utf8(super::checksum(body).to_vec()).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_and_names_its_id() {
        let (key, id) = generate().unwrap();
        assert_eq!(key.len(), KEY_LEN);
        assert!(key.starts_with("pcs_"));
        let parsed = parse(&key).unwrap();
        assert_eq!(parsed.id(), id);
        assert!(valid_id(&id));
        assert_eq!(last4(&key), &key[62..]);
        assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "URL-safe");
        let shown = format!("{parsed:?}");
        assert!(shown.contains(&id) && !shown.contains(&key[17..40]), "Debug names the key by its id, never its secret: {shown}");
    }

    /// A hasher in a config dump or a log line shows that it is one, never its secret.
    #[test]
    fn a_hasher_prints_as_itself_without_its_secret() {
        let shown = format!("{:?}", KeyHasher::new(b"an api key hashing secret of 32+ bytes"));
        assert_eq!(shown, "KeyHasher(..)");
    }

    /// The secret's characters are drawn uniformly from all 62: over 2,000 keys (86,000
    /// characters, about 1,387 each), every character stays within 5 standard deviations of its
    /// share. A biased or narrowed draw (a wrong bound or operator) falls far outside.
    #[test]
    fn secret_characters_are_uniform_over_the_whole_alphabet() {
        let mut counts = [0u32; 128];
        for _ in 0..2_000 {
            let (key, _) = generate().unwrap();
            for b in key[PREFIX.len() + ID_LEN + 1..KEY_LEN - CHECK_LEN].bytes() {
                counts[b as usize] += 1;
            }
        }
        let expected = 2_000.0 * SECRET_LEN as f64 / 62.0;
        for &c in ALPHABET {
            let n = counts[c as usize] as f64;
            assert!((n - expected).abs() < 5.0 * expected.sqrt(), "`{}` drawn {n} times, expected about {expected:.0}", c as char);
        }
    }

    #[test]
    fn two_keys_never_share_a_secret() {
        let (a, _) = generate().unwrap();
        let (b, _) = generate().unwrap();
        assert_ne!(a[17..60], b[17..60]);
    }

    #[test]
    fn malformed_keys_are_refused_for_what_is_wrong() {
        let (key, _) = generate().unwrap();
        assert_eq!(parse(&key.replacen("pcs_", "pck_", 1)), Err(KeyFormatError::Prefix));
        assert_eq!(parse(&key[..KEY_LEN - 1]), Err(KeyFormatError::Length), "truncated");
        assert_eq!(parse(&format!("{key}0")), Err(KeyFormatError::Length));
        assert_eq!(parse(""), Err(KeyFormatError::Prefix));
        let non_ascii = format!("pcs_é{}", &key[6..]);
        assert_eq!(parse(&non_ascii), Err(KeyFormatError::Alphabet));
        let mut dashed = key.clone().into_bytes();
        dashed[20] = b'-';
        assert_eq!(parse(std::str::from_utf8(&dashed).unwrap()), Err(KeyFormatError::Alphabet));
        let mut no_sep = key.clone().into_bytes();
        no_sep[4 + ID_LEN] = b'a';
        assert_eq!(parse(std::str::from_utf8(&no_sep).unwrap()), Err(KeyFormatError::Alphabet));
    }

    /// Property: a key that differs from a real one in any single character is refused by its
    /// shape or checksum (CRC-32 detects every single-character change), never reaching a lookup.
    #[test]
    fn every_single_character_change_is_refused() {
        for _ in 0..20 {
            let (key, _) = generate().unwrap();
            for i in 0..key.len() {
                for &c in ALPHABET.iter().chain(b"_-.~ ") {
                    if key.as_bytes()[i] == c {
                        continue;
                    }
                    let mut bytes = key.clone().into_bytes();
                    bytes[i] = c;
                    let changed = String::from_utf8(bytes).unwrap();
                    assert!(parse(&changed).is_err(), "accepted a key changed at {i}");
                }
            }
        }
    }

    #[test]
    fn the_hash_is_keyed_and_verified_exactly() {
        let (key, _) = generate().unwrap();
        let h = KeyHasher::new(&[7u8; 32]);
        let other = KeyHasher::new(&[8u8; 32]);
        let hash = h.hash(&key);
        assert!(h.verify(&key, &hash));
        assert!(!other.verify(&key, &hash), "another secret gives another hash");
        let (key2, _) = generate().unwrap();
        assert!(!h.verify(&key2, &hash));
        assert_eq!(from_hex(&to_hex(&hash)), Some(hash));
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex(&"g".repeat(64)), None);
    }

    #[test]
    fn ids_are_checked_for_shape() {
        assert!(valid_id("abcDEF012345"));
        assert!(!valid_id("abcDEF01234"));
        assert!(!valid_id("abcDEF01234_"));
        assert!(!valid_id("../../etc/pa"));
    }
}
