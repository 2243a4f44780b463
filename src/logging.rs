//! Log setup through `tracing` (Pingora's `log` records are bridged in).
//!
//! Pingora's own debug and trace records print whole request headers, Authorization included,
//! so they are dropped whatever `RUST_LOG` asks for: a secret must never reach a log line.

use tracing::Level;

use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::prelude::*;

/// How the gateway logs (`logging:` in gateway.yaml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingSettings {
    /// One JSON object per line instead of human text.
    pub json: bool,
    /// A `tracing` filter directive such as `info` or `portcullis=debug,info`.
    pub level: String,
}

/// Whether a record from `target` at `level` may be written.
pub fn allowed(target: &str, level: &Level) -> bool {
    !(target.starts_with("pingora") && *level > Level::INFO)
}

/// Installs the global subscriber on stderr: human text or JSON lines, level from `RUST_LOG`
/// if set, else from the config.
pub fn init(settings: &LoggingSettings) {
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    let pingora_quiet = filter_fn(|m| allowed(m.target(), m.level()));
    if settings.json {
        let layer = tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).with_filter(env).with_filter(pingora_quiet);
        tracing_subscriber::registry().with(layer).init();
    } else {
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let layer =
            tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(std::io::stderr).with_filter(env).with_filter(pingora_quiet);
        tracing_subscriber::registry().with(layer).init();
    }
    // `init` bridges the `log` crate in at TRACE. Pingora calls `log::debug!` several times per
    // request; below this cap those calls stop at one atomic load instead of building a record
    // that the filter above drops anyway (they cost ~5% of a request's instructions).
    log::set_max_level(log::LevelFilter::Info);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pingora_debug_records_are_never_written() {
        assert!(!allowed("pingora_proxy::proxy_h1", &Level::DEBUG));
        assert!(!allowed("pingora_core::protocols", &Level::TRACE));
        assert!(allowed("pingora_core::server", &Level::INFO));
        assert!(allowed("pingora_proxy", &Level::ERROR));
        assert!(allowed("portcullis::proxy", &Level::DEBUG));
    }
}
