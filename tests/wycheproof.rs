//! Project Wycheproof's signature vectors (tests/vectors/wycheproof, Apache-2.0, from
//! C2SP/wycheproof) through the gateway's own key import and verification path for provider
//! keys: each group's public key goes in as a JWKS (`idp::parse_jwks`, which fixes the
//! algorithms the key admits), and every signature is checked as a JWS signature is. RSA
//! (PKCS#1 v1.5 and PSS), ECDSA P-256 and P-384 (IEEE P1363, including the high-S and
//! malleability cases; and DER signatures, which a JWS verifier must refuse) and Ed25519.
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its reason

use base64::Engine;
use jsonwebtoken::Algorithm;
use portcullis::auth::idp::parse_jwks;
use serde_json::{json, Value};

const ALL: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

fn load(name: &str) -> Value {
    let path = format!("{}/tests/vectors/wycheproof/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A group's public key as a JWK: the one given, or built from the EC point.
fn jwk(group: &Value, crv: &str, size: usize) -> Value {
    if let Some(j) = group.get("publicKeyJwk").or_else(|| group.get("keyJwk")) {
        let mut j = j.clone();
        j.as_object_mut().unwrap().remove("d"); // only ever a public key
        return j;
    }
    let coord = |k: &str| {
        let raw = hex(group["publicKey"][k].as_str().unwrap());
        let trimmed = &raw[raw.len().saturating_sub(size)..];
        let mut padded = vec![0u8; size - trimmed.len()];
        padded.extend_from_slice(trimmed);
        b64(&padded)
    };
    json!({"kty": "EC", "crv": crv, "x": coord("wx"), "y": coord("wy")})
}

/// Runs one vector file: (valid, invalid, acceptable) counts; panics on the first wrong verdict.
fn run(file: &str, alg: Algorithm, crv: &str, size: usize, der: bool) -> (usize, usize, usize) {
    let data = load(file);
    let (mut valid, mut invalid, mut acceptable) = (0, 0, 0);
    for group in data["testGroups"].as_array().unwrap() {
        let jwks = json!({"keys": [jwk(group, crv, size)]}).to_string();
        let (keys, skipped) = parse_jwks(jwks.as_bytes(), &ALL).unwrap();
        assert!(skipped.is_empty(), "{file}: key refused: {skipped:?}");
        let key = &keys.keys()[0];
        for t in group["tests"].as_array().unwrap() {
            let (msg, sig) = (hex(t["msg"].as_str().unwrap()), hex(t["sig"].as_str().unwrap()));
            let verdict = key.verifies(&msg, &b64(&sig), alg);
            let id = t["tcId"].as_u64().unwrap();
            match (t["result"].as_str().unwrap(), der) {
                // A DER-encoded ECDSA signature is never a JWS signature, valid or not.
                (_, true) => {
                    assert!(!verdict, "{file} tc{id}: a DER signature was accepted");
                    invalid += 1;
                }
                ("valid", false) => {
                    assert!(verdict, "{file} tc{id} ({}): a valid signature was refused", t["comment"]);
                    valid += 1;
                }
                ("invalid", false) => {
                    assert!(!verdict, "{file} tc{id} ({}): an invalid signature was accepted", t["comment"]);
                    invalid += 1;
                }
                _ => acceptable += 1,
            }
            // The same signature under another algorithm is never accepted.
            let other = if alg == Algorithm::EdDSA { Algorithm::ES256 } else { Algorithm::EdDSA };
            assert!(!key.verifies(&msg, &b64(&sig), other), "{file} tc{id}: accepted as {other:?}");
        }
    }
    println!("{file}: {valid} valid accepted, {invalid} invalid refused, {acceptable} acceptable");
    (valid, invalid, acceptable)
}

#[test]
fn ecdsa_p256_p1363_including_high_s_and_malleability() {
    let (v, i, _) = run("ecdsa_secp256r1_sha256_p1363_test.json", Algorithm::ES256, "P-256", 32, false);
    assert!(v > 100 && i > 80);
}

#[test]
fn ecdsa_p256_der_signatures_are_never_jws_signatures() {
    let (_, i, _) = run("ecdsa_secp256r1_sha256_test.json", Algorithm::ES256, "P-256", 32, true);
    assert!(i > 400);
}

#[test]
fn ecdsa_p384_p1363() {
    let (v, i, _) = run("ecdsa_secp384r1_sha384_p1363_test.json", Algorithm::ES384, "P-384", 48, false);
    assert!(v > 100 && i > 80);
}

#[test]
fn ed25519() {
    let (v, i, _) = run("ed25519_test.json", Algorithm::EdDSA, "Ed25519", 32, false);
    assert!(v > 0 && i > 0);
}

#[test]
fn rsa_pkcs1_v15_2048() {
    let (v, i, _) = run("rsa_signature_2048_sha256_test.json", Algorithm::RS256, "", 0, false);
    assert!(v > 0 && i > 0);
}

#[test]
fn rsa_pss_2048() {
    let (v, i, _) = run("rsa_pss_2048_sha256_mgf1_32_test.json", Algorithm::PS256, "", 0, false);
    assert!(v > 0 && i > 0);
}

/// Wycheproof's JSON Web Signature vectors for the asymmetric algorithms: compact JWS tokens
/// under each group's public JWK. The algorithm is the header's, and the key must admit it.
/// Known upstream mislabels (the vectors' README) are skipped: tc367 and tc370 equal a valid
/// vector; tc372 and tc373 contain `?` yet are marked valid; tc346 and tc350 pair a PS256 key
/// with a PS384 header. A group whose key this gateway refuses to import (an RSA key under 2048
/// bits) must have every token refused.
#[test]
fn json_web_signatures() {
    const MISLABELED: [u64; 6] = [346, 350, 367, 370, 372, 373];
    let data = load("json_web_signature_test.json");
    let (mut accepted, mut refused, mut policy) = (0, 0, 0);
    for group in data["testGroups"].as_array().unwrap() {
        let Some(public) = group.get("public") else { continue };
        if public["kty"] == "oct" {
            continue; // HMAC: the gateway never takes a symmetric key from a provider (tests/vectors/wycheproof_hs256.json covers its own)
        }
        let (keys, _) = parse_jwks(json!({"keys": [public]}).to_string().as_bytes(), &ALL).unwrap();
        for t in group["tests"].as_array().unwrap() {
            let id = t["tcId"].as_u64().unwrap();
            let Some(jws) = t["jws"].as_str() else { continue };
            if MISLABELED.contains(&id) {
                continue;
            }
            let verdict = (|| {
                let key = keys.keys().first()?;
                let (message, sig) = jws.rsplit_once('.')?;
                let header: Value =
                    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(message.split('.').next()?).ok()?)
                        .ok()?;
                let name = header["alg"].as_str()?;
                let alg = ALL.into_iter().find(|a| format!("{a:?}") == name)?;
                Some(key.verifies(message.as_bytes(), sig, alg))
            })()
            .unwrap_or(false);
            let valid = t["result"] == "valid";
            if keys.is_empty() {
                assert!(!verdict);
                policy += 1;
            } else if valid {
                assert!(verdict, "tc{id} ({}): a valid JWS was refused", t["comment"]);
                accepted += 1;
            } else {
                assert!(!verdict, "tc{id} ({}): an invalid JWS was accepted", t["comment"]);
                refused += 1;
            }
        }
    }
    println!("JWS vectors: {accepted} valid accepted, {refused} invalid refused, {policy} refused with their key (RSA under 2048 bits)");
    assert!(accepted > 0 && refused > 0);
}
