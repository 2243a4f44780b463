//! Server-sent events (the WHATWG event-stream format), parsed incrementally: bytes go in as
//! they arrive, whole events come out with their raw bytes (so a relay can pass an event through
//! unchanged). Pure.

/// One event: its `event` name, its `data` lines joined by `\n`, and its bytes as received
/// (blank line included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event: Option<String>,
    pub data: String,
    pub raw: Vec<u8>,
}

/// An event grew past the parser's limit without ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

/// An incremental parser. Lines end in LF, CRLF or CR; a blank line ends an event.
#[derive(Debug)]
pub struct Parser {
    buf: Vec<u8>,
    /// Where the next unscanned line starts in `buf`.
    scanned: usize,
    max_event: usize,
}

impl Parser {
    /// A parser refusing events longer than `max_event` bytes.
    pub fn new(max_event: usize) -> Self {
        Parser { buf: Vec::new(), scanned: 0, max_event }
    }

    /// The whole events `chunk` completes; a partial one stays buffered.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Event>, TooLarge> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some((line_end, next)) = line_at(&self.buf, self.scanned) {
            let blank = line_end == self.scanned;
            self.scanned = next;
            if blank {
                events.push(parse_event(&self.buf[start..next]));
                start = next;
            }
        }
        self.buf.drain(..start);
        self.scanned -= start;
        if self.buf.len() > self.max_event {
            return Err(TooLarge);
        }
        Ok(events.into_iter().flatten().collect())
    }

    /// What is buffered of an event that has not ended (at the end of a stream).
    pub fn rest(&self) -> &[u8] {
        &self.buf
    }

    /// The buffered bytes as a last event (a stream that ended without its blank line).
    pub fn finish(&mut self) -> Option<Event> {
        let rest = std::mem::take(&mut self.buf);
        self.scanned = 0;
        parse_event(&rest)
    }
}

/// The end of the line starting at `from` and where the next one starts, if it is complete.
/// A CR at the very end may be the first half of a CRLF: it waits for the next byte.
fn line_at(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let i = from + buf.get(from..)?.iter().position(|&b| b == b'\n' || b == b'\r')?;
    if buf[i] == b'\n' {
        return Some((i, i + 1));
    }
    match buf.get(i + 1) {
        Some(b'\n') => Some((i, i + 2)),
        Some(_) => Some((i, i + 1)),
        None => None,
    }
}

/// One event's fields; None when it carries no data (a comment or an empty block).
fn parse_event(raw: &[u8]) -> Option<Event> {
    let text = String::from_utf8_lossy(raw);
    let mut event = None;
    let mut data: Option<String> = None;
    for line in text.split(['\n', '\r']) {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => event = Some(value.to_string()),
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_string()),
            },
            _ => {}
        }
    }
    Some(Event { event, data: data?, raw: raw.to_vec() })
}

/// An event's bytes: `event: NAME` (if any) and one `data:` line per line of `data`.
pub fn encode(event: Option<&str>, data: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    if let Some(e) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(e.as_bytes());
        out.push(b'\n');
    }
    for line in data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(p: &mut Parser, chunks: &[&[u8]]) -> Vec<(Option<String>, String)> {
        chunks.iter().flat_map(|c| p.feed(c).unwrap()).map(|e| (e.event, e.data)).collect()
    }

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let stream = b"event: message_start\ndata: {\"a\":1}\n\n: comment\n\ndata: x\ndata: y\n\ndata:[DONE]\n\n";
        let expected =
            vec![(Some("message_start".to_string()), "{\"a\":1}".to_string()), (None, "x\ny".to_string()), (None, "[DONE]".to_string())];
        for cut in 0..stream.len() {
            let mut p = Parser::new(1 << 20);
            assert_eq!(all(&mut p, &[&stream[..cut], &stream[cut..]]), expected, "cut at {cut}");
            assert!(p.rest().is_empty());
        }
        // Byte by byte.
        let mut p = Parser::new(1 << 20);
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(all(&mut p, &bytes), expected);
    }

    #[test]
    fn every_line_ending_ends_lines_and_raw_bytes_are_kept() {
        for (stream, raw_first) in [
            (&b"data: a\r\n\r\ndata: b\r\n\r\n"[..], &b"data: a\r\n\r\n"[..]),
            (b"data: a\r\rdata: b\r\r", b"data: a\r\r"),
            (b"data: a\n\ndata: b\n\n", b"data: a\n\n"),
        ] {
            let mut p = Parser::new(1024);
            let mut events = p.feed(stream).unwrap();
            // A CR-only stream's last CR may be half of a CRLF: that event comes at the end.
            events.extend(p.finish());
            assert_eq!(events.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(), ["a", "b"]);
            assert_eq!(events[0].raw, raw_first);
        }
        // A CR at the end of a chunk waits: it may be half of a CRLF.
        let mut p = Parser::new(1024);
        assert!(p.feed(b"data: a\r\n\r").unwrap().is_empty());
        assert_eq!(p.feed(b"\n").unwrap().len(), 1);
    }

    #[test]
    fn unfinished_events_wait_and_oversized_ones_are_refused() {
        let mut p = Parser::new(16);
        assert!(p.feed(b"data: partial").unwrap().is_empty());
        assert_eq!(p.rest(), b"data: partial");
        assert_eq!(p.finish().map(|e| e.data).as_deref(), Some("partial"));
        assert!(p.feed(b"data: 0123456789abcdef").is_err());
        // The limit itself is allowed; one byte more is not.
        assert!(Parser::new(13).feed(b"data: partial").is_ok());
        assert!(Parser::new(12).feed(b"data: partial").is_err());
    }

    #[test]
    fn encoding_round_trips() {
        let bytes = encode(Some("ping"), "line one\nline two");
        let mut p = Parser::new(1024);
        let e = p.feed(&bytes).unwrap().remove(0);
        assert_eq!((e.event.as_deref(), e.data.as_str()), (Some("ping"), "line one\nline two"));
        assert_eq!(encode(None, "[DONE]"), b"data: [DONE]\n\n");
    }
}
