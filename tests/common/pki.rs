//! Certificates made at test time by `openssl` (scripts/ensure-deps installs it).

use std::path::Path;

/// Runs `openssl` with `args` in `dir`; panics with its error output if it fails.
pub fn openssl(args: &[&str], dir: &Path) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed (scripts/ensure-deps installs it)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A self-signed P-256 certificate valid for one day: `cert` and `key` in `dir`, for `subject`
/// (`/CN=...`), with `subjectAltName=san` if given.
pub fn self_signed(dir: &Path, subject: &str, san: Option<&str>, key: &str, cert: &str) {
    let mut args =
        vec!["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", subject];
    let san = san.map(|s| format!("subjectAltName={s}"));
    if let Some(s) = &san {
        args.extend(["-addext", s.as_str()]);
    }
    args.extend(["-keyout", key, "-out", cert]);
    openssl(&args, dir);
}
