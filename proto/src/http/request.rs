//! The request head: request line and header fields (RFC 9112 §3, §5), parsed without copying
//! from the server's read buffer, and the questions the server asks of it.
//!
//! The parser is total and bounded: it looks at no more than [`Limits::max_head_size`] bytes,
//! keeps at most [`Limits::max_headers`] fields and refuses a target longer than
//! [`Limits::max_uri_len`] as soon as it sees one, complete head or not — each with its own
//! [`HttpError`] so the server can answer 431, 414 or 400. It is strict where leniency lets
//! requests be smuggled (whitespace before the colon, obs-fold, control characters, duplicate
//! Host, Content-Length with Transfer-Encoding) and lenient where real clients are sloppy (bare
//! LF line endings, empty lines before the request line).

use super::{HttpError, Version};

/// Size limits for one request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Request line, header fields and the blank line, in bytes.
    pub max_head_size: usize,
    /// Header fields.
    pub max_headers: usize,
    /// Bytes of the request target.
    pub max_uri_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_size: 8 * 1024,
            max_headers: 64,
            max_uri_len: 4 * 1024,
        }
    }
}

/// One header field. Names are tokens (ASCII); values are bytes, since obs-text is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: &'a str,
    /// Without surrounding whitespace.
    pub value: &'a [u8],
}

/// A parsed request head, borrowing from the buffer it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead<'a> {
    pub method: &'a str,
    /// The request target as sent.
    pub target: &'a str,
    /// The path part of the target (still percent-encoded; see [`super::path::decode_path`]).
    /// For an absolute-form target (`http://host/p`) this is `/p`.
    pub path: &'a str,
    /// What follows the first `?`, if there is one.
    pub query: Option<&'a str>,
    pub version: Version,
    pub headers: Vec<Header<'a>>,
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| is_tchar(b))
}

/// field-vchar, SP, HTAB and obs-text.
fn is_field_value_byte(byte: u8) -> bool {
    byte == b'\t' || byte == b' ' || (0x21..=0x7e).contains(&byte) || byte >= 0x80
}

fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// The next line of `buf` from `start`: its content (without CR LF or LF) and where the next
/// line starts; `None` when no LF has arrived yet.
fn next_line(buf: &[u8], start: usize) -> Option<(&[u8], usize)> {
    let newline = start + buf.get(start..)?.iter().position(|&b| b == b'\n')?;
    let line = &buf[start..newline];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some((line, newline + 1))
}

/// ASCII bytes as `&str`. Callers have checked the bytes are ASCII.
fn ascii(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("")
}

impl<'a> RequestHead<'a> {
    /// Parses a request head from the start of `buf`. Returns `Ok(None)` when the head is not
    /// complete yet (read more and call again), or the head and the number of bytes it took —
    /// whatever follows (a body, pipelined requests) is left for the caller.
    pub fn parse(
        buf: &'a [u8],
        limits: &Limits,
    ) -> Result<Option<(RequestHead<'a>, usize)>, HttpError> {
        let window = &buf[..buf.len().min(limits.max_head_size)];
        // Without the end of the head in sight: too large if the window is full, else wait.
        let need_more = || -> Result<Option<(RequestHead<'a>, usize)>, HttpError> {
            if buf.len() >= limits.max_head_size {
                Err(HttpError::HeadTooLarge(limits.max_head_size))
            } else {
                Ok(None)
            }
        };

        // RFC 9112 §2.2: ignore empty lines before the request line.
        let mut position = 0;
        let (request_line, mut position) = loop {
            match next_line(window, position) {
                Some((&[], next)) => position = next,
                Some(found) => break found,
                None => {
                    // A target already past its limit need not be waited for.
                    check_partial_request_line(window, position, limits)?;
                    return need_more();
                }
            }
        };
        let (method, target, version) = parse_request_line(request_line, limits)?;

        let mut headers = Vec::new();
        loop {
            let Some((line, next)) = next_line(window, position) else {
                return need_more();
            };
            position = next;
            if line.is_empty() {
                break;
            }
            if headers.len() == limits.max_headers {
                return Err(HttpError::TooManyHeaders(limits.max_headers));
            }
            headers.push(parse_header_line(line)?);
        }

        let hosts = headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("host"))
            .count();
        if hosts > 1 {
            return Err(HttpError::DuplicateHost);
        }
        if hosts == 0 && version == Version::Http11 {
            return Err(HttpError::MissingHost);
        }

        let (path, query) = split_target(target);
        Ok(Some((
            RequestHead {
                method,
                target,
                path,
                query,
                version,
                headers,
            },
            position,
        )))
    }

    /// The first value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// The first value of a header, if it is UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&'a str> {
        self.header(name)
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    /// Every value of a header, in order.
    pub fn headers_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// Whether a comma-separated list header (`Connection`, `Upgrade`, ...) contains `token`,
    /// case-insensitively, across all its field lines.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers_named(name).any(|value| {
            value
                .split(|&b| b == b',')
                .any(|item| trim_ows(item).eq_ignore_ascii_case(token.as_bytes()))
        })
    }

    /// The Host header (`host[:port]`).
    pub fn host(&self) -> Option<&'a str> {
        self.header_str("host")
    }

    /// Whether the connection stays open after this exchange: `Connection: close` ends it,
    /// `Connection: keep-alive` keeps an HTTP/1.0 one, and otherwise HTTP/1.1 persists and
    /// HTTP/1.0 does not.
    pub fn keep_alive(&self) -> bool {
        if self.has_token("connection", "close") {
            return false;
        }
        match self.version {
            Version::Http11 => true,
            Version::Http10 => self.has_token("connection", "keep-alive"),
        }
    }

    /// What the client expects before sending a body.
    pub fn expectation(&self) -> Expectation {
        match self.header("expect") {
            None => Expectation::None,
            Some(value) if trim_ows(value).eq_ignore_ascii_case(b"100-continue") => {
                Expectation::Continue
            }
            Some(_) => Expectation::Unsupported,
        }
    }

    /// How the request body is framed (RFC 9112 §6). Transfer-Encoding with Content-Length is
    /// refused rather than resolved, as are differing Content-Length values: both are how
    /// requests get smuggled past proxies.
    pub fn body(&self) -> Result<RequestBody, HttpError> {
        let transfer_encoding = self.headers_named("transfer-encoding").next().is_some();
        let mut lengths = self.headers_named("content-length").peekable();
        if transfer_encoding {
            if lengths.peek().is_some() {
                return Err(HttpError::ConflictingFraming);
            }
            if self.version == Version::Http10 {
                return Err(HttpError::UnsupportedTransferEncoding);
            }
            // The final coding must be chunked; we implement no other coding.
            let codings: Vec<&[u8]> = self
                .headers_named("transfer-encoding")
                .flat_map(|value| value.split(|&b| b == b','))
                .map(trim_ows)
                .filter(|coding| !coding.is_empty())
                .collect();
            return match codings.as_slice() {
                [only] if only.eq_ignore_ascii_case(b"chunked") => Ok(RequestBody::Chunked),
                _ => Err(HttpError::UnsupportedTransferEncoding),
            };
        }
        let mut length = None;
        for value in lengths {
            // A list `5, 5` is allowed when all members agree (RFC 9110 §8.6).
            for item in value.split(|&b| b == b',') {
                let parsed = parse_decimal(trim_ows(item)).ok_or(HttpError::BadContentLength)?;
                if length.is_some_and(|previous| previous != parsed) {
                    return Err(HttpError::BadContentLength);
                }
                length = Some(parsed);
            }
        }
        Ok(match length {
            None | Some(0) => RequestBody::None,
            Some(length) => RequestBody::Length(length),
        })
    }

    /// Resolves a `Range` header against a representation of `len` bytes. `Ok(None)`: no Range
    /// header, or a unit other than bytes (send the whole thing, 200).
    /// [`RangeError::Unsatisfiable`] should be answered 416 with `Content-Range: bytes */len`;
    /// the other errors mean the header is to be ignored (RFC 9110 §14.2 lets a server do
    /// that, and we serve no multipart ranges).
    pub fn range(&self, len: u64) -> Result<Option<ByteRange>, RangeError> {
        match self.header("range") {
            None => Ok(None),
            Some(value) => ByteRange::parse(value, len),
        }
    }

    /// Whether `If-None-Match` matches the representation's `etag` (weak comparison, as RFC
    /// 9110 §13.1.2 prescribes): if so, a GET/HEAD is answered 304 Not Modified.
    pub fn if_none_match(&self, etag: &str) -> bool {
        let ours = opaque_tag(etag.as_bytes());
        self.headers_named("if-none-match")
            .any(|value| entity_tags_match(value, ours))
    }
}

/// A decimal number without sign, at most 19 digits (so it fits u64).
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |acc, &digit| acc * 10 + u64::from(digit - b'0')),
    )
}

/// An entity tag without its weakness prefix: `W/"x"` and `"x"` both give `"x"`.
fn opaque_tag(tag: &[u8]) -> &[u8] {
    tag.strip_prefix(b"W/").unwrap_or(tag)
}

/// Matches `*` or a list of entity tags against one opaque tag.
fn entity_tags_match(list: &[u8], ours: &[u8]) -> bool {
    let list = trim_ows(list);
    if list == b"*" {
        return true;
    }
    let mut rest = list;
    loop {
        while let [b' ' | b'\t' | b',', tail @ ..] = rest {
            rest = tail;
        }
        if rest.is_empty() {
            return false;
        }
        let tag_start = rest;
        if let Some(tail) = rest.strip_prefix(b"W/") {
            rest = tail;
        }
        let Some(tail) = rest.strip_prefix(b"\"") else {
            return false;
        };
        let Some(close) = tail.iter().position(|&b| b == b'"') else {
            return false;
        };
        let whole = &tag_start[..tag_start.len() - tail.len() + close + 1];
        if opaque_tag(whole) == ours {
            return true;
        }
        rest = &tail[close + 1..];
    }
}

fn parse_request_line<'a>(
    line: &'a [u8],
    limits: &Limits,
) -> Result<(&'a str, &'a str, Version), HttpError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        // Distinguish a target too long from a line with too many or too few spaces.
        if let Some(target) = line.split(|&b| b == b' ').nth(1) {
            if target.len() > limits.max_uri_len {
                return Err(HttpError::UriTooLong(limits.max_uri_len));
            }
        }
        return Err(HttpError::BadRequestLine("not METHOD SP TARGET SP VERSION"));
    };
    if !is_token(method) {
        return Err(HttpError::BadRequestLine("method is not a token"));
    }
    if target.len() > limits.max_uri_len {
        return Err(HttpError::UriTooLong(limits.max_uri_len));
    }
    if target.is_empty() || !target.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(HttpError::BadRequestLine("target has invalid characters"));
    }
    let version = match version {
        b"HTTP/1.1" => Version::Http11,
        b"HTTP/1.0" => Version::Http10,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(HttpError::UnsupportedVersion);
        }
        _ => return Err(HttpError::BadRequestLine("malformed HTTP-version")),
    };
    Ok((ascii(method), ascii(target), version))
}

/// Before the head is complete: refuse a request line whose target is already too long.
fn check_partial_request_line(
    window: &[u8],
    line_start: usize,
    limits: &Limits,
) -> Result<(), HttpError> {
    let line = &window[line_start.min(window.len())..];
    let line = match line.iter().position(|&b| b == b'\n') {
        Some(end) => &line[..end],
        None => line,
    };
    if let Some(space) = line.iter().position(|&b| b == b' ') {
        let target = &line[space + 1..];
        let target_len = target
            .iter()
            .position(|&b| b == b' ')
            .unwrap_or(target.len());
        if target_len > limits.max_uri_len {
            return Err(HttpError::UriTooLong(limits.max_uri_len));
        }
    }
    Ok(())
}

fn parse_header_line(line: &[u8]) -> Result<Header<'_>, HttpError> {
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Err(HttpError::BadHeader("obsolete line folding"));
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(HttpError::BadHeader("no colon"))?;
    let name = &line[..colon];
    if !is_token(name) {
        // Includes whitespace between name and colon, which RFC 9112 §5.1 says to reject.
        return Err(HttpError::BadHeader("name is not a token"));
    }
    let value = trim_ows(&line[colon + 1..]);
    if !value.iter().all(|&b| is_field_value_byte(b)) {
        return Err(HttpError::BadHeader("control character in value"));
    }
    Ok(Header {
        name: ascii(name),
        value,
    })
}

/// Splits a target into path and query. Absolute-form targets give their path (or `/`); the
/// asterisk and authority forms are their own path.
fn split_target(target: &str) -> (&str, Option<&str>) {
    let without_fragment = target.split('#').next().unwrap_or(target);
    let (mut path, query) = match without_fragment.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (without_fragment, None),
    };
    if !path.starts_with('/') {
        if let Some(scheme_end) = path.find("://") {
            let after_scheme = &path[scheme_end + 3..];
            path = match after_scheme.find('/') {
                Some(slash) => &after_scheme[slash..],
                None => "/",
            };
        }
    }
    (path, query)
}

/// What `Expect` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expectation {
    None,
    /// `100-continue`: send `100 Continue` (or the final response) before reading the body.
    Continue,
    /// Anything else: answer 417 Expectation Failed.
    Unsupported,
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBody {
    None,
    Length(u64),
    Chunked,
}

/// A satisfiable byte range, resolved against the representation length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte, inclusive.
    pub start: u64,
    /// Last byte, inclusive.
    pub end: u64,
}

/// Why a `Range` header does not select a single satisfiable range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("range not satisfiable")]
    Unsatisfiable,
    #[error("malformed Range header")]
    Malformed,
    #[error("multiple ranges are not supported")]
    MultipleRanges,
}

impl ByteRange {
    /// Parses `bytes=a-b`, `bytes=a-` or `bytes=-n` and resolves it against `len`. A unit
    /// other than `bytes` gives `Ok(None)`.
    pub fn parse(value: &[u8], len: u64) -> Result<Option<ByteRange>, RangeError> {
        let value = trim_ows(value);
        let Some(equals) = value.iter().position(|&b| b == b'=') else {
            return Err(RangeError::Malformed);
        };
        if !value[..equals].eq_ignore_ascii_case(b"bytes") {
            return Ok(None);
        }
        let spec = trim_ows(&value[equals + 1..]);
        if spec.contains(&b',') {
            return Err(RangeError::MultipleRanges);
        }
        let dash = spec
            .iter()
            .position(|&b| b == b'-')
            .ok_or(RangeError::Malformed)?;
        let (first, last) = (&spec[..dash], &spec[dash + 1..]);
        let range = if first.is_empty() {
            // Suffix: the last n bytes.
            let suffix = parse_decimal(last).ok_or(RangeError::Malformed)?;
            if suffix == 0 || len == 0 {
                return Err(RangeError::Unsatisfiable);
            }
            ByteRange {
                start: len.saturating_sub(suffix),
                end: len - 1,
            }
        } else {
            let start = parse_decimal(first).ok_or(RangeError::Malformed)?;
            let end = if last.is_empty() {
                None
            } else {
                Some(parse_decimal(last).ok_or(RangeError::Malformed)?)
            };
            if end.is_some_and(|end| end < start) {
                return Err(RangeError::Malformed);
            }
            if start >= len {
                return Err(RangeError::Unsatisfiable);
            }
            ByteRange {
                start,
                end: end.map_or(len - 1, |end| end.min(len - 1)),
            }
        };
        Ok(Some(range))
    }

    /// Bytes in the range.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start).saturating_add(1)
    }

    /// Never true: a satisfiable range holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `Content-Range` value for a 206 response: `bytes start-end/len`.
    pub fn content_range(&self, len: u64) -> String {
        format!("bytes {}-{}/{}", self.start, self.end, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<(RequestHead<'_>, usize)>, HttpError> {
        RequestHead::parse(text.as_bytes(), &Limits::default())
    }

    #[test]
    fn ffplay_request() {
        let text = "GET /live/livestream.flv?token=abc HTTP/1.1\r\nUser-Agent: Lavf/59.27.100\r\n\
                    Accept: */*\r\nRange: bytes=0-\r\nConnection: close\r\nHost: 127.0.0.1:8080\r\n\
                    Icy-MetaData: 1\r\n\r\nGET /next";
        let (head, consumed) = parse(text).unwrap().unwrap();
        assert_eq!(&text[consumed..], "GET /next");
        assert_eq!(head.method, "GET");
        assert_eq!(head.path, "/live/livestream.flv");
        assert_eq!(head.query, Some("token=abc"));
        assert_eq!(head.version, Version::Http11);
        assert_eq!(head.headers.len(), 6);
        assert_eq!(head.host(), Some("127.0.0.1:8080"));
        assert_eq!(head.header("user-agent"), Some(&b"Lavf/59.27.100"[..]));
        assert!(!head.keep_alive());
        assert_eq!(head.range(100), Ok(Some(ByteRange { start: 0, end: 99 })));
        assert_eq!(head.body(), Ok(RequestBody::None));
    }

    #[test]
    fn partial_heads_wait() {
        let text = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        for cut in 0..text.len() {
            assert_eq!(
                RequestHead::parse(&text[..cut], &Limits::default()),
                Ok(None),
                "{cut}"
            );
        }
        assert!(
            RequestHead::parse(text, &Limits::default())
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn limits_have_distinct_errors() {
        let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(5000));
        assert_eq!(parse(&long_target), Err(HttpError::UriTooLong(4096)));
        // Refused before the line is complete.
        let partial = format!("GET /{}", "a".repeat(5000));
        assert_eq!(parse(&partial), Err(HttpError::UriTooLong(4096)));
        let huge = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "b".repeat(9000)
        );
        assert_eq!(parse(&huge), Err(HttpError::HeadTooLarge(8192)));
        let many: String = (0..65).map(|i| format!("X-{i}: v\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
        assert_eq!(parse(&many), Err(HttpError::TooManyHeaders(64)));
        assert_eq!(HttpError::TooManyHeaders(64).status(), 431);
        assert_eq!(HttpError::UriTooLong(1).status(), 414);
        assert_eq!(HttpError::MissingHost.status(), 400);
    }

    #[test]
    fn strictness() {
        assert_eq!(parse("GET / HTTP/1.1\r\n\r\n"), Err(HttpError::MissingHost));
        assert!(parse("GET / HTTP/1.0\r\n\r\n").unwrap().is_some());
        assert_eq!(
            parse("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Err(HttpError::DuplicateHost)
        );
        assert!(matches!(
            parse("GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
            Err(HttpError::BadHeader(_))
        ));
        assert!(matches!(
            parse("GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n"),
            Err(HttpError::BadHeader(_))
        ));
        assert!(matches!(
            parse("GET / HTTP/1.1\r\nHost: a\0\r\n\r\n"),
            Err(HttpError::BadHeader(_))
        ));
        assert!(matches!(
            parse("GET  / HTTP/1.1\r\n\r\n"),
            Err(HttpError::BadRequestLine(_))
        ));
        assert!(matches!(
            parse("G(T / HTTP/1.1\r\n\r\n"),
            Err(HttpError::BadRequestLine(_))
        ));
        assert_eq!(
            parse("GET / HTTP/2.0\r\n\r\n"),
            Err(HttpError::UnsupportedVersion)
        );
        assert!(matches!(
            parse("GET / FOO\r\n\r\n"),
            Err(HttpError::BadRequestLine(_))
        ));
        // Lenient: bare LF and leading empty lines.
        let (head, consumed) = parse("\r\n\nGET /x HTTP/1.0\nA: b\n\n").unwrap().unwrap();
        assert_eq!((head.path, consumed), ("/x", 25));
    }

    #[test]
    fn keep_alive_defaults() {
        let (head, _) = parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap().unwrap();
        assert!(head.keep_alive());
        let (head, _) = parse("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!head.keep_alive());
        let (head, _) = parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(head.keep_alive());
        let (head, _) = parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade, close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!head.keep_alive());
    }

    #[test]
    fn ranges() {
        let r = |value: &str, len| ByteRange::parse(value.as_bytes(), len);
        assert_eq!(
            r("bytes=0-499", 1000),
            Ok(Some(ByteRange { start: 0, end: 499 }))
        );
        assert_eq!(
            r("bytes=500-", 1000),
            Ok(Some(ByteRange {
                start: 500,
                end: 999
            }))
        );
        assert_eq!(
            r("bytes=-100", 1000),
            Ok(Some(ByteRange {
                start: 900,
                end: 999
            }))
        );
        assert_eq!(
            r("bytes=-5000", 1000),
            Ok(Some(ByteRange { start: 0, end: 999 }))
        );
        assert_eq!(
            r("bytes=900-5000", 1000),
            Ok(Some(ByteRange {
                start: 900,
                end: 999
            }))
        );
        assert_eq!(r("bytes=1000-", 1000), Err(RangeError::Unsatisfiable));
        assert_eq!(r("bytes=-0", 1000), Err(RangeError::Unsatisfiable));
        assert_eq!(r("bytes=0-", 0), Err(RangeError::Unsatisfiable));
        assert_eq!(r("bytes=5-1", 1000), Err(RangeError::Malformed));
        assert_eq!(r("bytes=a-1", 1000), Err(RangeError::Malformed));
        assert_eq!(r("bytes=0-1,5-6", 1000), Err(RangeError::MultipleRanges));
        assert_eq!(r("items=0-1", 1000), Ok(None));
        assert_eq!(
            r("bytes=99999999999999999999-", 10),
            Err(RangeError::Malformed)
        );
        let range = r("bytes=0-499", 1000).unwrap().unwrap();
        assert_eq!(range.len(), 500);
        assert_eq!(range.content_range(1000), "bytes 0-499/1000");
    }

    #[test]
    fn conditional_and_expect() {
        let (head, _) = parse(
            "GET / HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"x\", W/\"abc\"\r\nExpect: 100-Continue\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(head.if_none_match("\"abc\""));
        assert!(head.if_none_match("W/\"x\""));
        assert!(!head.if_none_match("\"ab\""));
        assert_eq!(head.expectation(), Expectation::Continue);
        let (head, _) = parse("GET / HTTP/1.1\r\nHost: a\r\nIf-None-Match: *\r\nExpect: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(head.if_none_match("\"anything\""));
        assert_eq!(head.expectation(), Expectation::Unsupported);
    }

    #[test]
    fn body_framing() {
        let body = |headers: &str| {
            let text = format!("POST / HTTP/1.1\r\nHost: a\r\n{headers}\r\n");
            let (head, _) = RequestHead::parse(text.as_bytes(), &Limits::default())
                .unwrap()
                .unwrap();
            head.body()
        };
        assert_eq!(body("Content-Length: 42\r\n"), Ok(RequestBody::Length(42)));
        assert_eq!(
            body("Content-Length: 42, 42\r\n"),
            Ok(RequestBody::Length(42))
        );
        assert_eq!(
            body("Content-Length: 42\r\nContent-Length: 43\r\n"),
            Err(HttpError::BadContentLength)
        );
        assert_eq!(
            body("Content-Length: -1\r\n"),
            Err(HttpError::BadContentLength)
        );
        assert_eq!(
            body("Transfer-Encoding: chunked\r\n"),
            Ok(RequestBody::Chunked)
        );
        assert_eq!(
            body("Transfer-Encoding: chunked\r\nContent-Length: 1\r\n"),
            Err(HttpError::ConflictingFraming)
        );
        assert_eq!(
            body("Transfer-Encoding: gzip, chunked\r\n"),
            Err(HttpError::UnsupportedTransferEncoding)
        );
    }

    #[test]
    fn target_forms() {
        assert_eq!(split_target("/a/b?x=1#frag"), ("/a/b", Some("x=1")));
        assert_eq!(
            split_target("http://h:8080/live/s.flv?k=v"),
            ("/live/s.flv", Some("k=v"))
        );
        assert_eq!(split_target("http://h"), ("/", None));
        assert_eq!(split_target("*"), ("*", None));
        assert_eq!(split_target("h:443"), ("h:443", None));
    }
}
