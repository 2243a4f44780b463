//! Lowering of `logging:`: format and level filter.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{problem, Problem};
use crate::logging::LoggingSettings;

/// `metrics:`: whether the admin listener serves /metrics (and the request path records them).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawMetrics {
    pub enabled: bool,
}

impl Default for RawMetrics {
    fn default() -> Self {
        RawMetrics { enabled: true }
    }
}

/// `logging:`: log format and level (`RUST_LOG` overrides the level).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawLogging {
    pub format: String,
    pub level: String,
}

impl Default for RawLogging {
    fn default() -> Self {
        RawLogging { format: "text".into(), level: "info".into() }
    }
}

pub(super) fn lower_logging(l: &RawLogging, p: &mut Vec<Problem>) -> Option<LoggingSettings> {
    let json = match l.format.as_str() {
        "text" => false,
        "json" => true,
        other => {
            problem(p, "logging.format", format!("unknown format `{other}`: use `text` or `json`"));
            return None;
        }
    };
    if tracing_subscriber::EnvFilter::try_new(&l.level).is_err() {
        problem(p, "logging.level", "not a log level or filter (e.g. `info`, `warn`, `portcullis=debug,info`)");
        return None;
    }
    Some(LoggingSettings { json, level: l.level.clone() })
}
