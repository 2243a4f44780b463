//! The route table: patterns compiled into a segment trie, so matching a request costs one walk
//! down the path's segments however many routes there are. First match in file order wins.
//!
//! Pure; matching never allocates.

use http::Method;
use std::collections::HashMap;
use std::str::Split;

/// One segment of a route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Must equal the request segment (compared after normalization).
    Literal(String),
    /// `{name}`: any one non-empty segment.
    Param(String),
    /// `**` (last only): zero or more segments.
    Rest,
}

/// Parses a route pattern: exact segments, `{name}` for one segment, `/**` for any rest.
pub fn parse_pattern(pattern: &str) -> Result<Vec<Segment>, String> {
    let Some(body) = pattern.strip_prefix('/') else {
        return Err("a path pattern must start with '/'".into());
    };
    let canonical = super::path::normalize(pattern).map_err(|e| e.to_string())?;
    if canonical != pattern {
        return Err(format!("the path pattern is not in normalized form (it would match as `{canonical}`)"));
    }
    let parts: Vec<&str> = body.split('/').collect();
    let mut segments = Vec::with_capacity(parts.len());
    let mut names: Vec<&str> = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let seg = if *part == "**" {
            if i + 1 != parts.len() {
                return Err("`**` may only be the last segment".into());
            }
            Segment::Rest
        } else if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!("`{part}`: a parameter name is letters, digits and '_'"));
            }
            if names.contains(&name) {
                return Err(format!("parameter `{name}` appears twice"));
            }
            names.push(name);
            Segment::Param(name.to_string())
        } else if part.contains(['{', '}', '*']) {
            return Err(format!("`{part}`: use `{{name}}` for a whole segment or a final `/**`"));
        } else {
            Segment::Literal(part.to_string())
        };
        segments.push(seg);
    }
    Ok(segments)
}

/// The hasher of the trie's segment maps: foldhash, seeded per process. The maps' keys come
/// from gateway.yaml (clients only look up), so a fast non-cryptographic hash is safe here, and
/// SipHash cost more than the rest of the walk.
type FastHash = foldhash::fast::RandomState;

#[derive(Default)]
struct Node {
    literal: HashMap<String, Node, FastHash>,
    param: Option<Box<Node>>,
    /// Routes whose pattern ends exactly here, ascending.
    end: Vec<u32>,
    /// Routes whose pattern is `.../**` from here, ascending.
    rest: Vec<u32>,
    /// The smallest route index anywhere below (prunes the walk once a better match is found).
    min_index: u32,
}

impl Node {
    fn insert(&mut self, segments: &[Segment], index: u32) {
        match segments.split_first() {
            None => self.end.push(index),
            Some((Segment::Rest, _)) => self.rest.push(index),
            Some((Segment::Literal(s), tail)) => self.literal.entry(s.clone()).or_default().insert(tail, index),
            Some((Segment::Param(_), tail)) => self.param.get_or_insert_with(Default::default).insert(tail, index),
        }
    }

    fn finish(&mut self) -> u32 {
        let mut min = u32::MAX;
        for child in self.literal.values_mut() {
            min = min.min(child.finish());
        }
        if let Some(p) = self.param.as_mut() {
            min = min.min(p.finish());
        }
        for &i in self.end.iter().chain(self.rest.iter()) {
            min = min.min(i);
        }
        self.min_index = min;
        min
    }
}

/// Routes in file order plus the trie that finds the first one matching a request.
pub struct RouteTable<R> {
    routes: Vec<R>,
    methods: Vec<Option<Vec<Method>>>,
    root: Node,
}

impl<R> RouteTable<R> {
    /// Builds the table; `entries` are (pattern segments, allowed methods or None for all, route).
    pub fn new(entries: Vec<(Vec<Segment>, Option<Vec<Method>>, R)>) -> Self {
        let mut root = Node::default();
        let mut routes = Vec::with_capacity(entries.len());
        let mut methods = Vec::with_capacity(entries.len());
        for (i, (segments, m, route)) in entries.into_iter().enumerate() {
            root.insert(&segments, i as u32);
            routes.push(route);
            methods.push(m);
        }
        root.finish();
        RouteTable { routes, methods, root }
    }

    /// The first route (in file order) whose pattern and methods match; `path` must be normalized.
    pub fn find(&self, method: &Method, path: &str) -> Option<(usize, &R)> {
        let mut segments = path.split('/');
        segments.next(); // the empty string before the leading '/'
        let mut best = u32::MAX;
        self.walk(&self.root, segments, method, &mut best);
        let i = best as usize;
        self.routes.get(i).map(|r| (i, r))
    }

    /// The route at `index`.
    pub fn get(&self, index: usize) -> Option<&R> {
        self.routes.get(index)
    }

    /// All routes in file order.
    pub fn routes(&self) -> &[R] {
        &self.routes
    }

    fn accepts(&self, index: u32, method: &Method) -> bool {
        match &self.methods[index as usize] {
            None => true,
            Some(list) => list.contains(method),
        }
    }

    fn first_accepting(&self, list: &[u32], method: &Method, best: &mut u32) {
        if let Some(&i) = list.iter().take_while(|&&i| i < *best).find(|&&i| self.accepts(i, method)) {
            *best = i;
        }
    }

    fn walk(&self, node: &Node, mut segments: Split<'_, char>, method: &Method, best: &mut u32) {
        if node.min_index >= *best {
            return;
        }
        self.first_accepting(&node.rest, method, best);
        let Some(head) = segments.next() else {
            self.first_accepting(&node.end, method, best);
            return;
        };
        if let Some(child) = node.literal.get(head) {
            self.walk(child, segments.clone(), method, best);
        }
        if let Some(param) = node.param.as_deref() {
            if !head.is_empty() {
                self.walk(param, segments, method, best);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(patterns: &[(&str, Option<&[&str]>)]) -> RouteTable<&'static str> {
        let entries = patterns
            .iter()
            .enumerate()
            .map(|(i, (p, m))| {
                let methods = m.map(|ms| ms.iter().map(|s| Method::from_bytes(s.as_bytes()).unwrap()).collect());
                let name: &'static str = Box::leak(format!("r{i}").into_boxed_str());
                (parse_pattern(p).unwrap(), methods, name)
            })
            .collect();
        RouteTable::new(entries)
    }

    fn seed() -> RouteTable<&'static str> {
        table(&[
            ("/admin/settings", Some(&["POST"])),
            ("/projects/{id}", Some(&["DELETE"])),
            ("/projects/**", Some(&["GET"])),
            ("/profile", None),
            ("/public/**", None),
        ])
    }

    fn find<'a>(t: &'a RouteTable<&'static str>, m: &str, p: &str) -> Option<&'a str> {
        t.find(&Method::from_bytes(m.as_bytes()).unwrap(), p).map(|(_, r)| *r)
    }

    #[test]
    fn matches_the_seed_routes() {
        let t = seed();
        let cases = [
            ("POST", "/admin/settings", Some("r0")),
            ("GET", "/admin/settings", None),
            ("POST", "/admin/settings/", None),
            ("DELETE", "/projects/7", Some("r1")),
            ("DELETE", "/projects/7/x", None),
            ("DELETE", "/projects/", None),
            ("GET", "/projects", Some("r2")),
            ("GET", "/projects/", Some("r2")),
            ("GET", "/projects/7/tasks/9", Some("r2")),
            ("PUT", "/projects/7", None),
            ("GET", "/profile", Some("r3")),
            ("PATCH", "/profile", Some("r3")),
            ("GET", "/profile/x", None),
            ("GET", "/public", Some("r4")),
            ("GET", "/public/docs/a.html", Some("r4")),
            ("GET", "/publicity", None),
            ("GET", "/", None),
        ];
        for (m, p, want) in cases {
            assert_eq!(find(&t, m, p), want, "{m} {p}");
        }
    }

    #[test]
    fn first_match_in_file_order_wins_across_branches() {
        let t = table(&[("/a/**", Some(&["GET"])), ("/a/b", None), ("/{x}/b", None), ("/**", None)]);
        assert_eq!(find(&t, "GET", "/a/b"), Some("r0"));
        assert_eq!(find(&t, "POST", "/a/b"), Some("r1"));
        assert_eq!(find(&t, "POST", "/z/b"), Some("r2"));
        assert_eq!(find(&t, "POST", "/z/c"), Some("r3"));
        assert_eq!(find(&t, "POST", "/"), Some("r3"));
    }

    #[test]
    fn parameters_never_match_an_empty_segment() {
        let t = table(&[("/u/{id}/x", None)]);
        assert_eq!(find(&t, "GET", "/u/1/x"), Some("r0"));
        assert_eq!(find(&t, "GET", "/u//x"), None);
    }

    #[test]
    fn thousands_of_routes_still_find_the_right_one() {
        let pats: Vec<String> = (0..5000).map(|i| format!("/svc{i}/items/{{id}}")).collect();
        let entries = pats.iter().enumerate().map(|(i, p)| (parse_pattern(p).unwrap(), None, i)).collect();
        let t = RouteTable::new(entries);
        assert_eq!(t.find(&Method::GET, "/svc4321/items/9").map(|(_, r)| *r), Some(4321));
        assert_eq!(t.find(&Method::GET, "/svc5000/items/9"), None);
    }

    #[test]
    fn rejects_bad_patterns() {
        for p in ["projects", "/a/**/b", "/a/{}", "/a/{x}/{x}", "/a*", "/a/{x-y}", "/a/../b", "//a", "/a%2fb"] {
            assert!(parse_pattern(p).is_err(), "{p}");
        }
        assert_eq!(parse_pattern("/**").unwrap(), vec![Segment::Rest]);
    }
}
