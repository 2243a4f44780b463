//! Request-path normalization: the one canonical form that routes are matched against and that
//! the upstream receives, so the gateway and the application can never disagree on a path.
//!
//! Pure; never allocates when the path is already canonical.

use std::borrow::Cow;
use thiserror::Error;

/// Why a request path was refused (all answered with 400).
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    #[error("the path must start with '/'")]
    NotAbsolute,
    #[error("the path contains an invalid percent-encoding")]
    BadEscape,
    #[error("the path contains an encoded '/' or '\\'")]
    EncodedSeparator,
    #[error("the path contains a backslash")]
    Backslash,
    #[error("the path contains a NUL or control character")]
    ControlCharacter,
}

/// Normalizes an origin-form request path (no query): decodes percent-encoded unreserved
/// characters, upper-cases the remaining escapes, merges repeated slashes and removes dot
/// segments (RFC 3986 section 5.2.4; `..` never climbs above the root). A trailing slash is kept.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if is_canonical(bytes)? {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(bytes)?;
    Ok(Cow::Owned(remove_dot_segments(&decoded)))
}

/// Checks every byte; true when the path needs no rewriting at all (the common case).
fn is_canonical(bytes: &[u8]) -> Result<bool, PathError> {
    let mut canonical = true;
    let mut prev = 0u8;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\\' => return Err(PathError::Backslash),
            0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
            b'%' => canonical = false,
            b'/' if prev == b'/' => canonical = false,
            b'.' if prev == b'/' => {
                // "/." or "/.." as a whole segment
                let rest = &bytes[i + 1..];
                let seg_end = rest.iter().position(|&c| c == b'/').unwrap_or(rest.len());
                if seg_end == 0 || (seg_end == 1 && rest[0] == b'.') {
                    canonical = false;
                }
            }
            _ => {}
        }
        prev = b;
    }
    Ok(canonical)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decodes `%XX` of unreserved characters; keeps (upper-cased) every other escape.
fn decode_unreserved(bytes: &[u8]) -> Result<String, PathError> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            // Non-ASCII bytes only arrive as part of valid UTF-8 (the input is a &str).
            let ch_len = utf8_len(b);
            out.push_str(std::str::from_utf8(&bytes[i..i + ch_len]).map_err(|_| PathError::BadEscape)?);
            i += ch_len;
            continue;
        }
        let (hi, lo) = match (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (Some(hi), Some(lo)) => (hi, lo),
            _ => return Err(PathError::BadEscape),
        };
        let v = hi << 4 | lo;
        match v {
            b'/' | b'\\' => return Err(PathError::EncodedSeparator),
            0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
            v if is_unreserved(v) => out.push(v as char),
            v => {
                out.push('%');
                out.push(HEX[(v >> 4) as usize] as char);
                out.push(HEX[(v & 0xf) as usize] as char);
            }
        }
        i += 3;
    }
    Ok(out)
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// Removes `.`/`..` segments and empty segments; keeps a trailing slash.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for seg in path.split('/').skip(1) {
        trailing_slash = false;
        match seg {
            "" => trailing_slash = true,
            "." => trailing_slash = true,
            ".." => {
                segments.pop();
                trailing_slash = true;
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_are_borrowed() {
        // A dot ends a segment without being one ("v1.", "x.."): nothing to rewrite.
        for p in ["/", "/projects/1", "/a/b/", "/a.b/c..d/.e", "/v1./x", "/x../y", "/a/b."] {
            assert!(matches!(normalize(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    #[test]
    fn normalizes_a_table_of_tricky_paths() {
        let table = [
            ("/projects/../admin/settings", "/admin/settings"),
            ("//admin/settings", "/admin/settings"),
            ("/%61dmin/settings", "/admin/settings"),
            ("/admin//settings", "/admin/settings"),
            ("/admin/./settings", "/admin/settings"),
            ("/admin/settings/.", "/admin/settings/"),
            ("/admin/settings/..", "/admin/"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/..", "/"),
            ("/.", "/"),
            ("//", "/"),
            ("/a/%2e%2e/admin/settings", "/admin/settings"),
            ("/a/%2E./admin", "/admin"),
            ("/a/.%2e/admin", "/admin"),
            ("/%7Euser", "/~user"),
            ("/a%20b", "/a%20b"),
            ("/a%3fb", "/a%3Fb"),
            ("/%25", "/%25"),
            ("/%252e%252e/admin", "/%252e%252e/admin"),
            ("/caf\u{e9}", "/caf\u{e9}"),
            // Characters of two, three and four bytes beside something to rewrite.
            ("/caf\u{e9}/./%7e", "/caf\u{e9}/~"),
            ("/\u{e9}%41", "/\u{e9}A"),
            ("/\u{20ac}%41//x", "/\u{20ac}A/x"),
            ("/\u{1f600}\u{e9}/../%62", "/b"),
            ("/a/\u{1f600}%2e/", "/a/\u{1f600}./"),
            ("/projects/1/", "/projects/1/"),
        ];
        for (input, want) in table {
            assert_eq!(normalize(input).as_deref(), Ok(want), "input {input}");
        }
    }

    #[test]
    fn rejects_dangerous_paths() {
        let table = [
            ("/admin%2fsettings", PathError::EncodedSeparator),
            ("/admin%2Fsettings", PathError::EncodedSeparator),
            ("/admin%5csettings", PathError::EncodedSeparator),
            ("/admin\\settings", PathError::Backslash),
            ("/admin%00", PathError::ControlCharacter),
            ("/admin\0", PathError::ControlCharacter),
            ("/a%0d%0aX-Injected: 1", PathError::ControlCharacter),
            ("/a%zz", PathError::BadEscape),
            ("/a%4", PathError::BadEscape),
            ("/a%", PathError::BadEscape),
            ("*", PathError::NotAbsolute),
            ("", PathError::NotAbsolute),
            ("admin", PathError::NotAbsolute),
        ];
        for (input, want) in table {
            assert_eq!(normalize(input), Err(want), "input {input:?}");
        }
    }

    #[test]
    fn normalization_is_idempotent() {
        for p in ["/a/../b//c/%2e/%7e", "/x/./y/../z/", "/%41%42"] {
            let once = normalize(p).unwrap().into_owned();
            assert_eq!(normalize(&once).unwrap(), once);
        }
    }
}
