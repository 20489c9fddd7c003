//! A small HTTP/1.x and WebSocket client for the tests: raw requests (so a test can send exactly
//! the bytes it means, bad ones included), responses read with their framing (Content-Length,
//! chunked, until close), keep-alive and pipelining on one connection, and [`LiveViewer`], a
//! thread that plays a live URL over HTTP/1.1, HTTP/1.0 or WebSocket and records every FLV tag
//! as the RTMP [`Player`](super::rtmp_client::Player) records messages — into the same
//! [`Recording`], so the same checks (frame rate, gaps, monotonic timestamps) apply.
//!
//! Built on `sluice_proto`: its chunked decoder, its WebSocket frame codec (client frames
//! masked, server frames expected unmasked) and its FLV parser. Every read has a deadline.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sluice_proto::flv::{FileHeader, FlvError, Tag};
use sluice_proto::http::ChunkedDecoder;
use sluice_proto::http::ws::{self, DecodeStep, FrameDecoder, Message, Opcode, WsConfig};

use super::is_timeout;
use super::rtmp_client::{Received, Recording, tcp};

/// The longest response head the client accepts.
const MAX_HEAD: usize = 64 * 1024;

/// The RFC 6455 sample key and the accept value the RFC gives for it (§1.3): checks the
/// server's `Sec-WebSocket-Accept` against a value computed independently of our own code.
pub const WS_SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const WS_SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fn timed_out(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("timed out waiting for {what}"),
    )
}

// ---------------------------------------------------------------------------------------------
// Responses

/// A response: its head and (when read) its body, de-chunked.
#[derive(Debug, Clone, Default)]
pub struct Response {
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body came with `Transfer-Encoding: chunked` (and was de-chunked).
    pub chunked: bool,
}

impl Response {
    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")?.trim().parse().ok()
    }

    pub fn is_chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    /// `Connection: close` was sent (or HTTP/1.0 without keep-alive).
    pub fn closes(&self) -> bool {
        match self.header("connection").map(str::to_ascii_lowercase) {
            Some(v) if v.contains("close") => true,
            Some(v) if v.contains("keep-alive") => false,
            _ => self.version == "HTTP/1.0",
        }
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Status line and headers, for failure messages.
    pub fn head_text(&self) -> String {
        let mut out = format!("{} {} {}", self.version, self.status, self.reason);
        for (k, v) in &self.headers {
            out += &format!("\n{k}: {v}");
        }
        out
    }
}

/// Parses a response head at the start of `buf`: `Ok(None)` until the blank line is there.
pub fn parse_response_head(buf: &[u8]) -> io::Result<Option<(Response, usize)>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "response head longer than 64 KiB",
            ));
        }
        return Ok(None);
    };
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| bad("response head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("").to_string();
    if !version.starts_with("HTTP/1.") {
        return Err(bad(&format!("not an HTTP/1 status line: {status_line:?}")));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(&format!("no status code: {status_line:?}")))?;
    let reason = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(&format!("header line without a colon: {line:?}")))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let mut response = Response {
        version,
        status,
        reason,
        headers,
        body: Vec::new(),
        chunked: false,
    };
    response.chunked = response.is_chunked();
    Ok(Some((response, end + 4)))
}

/// A request head: `METHOD target HTTP/1.1`, `Host`, then `headers`, then the blank line.
pub fn request_bytes(method: &str, target: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (k, v) in headers {
        out += &format!("{k}: {v}\r\n");
    }
    out += "\r\n";
    out.into_bytes()
}

// ---------------------------------------------------------------------------------------------
// A connection

/// A client connection: send bytes, read responses in order.
pub struct HttpConn {
    pub sock: TcpStream,
    /// Received and not yet consumed.
    buf: Vec<u8>,
    /// The peer closed (EOF read).
    eof: bool,
    /// Limit for each response.
    pub timeout: Duration,
    /// Read at most this many bytes at a time, then pause this long (a slow reader).
    pub pace: Option<(usize, Duration)>,
}

impl HttpConn {
    pub fn connect(port: u16) -> io::Result<HttpConn> {
        HttpConn::connect_with(port, None)
    }

    /// With `SO_RCVBUF` set before connecting (a small one makes a reader that stops reading
    /// stall the server's sends quickly).
    pub fn connect_with(port: u16, rcvbuf: Option<usize>) -> io::Result<HttpConn> {
        let sock = tcp(port, rcvbuf, Duration::from_secs(5))?;
        Ok(HttpConn {
            sock,
            buf: Vec::new(),
            eof: false,
            timeout: Duration::from_secs(10),
            pace: None,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.sock.local_addr().expect("local addr")
    }

    /// Writes bytes as they are.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.sock.write_all(bytes)
    }

    /// Sends a request (HTTP/1.1, Host set) and reads its response (a HEAD's without a body).
    pub fn request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
    ) -> io::Result<Response> {
        self.send(&request_bytes(method, target, headers))?;
        self.read_response(method == "HEAD")
    }

    /// Reads once into the buffer (up to `deadline`); false on timeout, error on EOF.
    fn fill(&mut self, deadline: Instant, what: &str) -> io::Result<()> {
        if self.eof {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the server closed the connection before {what}"),
            ));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out(what));
        }
        self.sock.set_read_timeout(Some(left))?;
        let mut chunk = [0u8; 64 * 1024];
        let max = self
            .pace
            .map_or(chunk.len(), |(bytes, _)| bytes.clamp(1, chunk.len()));
        if let Some((_, pause)) = self.pace {
            std::thread::sleep(pause);
        }
        match self.sock.read(&mut chunk[..max]) {
            Ok(0) => {
                self.eof = true;
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the server closed the connection before {what}"),
                ))
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) if is_timeout(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Reads a response head; the body (if any) stays buffered.
    pub fn read_head(&mut self) -> io::Result<Response> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some((response, used)) = parse_response_head(&self.buf)? {
                self.buf.drain(..used);
                return Ok(response);
            }
            self.fill(deadline, "a response head")?;
        }
    }

    /// Reads a whole response: head, then a body framed by Content-Length, chunked coding or
    /// the end of the connection (none after HEAD, 1xx, 204 and 304).
    pub fn read_response(&mut self, head_only: bool) -> io::Result<Response> {
        let deadline = Instant::now() + self.timeout;
        let mut response = self.read_head()?;
        if head_only || matches!(response.status, 100..=199 | 204 | 304) {
            return Ok(response);
        }
        if response.chunked {
            let mut decoder = ChunkedDecoder::new();
            loop {
                let used = decoder
                    .decode(&self.buf, &mut response.body)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                self.buf.drain(..used);
                if decoder.is_done() {
                    return Ok(response);
                }
                self.fill(deadline, "the end of a chunked body")?;
            }
        }
        if let Some(len) = response.content_length() {
            let len = len as usize;
            while self.buf.len() < len {
                self.fill(deadline, &format!("a {len}-byte body"))?;
            }
            response.body = self.buf.drain(..len).collect();
            return Ok(response);
        }
        // Neither: the body ends when the connection does.
        loop {
            match self.fill(deadline, "the end of the body") {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
        }
        response.body = std::mem::take(&mut self.buf);
        Ok(response)
    }

    /// Reads (and drops) until the server closes the connection: true if it did in time.
    /// A reset counts as closed.
    pub fn wait_closed(&mut self, timeout: Duration) -> bool {
        if self.eof {
            return true;
        }
        self.buf.clear();
        super::rtmp_client::wait_closed(&mut self.sock, timeout)
    }

    /// Reads everything until the server closes (or `timeout`): the bytes, and whether it
    /// closed. A reset counts as closed.
    pub fn read_until_closed(&mut self, timeout: Duration) -> (Vec<u8>, bool) {
        let deadline = Instant::now() + timeout;
        loop {
            match self.fill(deadline, "the connection to close") {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return (std::mem::take(&mut self.buf), false);
                }
                Err(_) => return (std::mem::take(&mut self.buf), true),
            }
        }
    }

    pub fn shutdown(&self) {
        let _ = self.sock.shutdown(Shutdown::Both);
    }
}

/// One request on a new connection (`Connection: close` added) and its response.
pub fn request(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> io::Result<Response> {
    let mut conn = HttpConn::connect(port)?;
    let mut all = headers.to_vec();
    all.push(("Connection", "close"));
    conn.request(method, target, &all)
}

/// `GET target` on a new connection.
pub fn get(port: u16, target: &str) -> io::Result<Response> {
    request(port, "GET", target, &[])
}

/// What the server did with bytes a client sent: the response it wrote (if any, body read by
/// its framing) and whether it then closed the connection within `timeout`.
pub struct RawOutcome {
    pub local_addr: SocketAddr,
    pub response: Option<Response>,
    /// Why no response could be read.
    pub error: Option<String>,
    pub closed: bool,
}

/// Sends `bytes` on a new connection (a write the server cut short by closing is fine), reads
/// a response, then waits up to `timeout` for the server to close.
pub fn raw_exchange(port: u16, bytes: &[u8], timeout: Duration) -> io::Result<RawOutcome> {
    let mut conn = HttpConn::connect(port)?;
    conn.timeout = timeout;
    let local_addr = conn.local_addr();
    let _ = conn.send(bytes);
    let (response, error) = match conn.read_response(false) {
        Ok(r) => (Some(r), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let closed = conn.wait_closed(timeout);
    Ok(RawOutcome {
        local_addr,
        response,
        error,
        closed,
    })
}

// ---------------------------------------------------------------------------------------------
// WebSocket

static MASK_SEED: AtomicU32 = AtomicU32::new(0x5A17_C0DE);

/// A fresh masking key (never all zero, so masking really changes the bytes).
pub fn next_mask() -> [u8; 4] {
    let n = MASK_SEED
        .fetch_add(0x9E37_79B9, Ordering::Relaxed)
        .rotate_left(7)
        | 0x0101_0101;
    n.to_be_bytes()
}

/// A client frame: masked (as RFC 6455 requires of clients) or, to test the server, not.
pub fn ws_client_frame(opcode: Opcode, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    if masked {
        let mask = next_mask();
        out.extend_from_slice(
            ws::masked_frame_header(opcode, true, payload.len(), mask).as_bytes(),
        );
        let start = out.len();
        out.extend_from_slice(payload);
        ws::apply_mask(&mut out[start..], mask, 0);
    } else {
        out.extend_from_slice(ws::frame_header(opcode, true, payload.len()).as_bytes());
        out.extend_from_slice(payload);
    }
    out
}

/// The upgrade request for `target` with the RFC's sample key.
pub fn ws_upgrade_request(target: &str) -> Vec<u8> {
    request_bytes(
        "GET",
        target,
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", WS_SAMPLE_KEY),
            ("Sec-WebSocket-Version", "13"),
            ("Origin", "http://127.0.0.1"),
        ],
    )
}

// ---------------------------------------------------------------------------------------------
// Live viewer

/// How a [`LiveViewer`] asks for the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `GET` over HTTP/1.1 (chunked body).
    Http11,
    /// `GET` over HTTP/1.0 (body until close).
    Http10,
    /// WebSocket upgrade; the body is the payloads of binary messages.
    WebSocket,
}

#[derive(Debug, Clone)]
pub struct ViewerOpts {
    pub transport: Transport,
    /// Parse the body as FLV into [`LiveRecording::media`].
    pub parse_flv: bool,
    /// Keep this many bytes of the body in [`LiveRecording::body`].
    pub keep_body: usize,
    pub rcvbuf: Option<usize>,
    /// Limit for connecting and for the response head.
    pub timeout: Duration,
}

impl Default for ViewerOpts {
    fn default() -> Self {
        ViewerOpts {
            transport: Transport::Http11,
            parse_flv: true,
            keep_body: 0,
            rcvbuf: None,
            timeout: Duration::from_secs(5),
        }
    }
}

impl ViewerOpts {
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Keep the raw body (up to `bytes`) and do not parse it as FLV.
    pub fn raw(mut self, bytes: usize) -> Self {
        self.parse_flv = false;
        self.keep_body = bytes;
        self
    }
}

/// What a [`LiveViewer`] received.
#[derive(Debug, Clone, Default)]
pub struct LiveRecording {
    /// FLV tags as messages (type 8/9/18, tag timestamp), and how the connection ended.
    pub media: Recording,
    /// Body bytes (de-chunked, or WebSocket payloads) so far.
    pub body_bytes: u64,
    /// The first `keep_body` bytes of the body.
    pub body: Vec<u8>,
    pub flv_header: Option<FileHeader>,
    /// The body stopped being valid FLV (recording stops there).
    pub flv_error: Option<String>,
    /// The chunked coding ended with the last chunk.
    pub body_ended: bool,
    pub ws_binary_messages: u64,
    /// Payloads of pongs the server sent, with their arrival.
    pub ws_pongs: Vec<(Instant, Vec<u8>)>,
    /// A close frame the server sent: its status code, if it had one.
    pub ws_close: Option<Option<u16>>,
    /// Frames that a WS-FLV server should not send (text, masked, malformed), described.
    pub ws_unexpected: Vec<String>,
}

/// A live viewer whose thread records until stopped, closed or `max_duration` passes.
pub struct LiveViewer {
    pub local_addr: SocketAddr,
    pub target: String,
    pub transport: Transport,
    /// The response head (a 101 for WebSocket). For a status other than 200/101 the body is
    /// read into it and nothing is recorded.
    pub response: Response,
    /// When the request was written.
    pub requested: Instant,
    writer: TcpStream,
    recording: Arc<Mutex<LiveRecording>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LiveViewer {
    /// `GET target` over HTTP/1.1 with FLV parsing.
    pub fn start(port: u16, target: &str, max_duration: Duration) -> io::Result<LiveViewer> {
        LiveViewer::start_with(port, target, max_duration, ViewerOpts::default())
    }

    /// Sends the request and reads the response head in this thread (so errors are returned),
    /// then records the body in a thread.
    pub fn start_with(
        port: u16,
        target: &str,
        max_duration: Duration,
        opts: ViewerOpts,
    ) -> io::Result<LiveViewer> {
        let mut conn = HttpConn::connect_with(port, opts.rcvbuf)?;
        conn.timeout = opts.timeout;
        let request = match opts.transport {
            Transport::Http11 => request_bytes("GET", target, &[]),
            Transport::Http10 => {
                format!("GET {target} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").into_bytes()
            }
            Transport::WebSocket => ws_upgrade_request(target),
        };
        conn.send(&request)?;
        let requested = Instant::now();
        let local_addr = conn.local_addr();
        let writer = conn.sock.try_clone()?;
        let mut response = conn.read_head()?;
        let recording = Arc::new(Mutex::new(LiveRecording::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let streaming = matches!(
            (opts.transport, response.status),
            (Transport::WebSocket, 101) | (Transport::Http11 | Transport::Http10, 200)
        );
        let thread = if streaming {
            let recording = recording.clone();
            let stop = stop.clone();
            let deadline = requested + max_duration;
            let chunked = response.chunked;
            let opts = opts.clone();
            Some(std::thread::spawn(move || {
                record_live(conn, chunked, opts, recording, stop, deadline)
            }))
        } else {
            // An error response: read its body by its framing.
            if let Some(len) = response.content_length() {
                let deadline = Instant::now() + opts.timeout;
                while conn.buf.len() < len as usize && conn.fill(deadline, "the body").is_ok() {}
                let take = conn.buf.len().min(len as usize);
                response.body = conn.buf.drain(..take).collect();
            }
            None
        };
        Ok(LiveViewer {
            local_addr,
            target: target.to_string(),
            transport: opts.transport,
            response,
            requested,
            writer,
            recording,
            stop,
            thread,
        })
    }

    /// A copy of what was recorded so far.
    pub fn recording(&self) -> LiveRecording {
        self.recording
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until the recording satisfies `pred` (true) or `timeout` passes (false).
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&LiveRecording) -> bool) -> bool {
        super::wait_until(timeout, || {
            pred(&self.recording.lock().unwrap_or_else(|e| e.into_inner()))
        })
    }

    /// Writes bytes on the connection as they are.
    pub fn send_raw(&self, bytes: &[u8]) -> io::Result<()> {
        (&self.writer).write_all(bytes)
    }

    /// Sends a masked WebSocket frame.
    pub fn ws_send(&self, opcode: Opcode, payload: &[u8]) -> io::Result<()> {
        self.send_raw(&ws_client_frame(opcode, payload, true))
    }

    /// Stops recording, closes the connection and returns everything recorded.
    pub fn stop(mut self) -> LiveRecording {
        self.finish();
        self.recording()
    }

    fn finish(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = self.writer.shutdown(Shutdown::Both);
    }
}

impl Drop for LiveViewer {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Parses FLV from `pending` into the recording; keeps what is not a whole tag yet.
fn feed_flv(pending: &mut Vec<u8>, at: Instant, rec: &mut LiveRecording) {
    let mut used = 0;
    if rec.flv_header.is_none() {
        match FileHeader::parse(pending) {
            Ok((header, n)) => {
                rec.flv_header = Some(header);
                used = n;
            }
            Err(FlvError::Truncated(_)) => return,
            Err(e) => {
                rec.flv_error = Some(format!("bad FLV file header: {e}"));
                return;
            }
        }
    }
    loop {
        match Tag::parse(&pending[used..]) {
            Ok((tag, n)) => {
                rec.media
                    .messages
                    .push(Received::media(at, tag.tag_type, tag.timestamp, tag.body));
                used += n;
            }
            Err(FlvError::Truncated(_)) => break,
            Err(e) => {
                rec.flv_error = Some(format!(
                    "bad FLV tag after {} tags: {e}",
                    rec.media.messages.len()
                ));
                break;
            }
        }
    }
    pending.drain(..used);
}

/// Takes body bytes: counts them, keeps the first ones, parses FLV.
fn take_body(
    data: &[u8],
    at: Instant,
    opts: &ViewerOpts,
    pending: &mut Vec<u8>,
    recording: &Mutex<LiveRecording>,
) {
    let mut rec = recording.lock().unwrap_or_else(|e| e.into_inner());
    rec.body_bytes += data.len() as u64;
    if rec.body.len() < opts.keep_body {
        let take = data.len().min(opts.keep_body - rec.body.len());
        rec.body.extend_from_slice(&data[..take]);
    }
    if opts.parse_flv && rec.flv_error.is_none() {
        pending.extend_from_slice(data);
        feed_flv(pending, at, &mut rec);
    }
}

fn record_live(
    mut conn: HttpConn,
    chunked: bool,
    opts: ViewerOpts,
    recording: Arc<Mutex<LiveRecording>>,
    stop: Arc<AtomicBool>,
    deadline: Instant,
) {
    let mut chunks = chunked.then(ChunkedDecoder::new);
    let mut frames = (opts.transport == Transport::WebSocket).then(|| {
        FrameDecoder::new(WsConfig {
            max_message_size: 64 * 1024 * 1024,
            expect_masked: false,
        })
    });
    let mut pending = Vec::new();
    let mut body = Vec::new();
    let step = Duration::from_millis(50);
    let close = |why: String| {
        recording
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .media
            .closed = Some((Instant::now(), why));
    };
    loop {
        // Decode what is buffered.
        let at = Instant::now();
        if let Some(decoder) = &mut chunks {
            body.clear();
            match decoder.decode(&conn.buf, &mut body) {
                Ok(used) => {
                    conn.buf.drain(..used);
                }
                Err(e) => return close(format!("bad chunked coding: {e}")),
            }
            take_body(&body, at, &opts, &mut pending, &recording);
            if decoder.is_done() {
                recording
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .body_ended = true;
                return close("the chunked body ended".into());
            }
        } else if let Some(decoder) = &mut frames {
            loop {
                match decoder.decode(&conn.buf) {
                    Ok(DecodeStep::NeedMore) => break,
                    Ok(DecodeStep::Consumed { len, message }) => {
                        conn.buf.drain(..len);
                        match message {
                            Some(Message::Binary(payload)) => {
                                recording
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .ws_binary_messages += 1;
                                take_body(&payload, at, &opts, &mut pending, &recording);
                            }
                            Some(Message::Pong(payload)) => recording
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .ws_pongs
                                .push((at, payload)),
                            Some(Message::Ping(payload)) => {
                                let _ = conn.send(&ws_client_frame(Opcode::Pong, &payload, true));
                            }
                            Some(Message::Close(frame)) => {
                                let code = frame.map(|f| f.code);
                                recording.lock().unwrap_or_else(|e| e.into_inner()).ws_close =
                                    Some(code);
                                return close(format!("websocket close frame {code:?}"));
                            }
                            Some(Message::Text(text)) => recording
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .ws_unexpected
                                .push(format!("text message {text:?}")),
                            None => {}
                        }
                    }
                    Err(e) => {
                        recording
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .ws_unexpected
                            .push(format!("bad frame from the server: {e}"));
                        return close(format!("bad websocket frame: {e}"));
                    }
                }
            }
        } else {
            let data = std::mem::take(&mut conn.buf);
            take_body(&data, at, &opts, &mut pending, &recording);
        }
        if stop.load(Ordering::SeqCst) || Instant::now() >= deadline {
            conn.shutdown();
            return;
        }
        match conn.fill((Instant::now() + step).min(deadline), "media") {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                // Decode what came with the FIN first (HTTP/1.0 bodies end so).
                if !conn.buf.is_empty() && chunks.is_none() && frames.is_none() {
                    let data = std::mem::take(&mut conn.buf);
                    take_body(&data, Instant::now(), &opts, &mut pending, &recording);
                }
                return close("closed by the server (EOF)".into());
            }
            Err(e) => return close(format!("connection error: {e}")),
        }
    }
}
