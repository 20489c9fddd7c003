//! Response heads and the chunked transfer coding (RFC 9112 §4, §6, §7.1).
//!
//! For live HTTP-FLV/HTTP-TS the body is an endless sequence of buffers shared between
//! viewers. Chunked framing around a shared buffer is a small header ([`ChunkHeader`]) before
//! it and [`CHUNK_END`] after it, so a viewer's vectored write is `[header, shared, CHUNK_END]`
//! and the shared buffer is never copied; the stream ends with [`LAST_CHUNK`].

use bytes::BufMut;

use super::{HttpError, Version};

/// The CRLF after each chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";
/// The zero-size chunk and the empty trailer section that end a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body follows (1xx, 204, 304, or an error with nothing to say). No framing header is
    /// written; for HEAD responses use [`BodyFraming::Length`] and send no body.
    Empty,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked` for HTTP/1.1; an HTTP/1.0 client gets the body delimited
    /// by closing the connection instead.
    Chunked,
    /// Delimited by closing the connection: no framing header, `Connection: close`.
    UntilClose,
}

/// A response head to write. `headers` must not contain the framing and connection headers
/// (`Content-Length`, `Transfer-Encoding`, `Connection`): those come from `body` and
/// `keep_alive`, and caller-supplied ones are skipped so they cannot contradict them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead<'a> {
    /// The request's version: HTTP/1.0 clients get an HTTP/1.0 status line.
    pub version: Version,
    pub status: u16,
    /// Reason phrase; [`reason_phrase`] of the status when `None`.
    pub reason: Option<&'a str>,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: BodyFraming,
    /// Whether the server intends to keep the connection (usually the request's
    /// [`keep_alive`](super::RequestHead::keep_alive)).
    pub keep_alive: bool,
}

/// What [`ResponseHead::write`] settled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrittenHead {
    /// Send the body with chunked framing.
    pub chunked: bool,
    /// The connection may be reused after the body; otherwise close it when done.
    pub keep_alive: bool,
}

impl ResponseHead<'_> {
    /// A head with no extra headers.
    pub fn new(
        version: Version,
        status: u16,
        body: BodyFraming,
        keep_alive: bool,
    ) -> ResponseHead<'static> {
        ResponseHead {
            version,
            status,
            reason: None,
            headers: &[],
            body,
            keep_alive,
        }
    }

    /// Appends the status line, the headers, the framing and connection headers and the blank
    /// line. Header names that are not tokens are skipped; CR, LF and NUL in values (and the
    /// reason) become spaces, so no input can split the head.
    pub fn write<B: BufMut + ?Sized>(&self, out: &mut B) -> WrittenHead {
        // A body delimited by close (HTTP/1.0 has no chunked coding) ends the connection.
        let (chunked, keep_alive) = match (self.body, self.version) {
            (BodyFraming::Chunked, Version::Http11) => (true, self.keep_alive),
            (BodyFraming::Chunked, Version::Http10) | (BodyFraming::UntilClose, _) => {
                (false, false)
            }
            _ => (false, self.keep_alive),
        };

        out.put_slice(self.version.as_str().as_bytes());
        out.put_u8(b' ');
        let status = self.status.min(999);
        out.put_slice(&[
            b'0' + (status / 100) as u8,
            b'0' + (status / 10 % 10) as u8,
            b'0' + (status % 10) as u8,
            b' ',
        ]);
        put_sanitized(out, self.reason.unwrap_or_else(|| reason_phrase(status)));
        out.put_slice(b"\r\n");

        for &(name, value) in self.headers {
            let reserved = ["content-length", "transfer-encoding", "connection"]
                .iter()
                .any(|r| name.eq_ignore_ascii_case(r));
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if reserved || !token {
                continue;
            }
            out.put_slice(name.as_bytes());
            out.put_slice(b": ");
            put_sanitized(out, value);
            out.put_slice(b"\r\n");
        }

        match self.body {
            BodyFraming::Length(length) => {
                out.put_slice(b"Content-Length: ");
                put_decimal(out, length);
                out.put_slice(b"\r\n");
            }
            BodyFraming::Chunked if chunked => out.put_slice(b"Transfer-Encoding: chunked\r\n"),
            _ => {}
        }
        match (self.version, keep_alive) {
            (Version::Http11, false) => out.put_slice(b"Connection: close\r\n"),
            (Version::Http10, true) => out.put_slice(b"Connection: keep-alive\r\n"),
            _ => {}
        }
        out.put_slice(b"\r\n");
        WrittenHead {
            chunked,
            keep_alive,
        }
    }
}

/// The `100 Continue` interim response.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

fn put_sanitized<B: BufMut + ?Sized>(out: &mut B, text: &str) {
    for chunk in text
        .as_bytes()
        .split_inclusive(|&b| matches!(b, b'\r' | b'\n' | 0))
    {
        match chunk.split_last() {
            Some((b'\r' | b'\n' | 0, head)) => {
                out.put_slice(head);
                out.put_u8(b' ');
            }
            _ => out.put_slice(chunk),
        }
    }
}

fn put_decimal<B: BufMut + ?Sized>(out: &mut B, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.put_slice(&digits[start..]);
}

/// The standard reason phrase, or `Unknown`.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// A chunk-size line: hex digits and CRLF (at most 16 + 2 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    bytes: [u8; 18],
    len: usize,
}

impl ChunkHeader {
    /// The header for `size` bytes of chunk data. A size of 0 would end the body, so it gives
    /// an empty header: skip empty chunks entirely (or use [`write_chunk`], which does).
    pub fn new(size: usize) -> ChunkHeader {
        let mut bytes = [0u8; 18];
        if size == 0 {
            return ChunkHeader { bytes, len: 0 };
        }
        let digits = (usize::BITS - size.leading_zeros()).div_ceil(4) as usize;
        for (index, digit) in bytes[..digits].iter_mut().enumerate() {
            let nibble = (size >> (4 * (digits - 1 - index))) & 0x0f;
            *digit = b"0123456789abcdef"[nibble];
        }
        bytes[digits] = b'\r';
        bytes[digits + 1] = b'\n';
        ChunkHeader {
            bytes,
            len: digits + 2,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Appends one chunk (header, data, CRLF); nothing for empty `data`.
pub fn write_chunk<B: BufMut + ?Sized>(out: &mut B, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.put_slice(ChunkHeader::new(data.len()).as_bytes());
    out.put_slice(data);
    out.put_slice(CHUNK_END);
}

/// Where the decoder is in the chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading a chunk-size line; bytes of it seen so far.
    Size {
        line_len: usize,
    },
    Data {
        remaining: u64,
    },
    /// After the data: CR LF (or a bare LF).
    DataEnd {
        seen_cr: bool,
    },
    /// Trailer fields after the last chunk; bytes of the current line, total trailer bytes.
    Trailer {
        line_len: usize,
        total: usize,
    },
    Done,
}

/// Longest chunk-size line (size, extensions) we read.
const MAX_CHUNK_LINE: usize = 4096;
/// Most trailer bytes we read (and discard).
const MAX_TRAILER: usize = 8192;

/// A streaming decoder for a chunked body: feed it whatever bytes arrive, it appends the data
/// to `out` and says how much input it consumed. Extensions and trailers are read and dropped.
/// Bounded: lines and trailers are limited, and sizes past 16 hex digits are refused.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: ChunkState,
    size: u64,
    size_digits: usize,
    in_extension: bool,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> ChunkedDecoder {
        ChunkedDecoder {
            state: ChunkState::Size { line_len: 0 },
            size: 0,
            size_digits: 0,
            in_extension: false,
        }
    }

    /// The last chunk and the trailers have been read: anything after is the next request.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes from `input`, appending chunk data to `out`; returns the bytes consumed (all of
    /// `input`, unless the body ended inside it).
    pub fn decode<B: BufMut + ?Sized>(
        &mut self,
        input: &[u8],
        out: &mut B,
    ) -> Result<usize, HttpError> {
        let mut position = 0;
        while position < input.len() {
            match self.state {
                ChunkState::Done => break,
                ChunkState::Data { remaining } => {
                    let available = (input.len() - position) as u64;
                    let take = remaining.min(available) as usize;
                    out.put_slice(&input[position..position + take]);
                    position += take;
                    let remaining = remaining - take as u64;
                    self.state = if remaining == 0 {
                        ChunkState::DataEnd { seen_cr: false }
                    } else {
                        ChunkState::Data { remaining }
                    };
                }
                ChunkState::DataEnd { seen_cr } => {
                    let byte = input[position];
                    position += 1;
                    self.state = match (byte, seen_cr) {
                        (b'\r', false) => ChunkState::DataEnd { seen_cr: true },
                        (b'\n', _) => ChunkState::Size { line_len: 0 },
                        _ => return Err(HttpError::BadChunk("no CRLF after chunk data")),
                    };
                }
                ChunkState::Size { line_len } => {
                    let byte = input[position];
                    position += 1;
                    if line_len + 1 > MAX_CHUNK_LINE {
                        return Err(HttpError::BadChunk("chunk-size line too long"));
                    }
                    self.state = ChunkState::Size {
                        line_len: line_len + 1,
                    };
                    self.size_byte(byte)?;
                }
                ChunkState::Trailer { line_len, total } => {
                    let byte = input[position];
                    position += 1;
                    if total + 1 > MAX_TRAILER {
                        return Err(HttpError::BadChunk("trailer section too large"));
                    }
                    self.state = match byte {
                        b'\n' if line_len == 0 => ChunkState::Done,
                        b'\n' => ChunkState::Trailer {
                            line_len: 0,
                            total: total + 1,
                        },
                        // A CR only counts as content if more than CR precedes the LF.
                        b'\r' => ChunkState::Trailer {
                            line_len,
                            total: total + 1,
                        },
                        _ => ChunkState::Trailer {
                            line_len: line_len + 1,
                            total: total + 1,
                        },
                    };
                }
            }
        }
        Ok(position)
    }

    /// One byte of a chunk-size line: `HEXDIG+ [ext] CRLF`.
    fn size_byte(&mut self, byte: u8) -> Result<(), HttpError> {
        match byte {
            b'\n' => {
                if self.size_digits == 0 {
                    return Err(HttpError::BadChunk("missing chunk size"));
                }
                self.state = if self.size == 0 {
                    ChunkState::Trailer {
                        line_len: 0,
                        total: 0,
                    }
                } else {
                    ChunkState::Data {
                        remaining: self.size,
                    }
                };
                self.size = 0;
                self.size_digits = 0;
                self.in_extension = false;
            }
            _ if self.in_extension => {}
            // Extensions, whitespace before them, or the CR of CRLF: ignore up to the LF.
            b';' | b' ' | b'\t' | b'\r' => self.in_extension = true,
            _ => {
                let digit = (byte as char)
                    .to_digit(16)
                    .ok_or(HttpError::BadChunk("chunk size is not hex"))?;
                if self.size_digits == 16 {
                    return Err(HttpError::BadChunk("chunk size too large"));
                }
                self.size = (self.size << 4) | u64::from(digit);
                self.size_digits += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_text(head: &ResponseHead<'_>) -> (String, WrittenHead) {
        let mut out = Vec::new();
        let written = head.write(&mut out);
        (String::from_utf8(out).unwrap(), written)
    }

    #[test]
    fn live_flv_head() {
        let head = ResponseHead {
            headers: &[
                ("Content-Type", "video/x-flv"),
                ("Server", "sluice"),
                ("Content-Length", "5"),
            ],
            ..ResponseHead::new(Version::Http11, 200, BodyFraming::Chunked, true)
        };
        let (text, written) = head_text(&head);
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\nServer: sluice\r\n\
             Transfer-Encoding: chunked\r\n\r\n"
        );
        assert_eq!(
            written,
            WrittenHead {
                chunked: true,
                keep_alive: true
            }
        );
    }

    #[test]
    fn http10_and_close() {
        let (text, written) = head_text(&ResponseHead::new(
            Version::Http10,
            200,
            BodyFraming::Chunked,
            true,
        ));
        assert_eq!(text, "HTTP/1.0 200 OK\r\n\r\n");
        assert_eq!(
            written,
            WrittenHead {
                chunked: false,
                keep_alive: false
            }
        );
        let (text, written) = head_text(&ResponseHead::new(
            Version::Http10,
            200,
            BodyFraming::Length(3),
            true,
        ));
        assert_eq!(
            text,
            "HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n"
        );
        assert!(written.keep_alive);
        let (text, _) = head_text(&ResponseHead::new(
            Version::Http11,
            404,
            BodyFraming::Length(0),
            false,
        ));
        assert_eq!(
            text,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let (text, _) = head_text(&ResponseHead::new(
            Version::Http11,
            304,
            BodyFraming::Empty,
            true,
        ));
        assert_eq!(text, "HTTP/1.1 304 Not Modified\r\n\r\n");
    }

    #[test]
    fn header_injection_is_neutralised() {
        let head = ResponseHead {
            reason: Some("OK\r\nX: y"),
            headers: &[("Bad Name", "v"), ("Location", "/a\r\nSet-Cookie: x\0")],
            ..ResponseHead::new(Version::Http11, 302, BodyFraming::Empty, true)
        };
        let (text, _) = head_text(&head);
        assert_eq!(
            text,
            "HTTP/1.1 302 OK  X: y\r\nLocation: /a  Set-Cookie: x \r\n\r\n"
        );
    }

    #[test]
    fn chunk_headers() {
        assert_eq!(ChunkHeader::new(1).as_bytes(), b"1\r\n");
        assert_eq!(ChunkHeader::new(0x1a2b).as_bytes(), b"1a2b\r\n");
        assert_eq!(ChunkHeader::new(0).as_bytes(), b"");
        assert_eq!(
            ChunkHeader::new(usize::MAX).as_bytes().len(),
            2 * std::mem::size_of::<usize>() + 2
        );
        let mut out = Vec::new();
        write_chunk(&mut out, b"hello");
        write_chunk(&mut out, b"");
        out.extend_from_slice(LAST_CHUNK);
        assert_eq!(out, b"5\r\nhello\r\n0\r\n\r\n");
    }

    #[test]
    fn decoder_handles_extensions_trailers_and_splits() {
        let body =
            b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for split in 0..body.len() {
            let mut decoder = ChunkedDecoder::new();
            let mut out = Vec::new();
            let first = decoder.decode(&body[..split], &mut out).unwrap();
            let second = decoder.decode(&body[first..], &mut out).unwrap();
            assert!(decoder.is_done());
            assert_eq!(&body[first + second..], b"NEXT");
            assert_eq!(out, b"Wikipedia in\r\n\r\nchunks.");
        }
    }

    #[test]
    fn decoder_rejects_garbage() {
        let decode = |input: &[u8]| ChunkedDecoder::new().decode(input, &mut Vec::new());
        assert!(decode(b"zz\r\n").is_err());
        assert!(decode(b"\r\n").is_err());
        assert!(decode(b"11111111111111111\r\n").is_err());
        assert!(decode(b"1\r\nab").is_err());
        assert!(decode(&[b'1'; 5000]).is_err());
        let mut trailer = b"0\r\n".to_vec();
        trailer.extend(std::iter::repeat_n(b'x', 9000));
        assert!(decode(&trailer).is_err());
    }
}
