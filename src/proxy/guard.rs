//! Request shapes refused before anything else: oversized header sections (431) and the framing
//! ambiguities used for request smuggling (400). Pure.

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use pingora::http::RequestHeader;

use crate::admission::Reject;

/// Whether the raw HTTP/1 header section names both Content-Length and Transfer-Encoding
/// (Pingora resolves that by dropping Content-Length, so the parsed header no longer shows it).
pub fn raw_framing_conflict(raw: &[u8]) -> bool {
    let (mut cl, mut te) = (false, false);
    for line in raw.split(|b| *b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let name = line[..colon].trim_ascii();
        cl |= name.eq_ignore_ascii_case(b"content-length");
        te |= name.eq_ignore_ascii_case(b"transfer-encoding");
    }
    cl && te
}

/// Checks the header section's size and count and the message framing. `raw` is the HTTP/1
/// header section as received, when there is one.
pub fn check_shape(req: &RequestHeader, raw: Option<&[u8]>, max_header_bytes: usize, max_header_count: usize) -> Result<(), Reject> {
    let count = req.headers.len();
    let bytes: usize = req.headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum::<usize>()
        + req.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if count > max_header_count || bytes > max_header_bytes {
        return Err(Reject::new(
            431,
            "headers_too_large",
            format!("the request headers exceed {max_header_count} fields or {max_header_bytes} bytes"),
            "headers_too_large",
        ));
    }
    let smuggling = |why: &'static str| Err(Reject::new(400, "bad_request", why, "ambiguous_framing"));
    let te: Vec<&[u8]> = req.headers.get_all(TRANSFER_ENCODING).iter().map(|v| v.as_bytes()).collect();
    let cl: Vec<&[u8]> = req.headers.get_all(CONTENT_LENGTH).iter().map(|v| v.as_bytes()).collect();
    // Pingora keeps Transfer-Encoding and drops Content-Length when both came, so the raw
    // bytes need reading only when Transfer-Encoding is there.
    if !te.is_empty() && (!cl.is_empty() || raw.is_some_and(raw_framing_conflict)) {
        return smuggling("a request may not carry both Content-Length and Transfer-Encoding");
    }
    if te.len() > 1 || te.first().is_some_and(|v| !v.trim_ascii().eq_ignore_ascii_case(b"chunked")) {
        return smuggling("the only Transfer-Encoding accepted is a single `chunked`");
    }
    if !te.is_empty() && req.version < http::Version::HTTP_11 {
        return smuggling("Transfer-Encoding needs HTTP/1.1");
    }
    let parsed: Vec<Option<u64>> = cl
        .iter()
        .flat_map(|v| v.split(|b| *b == b','))
        .map(|v| std::str::from_utf8(v.trim_ascii()).ok().and_then(|s| s.parse().ok()))
        .collect();
    if parsed.iter().any(Option::is_none) || parsed.windows(2).any(|w| w[0] != w[1]) {
        return smuggling("Content-Length must be one number");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/x", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn status(r: &RequestHeader) -> u16 {
        check_shape(r, None, 8192, 50).map_or_else(|e| e.status, |_| 200)
    }

    #[test]
    fn the_raw_header_section_reveals_a_dropped_content_length() {
        assert!(raw_framing_conflict(b"POST / HTTP/1.1\r\nContent-Length: 4\r\ntransfer-encoding: chunked\r\n\r\n"));
        assert!(!raw_framing_conflict(b"POST / HTTP/1.1\r\nContent-Length: 4\r\nX-Transfer-Encoding: chunked\r\n\r\n"));
        assert!(!raw_framing_conflict(b"POST /transfer-encoding:x HTTP/1.1\r\nContent-Length: 4\r\n\r\n"));
    }

    #[test]
    fn smuggling_shapes_are_400() {
        let table: [(&[(&str, &str)], u16); 9] = [
            (&[("content-length", "5")], 200),
            (&[("transfer-encoding", "chunked")], 200),
            (&[("content-length", "5"), ("transfer-encoding", "chunked")], 400),
            (&[("content-length", "5"), ("content-length", "6")], 400),
            (&[("content-length", "5"), ("content-length", "5")], 200),
            (&[("content-length", "5, 6")], 400),
            (&[("content-length", "-1")], 400),
            (&[("transfer-encoding", "gzip, chunked")], 400),
            (&[("transfer-encoding", "chunked"), ("transfer-encoding", "chunked")], 400),
        ];
        for (headers, want) in table {
            assert_eq!(status(&req(headers)), want, "{headers:?}");
        }
    }

    #[test]
    fn oversized_header_sections_are_431() {
        let many: Vec<(String, String)> = (0..60).map(|i| (format!("x-h{i}"), "v".into())).collect();
        let refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(status(&req(&refs)), 431);
        let big = "v".repeat(9000);
        assert_eq!(status(&req(&[("x-big", big.as_str())])), 431);
    }
}
