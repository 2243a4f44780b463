//! Lowering of `logging:`: format and level filter.

use super::raw::RawLogging;
use super::{problem, Problem};
use crate::logging::LoggingSettings;

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
