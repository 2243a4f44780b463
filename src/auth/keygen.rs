//! New signing keys for the gateway's ring (`portcullis keygen`): P-256 (ES256) or Ed25519
//! (EdDSA), as PKCS#8 PEM, from the OS random source.

use jsonwebtoken::Algorithm;

use crate::secret::Secret;

/// A new private key for `algorithm` as PKCS#8 PEM (held as a secret: it never prints).
pub fn generate_pem(algorithm: Algorithm) -> Result<Secret, String> {
    use p256::pkcs8::{EncodePrivateKey as _, LineEnding};
    let mut seed = [0u8; 32];
    match algorithm {
        Algorithm::ES256 => {
            // A uniformly random scalar: draw until it is in range (all but ~2^-32 draws are).
            for _ in 0..64 {
                getrandom::fill(&mut seed).map_err(|e| format!("no randomness available: {e}"))?;
                if let Ok(key) = p256::SecretKey::from_slice(&seed) {
                    let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| e.to_string())?;
                    return Ok(Secret::new(pem.as_bytes().to_vec()));
                }
            }
            Err("could not draw a P-256 key".into())
        }
        Algorithm::EdDSA => {
            // PKCS#8 v1 (RFC 8410: the seed alone), as `openssl genpkey -algorithm ed25519` writes.
            use base64::Engine;
            getrandom::fill(&mut seed).map_err(|e| format!("no randomness available: {e}"))?;
            let der = crate::auth::tokens::ed25519_pkcs8_v1(&seed);
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            Ok(Secret::new(format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n").into_bytes()))
        }
        other => Err(format!("keygen makes ES256 and EdDSA keys, not {other:?} (an HMAC secret is any 32+ random bytes)")),
    }
}

/// Writes a new key to `path`, which must not exist yet, with mode 0600.
pub fn write_new_key(path: &std::path::Path, algorithm: Algorithm) -> Result<(), String> {
    use std::io::Write;
    let pem = generate_pem(algorithm)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| format!("cannot create `{}`: {e}", path.display()))?;
    file.write_all(pem.expose()).map_err(|e| format!("cannot write `{}`: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::tokens::RingKey;

    #[test]
    fn generated_keys_load_as_ring_keys_of_their_algorithm_only() {
        for alg in [Algorithm::ES256, Algorithm::EdDSA] {
            let pem = generate_pem(alg).unwrap();
            assert!(std::str::from_utf8(pem.expose()).unwrap().starts_with("-----BEGIN PRIVATE KEY-----"));
            assert!(RingKey::from_pem(Some("k".into()), pem.expose(), alg).is_ok(), "{alg:?}");
            let other = if alg == Algorithm::ES256 { Algorithm::EdDSA } else { Algorithm::ES256 };
            assert!(RingKey::from_pem(None, pem.expose(), other).is_err(), "{alg:?} key read as {other:?}");
        }
        assert!(generate_pem(Algorithm::HS256).is_err());
        assert!(RingKey::from_pem(None, b"not a pem", Algorithm::ES256).is_err());
    }

    #[test]
    fn a_key_file_is_new_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        write_new_key(&path, Algorithm::ES256).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(write_new_key(&path, Algorithm::ES256).is_err(), "never overwrites a key");
    }
}
