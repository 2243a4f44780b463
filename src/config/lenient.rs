//! Deserialization that keeps going: every problem in a section is collected, not just the
//! first, by recording an error, removing the offending key and trying again.
//!
//! Error texts never repeat a value from the file (it may be a secret); keys are fine.

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use serde_yaml::Value;

use super::locate::{join_index, join_key};
use super::{did_you_mean, Problem, Where};

/// Deserializes `value` (found at `base`) into `T`, pushing a problem for each error.
/// Returns `None` if there was any problem.
pub fn deserialize<T: DeserializeOwned>(mut value: Value, base: &str, problems: &mut Vec<Problem>) -> Option<T> {
    let mut removed: Vec<String> = Vec::new();
    let mut failed = false;
    for _ in 0..64 {
        let err = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(t) => return (!failed).then_some(t),
            Err(e) => e,
        };
        failed = true;
        let segments: Vec<Segment> = err.path().iter().cloned().collect();
        let message = err.inner().to_string();
        let path = render(base, &segments);
        if let Some(field) = backticked_after(&message, "unknown field `") {
            let key_path =
                if matches!(segments.last(), Some(Segment::Map { key }) if *key == field) { path.clone() } else { join_key(&path, &field) };
            let expected = backticked_list(&message);
            problems.push(Problem::new(
                Where::Key(key_path),
                format!("unknown key `{field}`{}", did_you_mean(&field, expected.iter().map(String::as_str))),
            ));
            let mut target = segments.clone();
            if !matches!(target.last(), Some(Segment::Map { key }) if *key == field) {
                target.push(Segment::Map { key: field.clone() });
            }
            if !remove(&mut value, &target) {
                return None;
            }
            continue;
        }
        if let Some(field) = backticked_after(&message, "missing field `") {
            let full = join_key(&path, &field);
            if !removed.contains(&full) {
                problems.push(Problem::new(Where::Value(path), format!("missing required key `{field}`")));
            }
            return None;
        }
        problems.push(Problem::new(Where::Value(path.clone()), sanitize(&message)));
        if segments.is_empty() || !remove(&mut value, &segments) {
            return None;
        }
        removed.push(path);
    }
    None
}

fn render(base: &str, segments: &[Segment]) -> String {
    let mut path = base.to_string();
    for s in segments {
        path = match s {
            Segment::Seq { index } => join_index(&path, *index),
            Segment::Map { key } => join_key(&path, key),
            Segment::Enum { variant } => join_key(&path, variant),
            Segment::Unknown => path,
        };
    }
    path
}

/// Removes the node at `segments` from `value`; false if there is no such node.
fn remove(value: &mut Value, segments: &[Segment]) -> bool {
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut node = value;
    for s in parents {
        node = match (s, node) {
            (Segment::Map { key }, Value::Mapping(m)) => match m.get_mut(key.as_str()) {
                Some(v) => v,
                None => return false,
            },
            (Segment::Seq { index }, Value::Sequence(v)) => match v.get_mut(*index) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, node) {
        (Segment::Map { key }, Value::Mapping(m)) => m.remove(key.as_str()).is_some(),
        (Segment::Seq { index }, Value::Sequence(v)) if *index < v.len() => {
            v.remove(*index);
            true
        }
        _ => false,
    }
}

/// The text between `prefix` and the next backtick.
fn backticked_after(message: &str, prefix: &str) -> Option<String> {
    let start = message.find(prefix)? + prefix.len();
    let end = message[start..].find('`')?;
    Some(message[start..start + end].to_string())
}

/// Every backticked word after "expected".
fn backticked_list(message: &str) -> Vec<String> {
    let Some(at) = message.find("expected") else {
        return Vec::new();
    };
    message[at..].split('`').skip(1).step_by(2).map(str::to_string).collect()
}

/// serde's messages quote the offending value ("invalid type: string \"hunter2\", expected
/// u64"); keep only what kind of thing it was and what was expected.
fn sanitize(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let expected = rest.rsplit_once(", expected ").map(|(_, e)| e).unwrap_or("something else");
            let found = rest.split([' ', ',']).next().unwrap_or("value");
            let found = match found {
                "unit" => "nothing",
                "floating" => "a number with a fraction",
                "string" => "a string",
                "integer" => "an integer",
                "boolean" => "a boolean",
                "map" => "a mapping",
                "sequence" => "a list",
                _ => "a value",
            };
            return if prefix == "invalid value: " {
                format!("invalid value: expected {expected}")
            } else {
                format!("expected {expected}, found {found}")
            };
        }
    }
    message.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct S {
        threads: usize,
        listen: String,
        #[serde(default)]
        inner: Option<Inner>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        depth: u32,
    }

    fn run(yaml: &str) -> (Option<S>, Vec<String>) {
        let v: Value = serde_yaml::from_str(yaml).unwrap();
        let mut problems = Vec::new();
        let got = deserialize::<S>(v, "server", &mut problems);
        (got, problems.iter().map(|p| format!("{}: {}", p.place.path(), p.message)).collect())
    }

    #[test]
    fn collects_every_unknown_key_with_suggestions() {
        let (got, mut p) = run("threads: 1\nlisten: x\nthredas: 2\nlsiten: y\ninner: { dpeth: 1, depth: 2 }\n");
        assert!(got.is_none());
        p.sort();
        assert_eq!(
            p,
            vec![
                "server.inner.dpeth: unknown key `dpeth` (did you mean `depth`?)",
                "server.lsiten: unknown key `lsiten` (did you mean `listen`?)",
                "server.thredas: unknown key `thredas` (did you mean `threads`?)",
            ]
        );
    }

    #[test]
    fn type_errors_do_not_echo_values_and_do_not_cascade() {
        let (_, p) = run("threads: hunter2-secret\nlisten: [1]\n");
        assert_eq!(p, vec!["server.threads: expected usize, found a string", "server.listen: expected a string, found a list"]);
        assert!(p.iter().all(|m| !m.contains("hunter2")));
    }

    #[test]
    fn reports_missing_required_keys() {
        let (_, p) = run("threads: 1\n");
        assert_eq!(p, vec!["server: missing required key `listen`"]);
    }

    #[test]
    fn accepts_a_good_section() {
        let (got, p) = run("threads: 3\nlisten: a\n");
        assert!(p.is_empty());
        assert_eq!(got.unwrap().threads, 3);
    }
}
