//! An HTTP/1.1 response reader for keep-alive clients that ask one thing at a time: it parses
//! the head (status, `Content-Length`, `Transfer-Encoding: chunked`, `Connection`) and follows
//! the body through its framing, handing body bytes to the caller as slices of the received
//! buffer — nothing is copied but the head, into a buffer reused across responses.

/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HttpError {
    #[error("response head too large")]
    HeadTooLarge,
    #[error("bad status line")]
    BadStatus,
    #[error("bad Content-Length")]
    BadLength,
    #[error("bad chunk size line")]
    BadChunk,
    #[error("response without Content-Length or chunked coding")]
    NoLength,
    #[error("data after the response")]
    Unexpected,
}

/// A complete response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The connection may carry another request (HTTP/1.1 without `Connection: close`, or
    /// HTTP/1.0 with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// Body bytes (after removing chunked coding).
    pub body_len: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No request outstanding: any byte is unexpected.
    Idle,
    Head,
    /// `Content-Length` body, this many bytes left.
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    /// The CRLF after a chunk's data, this many bytes left.
    ChunkEnd(u8),
    /// Trailer lines after the last chunk, up to the empty line.
    Trailer,
}

pub struct ResponseReader {
    state: State,
    head: Vec<u8>,
    /// Progress through the `\r\n\r\n` that ends the head (a bare `\n\n` also ends it).
    head_end: u8,
    line: Vec<u8>,
    status: u16,
    keep_alive: bool,
    body_len: u64,
}

impl Default for ResponseReader {
    fn default() -> Self {
        ResponseReader {
            state: State::Idle,
            head: Vec::new(),
            head_end: 0,
            line: Vec::new(),
            status: 0,
            keep_alive: false,
            body_len: 0,
        }
    }
}

impl ResponseReader {
    /// A request went out: the next bytes are its response.
    pub fn expect(&mut self) {
        self.state = State::Head;
        self.head.clear();
        self.head_end = 0;
        self.line.clear();
        self.body_len = 0;
    }

    /// Forgets any response in progress (the connection is gone).
    pub fn reset(&mut self) {
        self.state = State::Idle;
    }

    /// Whether any byte of the awaited response has arrived.
    pub fn begun(&self) -> bool {
        self.state != State::Idle && (self.state != State::Head || !self.head.is_empty())
    }

    /// Whether a response is awaited or being read.
    #[cfg(test)]
    pub fn busy(&self) -> bool {
        self.state != State::Idle
    }

    /// Feeds received bytes. Body bytes go to `body(status, bytes)`; returns the response once
    /// it is complete (the reader is then idle, and bytes after it are an error: requests are
    /// not pipelined).
    pub fn feed(
        &mut self,
        mut data: &[u8],
        mut body: impl FnMut(u16, &[u8]),
    ) -> Result<Option<Response>, HttpError> {
        while !data.is_empty() {
            match self.state {
                State::Idle => return Err(HttpError::Unexpected),
                State::Head => {
                    let mut end = None;
                    for (i, &b) in data.iter().enumerate() {
                        // 2: at a line start; 3: a CR there; 4: the empty line ended.
                        self.head_end = match b {
                            b'\n' if self.head_end >= 2 => 4,
                            b'\n' => 2,
                            b'\r' if self.head_end == 2 => 3,
                            b'\r' => 1,
                            _ => 0,
                        };
                        if self.head_end == 4 {
                            end = Some(i + 1);
                            break;
                        }
                    }
                    let take = end.unwrap_or(data.len());
                    if self.head.len() + take > MAX_HEAD {
                        return Err(HttpError::HeadTooLarge);
                    }
                    self.head.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if end.is_some() {
                        self.parse_head()?;
                    }
                }
                State::Length(left) => {
                    let take = (left.min(data.len() as u64)) as usize;
                    body(self.status, &data[..take]);
                    self.body_len += take as u64;
                    data = &data[take..];
                    self.state = State::Length(left - take as u64);
                }
                State::ChunkSize | State::Trailer => {
                    let newline = data.iter().position(|&b| b == b'\n');
                    let take = newline.map_or(data.len(), |n| n + 1);
                    if self.line.len() + take > MAX_LINE {
                        return Err(HttpError::BadChunk);
                    }
                    self.line.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if newline.is_some() {
                        self.chunk_line()?;
                    }
                }
                State::ChunkData(left) => {
                    let take = (left.min(data.len() as u64)) as usize;
                    body(self.status, &data[..take]);
                    self.body_len += take as u64;
                    data = &data[take..];
                    self.state = if take as u64 == left {
                        State::ChunkEnd(2)
                    } else {
                        State::ChunkData(left - take as u64)
                    };
                }
                State::ChunkEnd(left) => {
                    let take = (left as usize).min(data.len());
                    data = &data[take..];
                    self.state = if take == left as usize {
                        State::ChunkSize
                    } else {
                        State::ChunkEnd(left - take as u8)
                    };
                }
            }
            if self.state == State::Length(0) {
                self.state = State::Idle;
                if !data.is_empty() {
                    return Err(HttpError::Unexpected);
                }
                return Ok(Some(self.response()));
            }
            if self.state == State::Idle {
                if !data.is_empty() {
                    return Err(HttpError::Unexpected);
                }
                return Ok(Some(self.response()));
            }
        }
        Ok(None)
    }

    fn response(&self) -> Response {
        Response {
            status: self.status,
            keep_alive: self.keep_alive,
            body_len: self.body_len,
        }
    }

    fn parse_head(&mut self) -> Result<(), HttpError> {
        let mut lines = self
            .head
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let status_line = lines.next().ok_or(HttpError::BadStatus)?;
        let http10 = status_line.starts_with(b"HTTP/1.0 ");
        if !http10 && !status_line.starts_with(b"HTTP/1.1 ") {
            return Err(HttpError::BadStatus);
        }
        let code = status_line.get(9..12).ok_or(HttpError::BadStatus)?;
        if !code.iter().all(u8::is_ascii_digit) {
            return Err(HttpError::BadStatus);
        }
        self.status = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        let mut keep_alive = !http10;
        let mut length = None;
        let mut chunked = false;
        for line in lines {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
            if name.eq_ignore_ascii_case(b"content-length") {
                let text = std::str::from_utf8(value).map_err(|_| HttpError::BadLength)?;
                length = Some(text.parse::<u64>().map_err(|_| HttpError::BadLength)?);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                chunked = value
                    .split(|&b| b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if name.eq_ignore_ascii_case(b"connection") {
                for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    if token.eq_ignore_ascii_case(b"close") {
                        keep_alive = false;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        keep_alive = true;
                    }
                }
            }
        }
        self.keep_alive = keep_alive;
        self.state = if chunked {
            State::ChunkSize
        } else if let Some(length) = length {
            State::Length(length)
        } else if matches!(self.status, 100..=199 | 204 | 304) {
            State::Length(0)
        } else {
            return Err(HttpError::NoLength);
        };
        if (100..=199).contains(&self.status) {
            // An interim response: the real one follows.
            self.state = State::Head;
            self.head.clear();
            self.head_end = 0;
        }
        Ok(())
    }

    fn chunk_line(&mut self) -> Result<(), HttpError> {
        let line = self.line.trim_ascii();
        if self.state == State::Trailer {
            self.state = if line.is_empty() {
                State::Idle
            } else {
                State::Trailer
            };
            self.line.clear();
            return Ok(());
        }
        let hex = line
            .split(|&b| b == b';')
            .next()
            .unwrap_or(&[])
            .trim_ascii();
        let size = std::str::from_utf8(hex)
            .ok()
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .ok_or(HttpError::BadChunk)?;
        self.line.clear();
        self.state = if size == 0 {
            State::Trailer
        } else {
            State::ChunkData(size)
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` in pieces of `piece` bytes; returns the response and the body.
    fn read(wire: &[u8], piece: usize) -> Result<(Response, Vec<u8>), HttpError> {
        let mut reader = ResponseReader::default();
        reader.expect();
        let mut body = Vec::new();
        let mut done = None;
        for part in wire.chunks(piece) {
            assert!(done.is_none(), "bytes after the response");
            done = reader.feed(part, |status, bytes| {
                assert_eq!(status, 200);
                body.extend_from_slice(bytes)
            })?;
        }
        assert!(!reader.busy());
        Ok((done.expect("complete"), body))
    }

    #[test]
    fn content_length_and_chunked_bodies() {
        let payload: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let mut plain =
            b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\ncontent-length: 5000\r\n\r\n".to_vec();
        plain.extend_from_slice(&payload);
        let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for piece in payload.chunks(777) {
            chunked.extend_from_slice(format!("{:X};x=y\r\n", piece.len()).as_bytes());
            chunked.extend_from_slice(piece);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\nX-Trailer: 1\r\n\r\n");
        for wire in [&plain, &chunked] {
            for piece in [1, 2, 3, 5, 64, 100_000] {
                let (response, body) = read(wire, piece).unwrap();
                assert_eq!(response.status, 200);
                assert!(response.keep_alive);
                assert_eq!(response.body_len, 5000);
                assert_eq!(body, payload, "piece {piece}");
            }
        }
    }

    #[test]
    fn status_and_connection() {
        let (r, body) = read(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            4,
        )
        .unwrap();
        assert!(!r.keep_alive);
        assert!(body.is_empty());
        let (r, _) = read(
            b"HTTP/1.0 200 OK\nConnection: Keep-Alive\nContent-Length: 0\n\n",
            1,
        )
        .unwrap();
        assert!(r.keep_alive, "bare LF heads are accepted");
        let mut reader = ResponseReader::default();
        reader.expect();
        let r = reader
            .feed(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno!",
                |s, _| assert_eq!(s, 404),
            )
            .unwrap()
            .unwrap();
        assert_eq!((r.status, r.body_len), (404, 3));
        // Interim responses are skipped.
        reader.expect();
        let r = reader
            .feed(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
                |_, _| {},
            )
            .unwrap()
            .unwrap();
        assert_eq!(r.status, 204);
    }

    #[test]
    fn errors() {
        let mut reader = ResponseReader::default();
        assert_eq!(reader.feed(b"x", |_, _| {}), Err(HttpError::Unexpected));
        reader.expect();
        assert_eq!(
            reader.feed(b"HTTP/1.1 200 OK\r\n\r\n", |_, _| {}),
            Err(HttpError::NoLength)
        );
        reader.expect();
        assert_eq!(
            reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab", |_, _| {}),
            Err(HttpError::Unexpected)
        );
        reader.expect();
        assert_eq!(
            reader.feed(b"SIP/2.0 200 OK\r\n\r\n", |_, _| {}),
            Err(HttpError::BadStatus)
        );
        reader.expect();
        assert_eq!(
            reader.feed(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                |_, _| {}
            ),
            Err(HttpError::BadChunk)
        );
    }
}
