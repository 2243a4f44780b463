//! Where each key and value of a YAML document sits (line and column), by dotted key path.
//!
//! `serde_yaml` parses and deserializes the config, but its `Value` carries no positions; this
//! index, built from yaml-rust2's event stream, lets every validation problem point at its
//! `FILE:LINE:COL`. It never keeps scalar contents: a config may hold secrets.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column in the config file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// Positions of every key (and its value) in a YAML document, keyed by path like `routes[2].path`.
#[derive(Debug, Default)]
pub struct Locations {
    keys: HashMap<String, Pos>,
    values: HashMap<String, Pos>,
}

impl Locations {
    /// Indexes `text`; a document that does not parse yields an empty index.
    pub fn index(text: &str) -> Locations {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        // Syntax errors are reported by serde_yaml; positions are best effort.
        let _ = parser.load(&mut builder, false);
        builder.locations
    }

    /// The position of the key at `path` (or of the nearest ancestor that has one).
    pub fn key(&self, path: &str) -> Pos {
        self.lookup(path, &self.keys)
    }

    /// The position of the value at `path` (or of the nearest ancestor that has one).
    pub fn value(&self, path: &str) -> Pos {
        self.lookup(path, &self.values)
    }

    fn lookup(&self, path: &str, map: &HashMap<String, Pos>) -> Pos {
        let mut p = path;
        loop {
            if let Some(pos) = map.get(p).or_else(|| self.values.get(p)) {
                return *pos;
            }
            match parent(p) {
                Some(up) => p = up,
                None => return Pos { line: 1, col: 1 },
            }
        }
    }
}

/// The path one level up: `a.b[2]` -> `a.b`, `a.b` -> `a`, `a` -> None.
fn parent(path: &str) -> Option<&str> {
    let cut = path.rfind(['.', '['])?;
    Some(&path[..cut])
}

/// Joins a child key onto a path.
pub fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Joins a sequence index onto a path.
pub fn join_index(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

enum Frame {
    Map { path: String, pending_key: Option<String> },
    Seq { path: String, next: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    locations: Locations,
}

impl Builder {
    fn pos(mark: Marker) -> Pos {
        // yaml-rust2 reports 1-based lines and 0-based columns.
        Pos { line: mark.line(), col: mark.col() + 1 }
    }

    /// Called for every node that is a value; returns the node's own path.
    fn value_path(&mut self, mark: Marker) -> Option<String> {
        let path = match self.stack.last_mut() {
            None => String::new(),
            Some(Frame::Map { path, pending_key }) => {
                let key = pending_key.take()?;
                join_key(path, &key)
            }
            Some(Frame::Seq { path, next }) => {
                let p = join_index(path, *next);
                *next += 1;
                p
            }
        };
        self.locations.values.insert(path.clone(), Self::pos(mark));
        Some(path)
    }

    /// A scalar in key position of a mapping records a key; returns true if it was one.
    fn take_key(&mut self, text: &str, mark: Marker) -> bool {
        if let Some(Frame::Map { path, pending_key }) = self.stack.last_mut() {
            if pending_key.is_none() {
                let full = join_key(path, text);
                self.locations.keys.insert(full, Self::pos(mark));
                *pending_key = Some(text.to_string());
                return true;
            }
        }
        false
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(text, ..) if self.take_key(&text, mark) => {}
            Event::Scalar(..) => {
                self.value_path(mark);
            }
            Event::Alias(_) => {
                self.value_path(mark);
            }
            Event::MappingStart(..) => {
                // A mapping used as a key has no useful path; index it under a placeholder.
                let path = self.value_path(mark).unwrap_or_else(|| "?".into());
                self.stack.push(Frame::Map { path, pending_key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.value_path(mark).unwrap_or_else(|| "?".into());
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str =
        "server:\n  listen: \"127.0.0.1:8080\"\n  threads: 2\nroutes:\n  - { name: a, path: /x }\n  - name: b\n    path: /y\n";

    #[test]
    fn indexes_block_and_flow_keys() {
        let loc = Locations::index(DOC);
        assert_eq!(loc.key("server"), Pos { line: 1, col: 1 });
        assert_eq!(loc.key("server.threads"), Pos { line: 3, col: 3 });
        assert_eq!(loc.value("server.threads"), Pos { line: 3, col: 12 });
        assert_eq!(loc.key("routes[0].path"), Pos { line: 5, col: 16 });
        assert_eq!(loc.key("routes[1].path"), Pos { line: 7, col: 5 });
    }

    #[test]
    fn missing_paths_fall_back_to_the_nearest_ancestor() {
        let loc = Locations::index(DOC);
        assert_eq!(loc.key("routes[1].nope"), loc.value("routes[1]"));
        assert_eq!(loc.key("nothing.here"), Pos { line: 1, col: 1 });
    }
}
