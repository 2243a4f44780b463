//! Request shapes refused before anything else: oversized header sections (431) and the framing
//! ambiguities used for request smuggling (400, and the connection closed: after an ambiguous
//! frame, where the next request starts is unknown). Nothing ambiguous about framing is ever
//! forwarded. Pure.

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
    let smuggling = |why: &'static str| {
        let mut reject = Reject::new(400, "bad_request", why, "ambiguous_framing");
        reject.close = true;
        Err(reject)
    };
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
    // One Content-Length, and one run of digits: no list (`2, 2`), no sign, no repeats, even of
    // equal values (RFC 9112 6.3 lets a server refuse them, and a list is what smuggling uses).
    let one_number = |v: &[u8]| !v.is_empty() && v.len() <= 19 && v.iter().all(u8::is_ascii_digit);
    if cl.len() > 1 || cl.first().is_some_and(|v| !one_number(v)) {
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

    /// The limits count each field as name, value, ": " and CRLF, plus the request target; a
    /// request exactly at a limit passes.
    #[test]
    fn header_limits_are_exact() {
        // "/x" (2) + "x-a: 12345\r\n" (3 + 5 + 4) = 14 bytes, 1 field.
        let r = req(&[("x-a", "12345")]);
        let at = |bytes, count| check_shape(&r, None, bytes, count).map_or_else(|e| e.status, |_| 200);
        assert_eq!((at(14, 1), at(13, 1), at(14, 0)), (200, 431, 431));
        let two = req(&[("x-a", "1"), ("x-b", "22")]);
        let at2 = |bytes| check_shape(&two, None, bytes, 2).map_or_else(|e| e.status, |_| 200);
        assert_eq!((at2(2 + 8 + 9), at2(2 + 8 + 9 - 1)), (200, 431));
    }

    #[test]
    fn chunked_needs_http_1_1() {
        let mut old = req(&[("transfer-encoding", "chunked")]);
        old.set_version(http::Version::HTTP_10);
        assert_eq!(status(&old), 400);
        let mut h2 = req(&[("transfer-encoding", "chunked")]);
        h2.set_version(http::Version::HTTP_2);
        assert_eq!(status(&h2), 200);
        assert_eq!(status(&req(&[("transfer-encoding", "chunked")])), 200);
    }

    #[test]
    fn smuggling_shapes_are_400() {
        let table: [(&[(&str, &str)], u16); 15] = [
            (&[("content-length", "5")], 200),
            (&[("content-length", "0")], 200),
            (&[("transfer-encoding", "chunked")], 200),
            (&[("content-length", "5"), ("transfer-encoding", "chunked")], 400),
            (&[("content-length", "5"), ("content-length", "6")], 400),
            (&[("content-length", "5"), ("content-length", "5")], 400),
            (&[("content-length", "2, 2")], 400),
            (&[("content-length", "2,2")], 400),
            (&[("content-length", "5, 6")], 400),
            (&[("content-length", "-1")], 400),
            (&[("content-length", "+5")], 400),
            (&[("content-length", "0x10")], 400),
            (&[("content-length", "99999999999999999999")], 400),
            (&[("transfer-encoding", "gzip, chunked")], 400),
            (&[("transfer-encoding", "chunked"), ("transfer-encoding", "chunked")], 400),
        ];
        for (headers, want) in table {
            let got = check_shape(&req(headers), None, 8192, 50);
            assert_eq!(got.as_ref().map_or_else(|e| e.status, |_| 200), want, "{headers:?}");
            assert!(got.is_ok() || got.is_err_and(|e| e.close), "an ambiguous frame closes the connection: {headers:?}");
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
