//! A small RTMP client for the tests, built on `sluice_proto`: handshake, connect (with a
//! tcUrl), createStream, play, publish, raw messages; and [`Player`], a thread that records
//! every message a player receives with its arrival time. Cheaper than an ffmpeg per player,
//! and exact about timing.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sluice_proto::amf0::{self, Amf0Value};
use sluice_proto::rtmp::{
    ChunkReader, ChunkReaderConfig, ChunkWriter, ClientHandshake, Command, HandshakeKind,
    MessageHeader, RtmpMessage,
};

pub const TYPE_SET_CHUNK_SIZE: u8 = 1;
pub const TYPE_USER_CONTROL: u8 = 4;
pub const TYPE_AUDIO: u8 = 8;
pub const TYPE_VIDEO: u8 = 9;
pub const TYPE_DATA: u8 = 18;
pub const TYPE_COMMAND: u8 = 20;

/// Chunk stream ids the client writes on (what ffmpeg uses).
pub const CSID_CONTROL: u32 = 2;
pub const CSID_COMMAND: u32 = 3;
pub const CSID_MEDIA: u32 = 8;

/// How a test client connects.
#[derive(Debug, Clone)]
pub struct ClientOpts {
    pub app: String,
    /// `SO_RCVBUF` set before connecting (a small one makes a stuck reader stall quickly).
    pub rcvbuf: Option<usize>,
    pub handshake: HandshakeKind,
    /// Limit for each step (TCP connect, handshake, each reply).
    pub timeout: Duration,
}

impl Default for ClientOpts {
    fn default() -> Self {
        ClientOpts {
            app: "live".into(),
            rcvbuf: None,
            handshake: HandshakeKind::Complex,
            timeout: Duration::from_secs(5),
        }
    }
}

/// A TCP connection to the server on loopback, optionally with a small receive buffer.
pub fn tcp(port: u16, rcvbuf: Option<usize>, timeout: Duration) -> io::Result<TcpStream> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    if let Some(size) = rcvbuf {
        socket.set_recv_buffer_size(size)?;
    }
    socket.connect_timeout(&addr.into(), timeout)?;
    let stream: TcpStream = socket.into();
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Reads and discards until the server closes the connection (true) or `timeout` passes.
pub fn wait_closed(sock: &mut TcpStream, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let _ = sock.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        match sock.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// An RTMP client connection.
pub struct RtmpClient {
    sock: TcpStream,
    reader: ChunkReader,
    writer: ChunkWriter,
    next_transaction: f64,
    /// Messages read but not yet returned (read while waiting for a reply).
    backlog: VecDeque<(Instant, RtmpMessage)>,
    buf: Vec<u8>,
    pub port: u16,
    pub opts: ClientOpts,
}

impl RtmpClient {
    /// TCP + RTMP handshake only (no connect command).
    pub fn handshake(port: u16, opts: ClientOpts) -> io::Result<RtmpClient> {
        let mut sock = tcp(port, opts.rcvbuf, opts.timeout)?;
        let seed = u64::from(port) ^ 0x7E57_C11E;
        let mut handshake = ClientHandshake::new(opts.handshake, seed);
        let c0c1 = handshake.poll_transmit().expect("C0C1");
        sock.write_all(&c0c1)?;
        let deadline = Instant::now() + opts.timeout;
        let mut buf = vec![0u8; 64 * 1024];
        let mut leftover = Vec::new();
        while !handshake.is_done() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "handshake timed out",
                ));
            }
            sock.set_read_timeout(Some(left))?;
            let n = match sock.read(&mut buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => n,
                // A signal (another test's child exiting) may interrupt the read: try again.
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let used = handshake
                .handle_input(&buf[..n])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            leftover.extend_from_slice(&buf[used..n]);
        }
        let c2 = handshake.poll_transmit().expect("C2");
        sock.write_all(&c2)?;
        let mut client = RtmpClient {
            sock,
            reader: ChunkReader::new(ChunkReaderConfig::default()),
            writer: ChunkWriter::new(128),
            next_transaction: 1.0,
            backlog: VecDeque::new(),
            buf,
            port,
            opts,
        };
        if !leftover.is_empty() {
            client.feed(&leftover, Instant::now())?;
        }
        Ok(client)
    }

    /// Handshake and `connect` to the app; returns once the `_result` arrived.
    pub fn connect(port: u16, opts: ClientOpts) -> io::Result<RtmpClient> {
        let mut client = RtmpClient::handshake(port, opts)?;
        let reply = client.connect_app()?;
        if reply.name != "_result" {
            return Err(io::Error::other(format!("connect refused: {reply:?}")));
        }
        Ok(client)
    }

    pub fn tc_url(&self) -> String {
        format!("rtmp://127.0.0.1:{}/{}", self.port, self.opts.app)
    }

    /// Sends `connect` and waits for its `_result`/`_error`.
    pub fn connect_app(&mut self) -> io::Result<Command> {
        let object = Amf0Value::object([
            ("app", Amf0Value::from(self.opts.app.as_str())),
            ("flashVer", "LNX 9,0,124,2".into()),
            ("tcUrl", self.tc_url().into()),
            ("fpad", false.into()),
            ("capabilities", 15.0.into()),
            ("audioCodecs", 4071.0.into()),
            ("videoCodecs", 252.0.into()),
            ("videoFunction", 1.0.into()),
        ]);
        self.call(0, "connect", object, vec![])
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.sock.local_addr().expect("local addr")
    }

    pub fn socket(&mut self) -> &mut TcpStream {
        &mut self.sock
    }

    /// Writes bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.sock.write_all(bytes)
    }

    /// Writes one message at the client's outgoing chunk size.
    pub fn send(
        &mut self,
        csid: u32,
        type_id: u8,
        stream_id: u32,
        timestamp: u32,
        payload: &[u8],
    ) -> io::Result<()> {
        let header = MessageHeader {
            timestamp,
            length: payload.len() as u32,
            type_id,
            stream_id,
        };
        let mut wire = Vec::with_capacity(payload.len() + 64);
        self.writer.write(&mut wire, csid, &header, payload);
        self.sock.write_all(&wire)
    }

    /// Sends SetChunkSize and uses the size from then on.
    pub fn set_chunk_size(&mut self, size: u32) -> io::Result<()> {
        self.send(CSID_CONTROL, TYPE_SET_CHUNK_SIZE, 0, 0, &size.to_be_bytes())?;
        self.writer.set_chunk_size(size);
        Ok(())
    }

    pub fn send_command(&mut self, csid: u32, stream_id: u32, command: &Command) -> io::Result<()> {
        let mut body = Vec::new();
        command.encode(&mut body);
        self.send(csid, TYPE_COMMAND, stream_id, 0, &body)
    }

    /// Sends a command with a new transaction id and waits for the `_result` or `_error` with
    /// that id.
    pub fn call(
        &mut self,
        stream_id: u32,
        name: &str,
        object: Amf0Value,
        arguments: Vec<Amf0Value>,
    ) -> io::Result<Command> {
        let transaction = self.next_transaction;
        self.next_transaction += 1.0;
        let csid = if stream_id == 0 {
            CSID_COMMAND
        } else {
            CSID_MEDIA
        };
        self.send_command(
            csid,
            stream_id,
            &Command::new(name, transaction, object, arguments),
        )?;
        self.wait_command(self.opts.timeout, |c| {
            matches!(c.name.as_str(), "_result" | "_error") && c.transaction_id == transaction
        })
    }

    /// Waits for a command matching `pred`; other messages stay queued for `read_message`.
    pub fn wait_command(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Command) -> bool,
    ) -> io::Result<Command> {
        let deadline = Instant::now() + timeout;
        let mut scanned = 0;
        loop {
            while scanned < self.backlog.len() {
                let (_, message) = &self.backlog[scanned];
                if let Some(command) = decode_command(message)
                    && pred(&command)
                {
                    self.backlog.remove(scanned);
                    return Ok(command);
                }
                scanned += 1;
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the expected reply did not come",
                ));
            }
            self.fill(deadline)?;
        }
    }

    /// `createStream`; returns the message stream id.
    pub fn create_stream(&mut self) -> io::Result<u32> {
        let reply = self.call(0, "createStream", Amf0Value::Null, vec![])?;
        reply
            .number_argument(0)
            .map(|id| id as u32)
            .ok_or_else(|| io::Error::other(format!("createStream: {reply:?}")))
    }

    /// Sends `play` as ffmpeg does (a fresh transaction id, null object, name, start -2000)
    /// and returns when it was written.
    pub fn play(&mut self, stream_id: u32, name: &str) -> io::Result<Instant> {
        let transaction = self.next_transaction;
        self.next_transaction += 1.0;
        let command = Command::new(
            "play",
            transaction,
            Amf0Value::Null,
            vec![name.into(), Amf0Value::Number(-2000.0)],
        );
        self.send_command(CSID_MEDIA, stream_id, &command)?;
        let sent = Instant::now();
        // SetBufferLength, as ffmpeg sends after play.
        let mut body = vec![0, 3];
        body.extend_from_slice(&stream_id.to_be_bytes());
        body.extend_from_slice(&3000u32.to_be_bytes());
        self.send(CSID_CONTROL, TYPE_USER_CONTROL, 0, 1, &body)?;
        Ok(sent)
    }

    /// Waits for an `onStatus` and returns its code.
    pub fn wait_status(&mut self, timeout: Duration) -> io::Result<String> {
        let status = self.wait_command(timeout, |c| c.name == "onStatus")?;
        Ok(status_code(&status).unwrap_or_default())
    }

    /// releaseStream, FCPublish, publish; returns the onStatus code the server answered.
    pub fn publish(&mut self, stream_id: u32, name: &str) -> io::Result<String> {
        for command in ["releaseStream", "FCPublish"] {
            let transaction = self.next_transaction;
            self.next_transaction += 1.0;
            let command = Command::new(command, transaction, Amf0Value::Null, vec![name.into()]);
            self.send_command(CSID_COMMAND, 0, &command)?;
        }
        let transaction = self.next_transaction;
        self.next_transaction += 1.0;
        let command = Command::new(
            "publish",
            transaction,
            Amf0Value::Null,
            vec![name.into(), "live".into()],
        );
        self.send_command(CSID_MEDIA, stream_id, &command)?;
        self.wait_status(self.opts.timeout)
    }

    /// The next message, or `None` if none arrives by `deadline`. Errors when the connection
    /// closes (`UnexpectedEof` for a clean close).
    pub fn read_message(
        &mut self,
        deadline: Instant,
    ) -> io::Result<Option<(Instant, RtmpMessage)>> {
        loop {
            if let Some(message) = self.backlog.pop_front() {
                return Ok(Some(message));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            self.fill(deadline)?;
        }
    }

    /// Reads once from the socket (up to `deadline`) into the backlog.
    fn fill(&mut self, deadline: Instant) -> io::Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        self.sock.set_read_timeout(Some(left))?;
        let mut buf = std::mem::take(&mut self.buf);
        let result = match self.sock.read(&mut buf) {
            Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => self.feed(&buf[..n], Instant::now()),
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e),
        };
        self.buf = buf;
        result
    }

    fn feed(&mut self, mut data: &[u8], at: Instant) -> io::Result<()> {
        loop {
            match self.reader.read_message(&mut data) {
                Ok(Some(message)) => self.backlog.push_back((at, message)),
                Ok(None) => return Ok(()),
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("server sent a bad chunk stream: {e}"),
                    ));
                }
            }
        }
    }

    /// Reads (and drops) until the server closes the connection: true if it did in time.
    pub fn wait_closed(&mut self, timeout: Duration) -> bool {
        wait_closed(&mut self.sock, timeout)
    }

    pub fn shutdown(&self) {
        let _ = self.sock.shutdown(Shutdown::Both);
    }
}

/// The command in an AMF0 command message.
pub fn decode_command(message: &RtmpMessage) -> Option<Command> {
    (message.header.type_id == TYPE_COMMAND)
        .then(|| Command::decode(&message.payload).ok())
        .flatten()
}

/// The `code` of an onStatus command.
pub fn status_code(command: &Command) -> Option<String> {
    command
        .arguments
        .first()?
        .get("code")?
        .as_str()
        .map(str::to_string)
}

// ---------------------------------------------------------------------------------------------
// Recording player

/// One message a player received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub type_id: u8,
    pub timestamp: u32,
    pub len: usize,
    /// Video: FLV frame type 1.
    pub keyframe: bool,
    /// Video/audio: AVC/AAC packet type 0 (decoder configuration).
    pub seq_header: bool,
    /// Hash of the payload (tells streams apart without keeping the bytes).
    pub hash: u64,
    /// `onMetaData` width, if this is the metadata message.
    pub metadata_width: Option<f64>,
    /// Command name; for onStatus, `onStatus:CODE`.
    pub command: Option<String>,
}

impl Received {
    fn new(at: Instant, message: &RtmpMessage) -> Received {
        let mut received = Received::media(
            at,
            message.header.type_id,
            message.header.timestamp,
            &message.payload,
        );
        received.command = decode_command(message).map(|c| match status_code(&c) {
            Some(code) if c.name == "onStatus" => format!("onStatus:{code}"),
            _ => c.name,
        });
        received
    }

    /// A message with this type (8 audio, 9 video, 18 data), timestamp and payload — what an
    /// RTMP message or an FLV tag carries.
    pub fn media(at: Instant, type_id: u8, timestamp: u32, payload: &[u8]) -> Received {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        payload.hash(&mut hasher);
        let first = payload.first().copied().unwrap_or(0);
        let second = payload.get(1).copied();
        let (keyframe, seq_header) = match type_id {
            TYPE_VIDEO => (first >> 4 == 1, first & 0x0f == 7 && second == Some(0)),
            TYPE_AUDIO => (false, first >> 4 == 10 && second == Some(0)),
            _ => (false, false),
        };
        let metadata_width = (type_id == TYPE_DATA)
            .then(|| metadata_width(payload))
            .flatten();
        Received {
            at,
            type_id,
            timestamp,
            len: payload.len(),
            keyframe,
            seq_header,
            hash: hasher.finish(),
            metadata_width,
            command: None,
        }
    }

    pub fn is_video(&self) -> bool {
        self.type_id == TYPE_VIDEO
    }

    pub fn is_audio(&self) -> bool {
        self.type_id == TYPE_AUDIO
    }

    /// A video message carrying a picture (not the sequence header).
    pub fn is_video_frame(&self) -> bool {
        self.is_video() && !self.seq_header
    }

    pub fn is_media(&self) -> bool {
        self.is_video() || self.is_audio()
    }
}

fn metadata_width(payload: &[u8]) -> Option<f64> {
    let values = amf0::decode_all(payload).ok()?;
    values.iter().find_map(|v| v.get("width")?.as_f64())
}

/// What a [`Player`] recorded.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    pub messages: Vec<Received>,
    /// When and how the connection ended, if it did.
    pub closed: Option<(Instant, String)>,
}

impl Recording {
    pub fn video_frames(&self) -> impl Iterator<Item = &Received> {
        self.messages.iter().filter(|m| m.is_video_frame())
    }

    pub fn first_keyframe(&self) -> Option<&Received> {
        self.video_frames().find(|m| m.keyframe)
    }

    /// Video frames that arrived in `[from, to)`.
    pub fn video_frames_between(&self, from: Instant, to: Instant) -> usize {
        self.video_frames()
            .filter(|m| m.at >= from && m.at < to)
            .count()
    }

    /// The longest time between consecutive video frames arriving in `[from, to]`, counting
    /// the edges of the window.
    pub fn max_video_gap(&self, from: Instant, to: Instant) -> Duration {
        let mut last = from;
        let mut gap = Duration::ZERO;
        for m in self.video_frames().filter(|m| m.at >= from && m.at <= to) {
            gap = gap.max(m.at - last);
            last = m.at;
        }
        gap.max(to.saturating_duration_since(last))
    }

    /// Checks that audio and video timestamps each never go backwards.
    pub fn check_monotonic(&self) -> Result<(), String> {
        for (name, type_id) in [("video", TYPE_VIDEO), ("audio", TYPE_AUDIO)] {
            let mut last: Option<u32> = None;
            for (i, m) in self.messages.iter().enumerate() {
                if m.type_id != type_id {
                    continue;
                }
                if let Some(prev) = last
                    && m.timestamp < prev
                {
                    return Err(format!(
                        "{name} timestamp went backwards at message {i}: {prev} -> {}",
                        m.timestamp
                    ));
                }
                last = Some(m.timestamp);
            }
        }
        Ok(())
    }

    pub fn count(&self, pred: impl Fn(&Received) -> bool) -> usize {
        self.messages.iter().filter(|m| pred(m)).count()
    }

    /// The commands received, in order (`onStatus:NetStream.Play.Start`, ...).
    pub fn commands(&self) -> Vec<&str> {
        self.messages
            .iter()
            .filter_map(|m| m.command.as_deref())
            .collect()
    }
}

/// A player connection whose thread records every message until stopped, closed, or
/// `max_duration` passes.
pub struct Player {
    pub local_addr: SocketAddr,
    pub stream_name: String,
    /// When the play command was written.
    pub play_sent: Instant,
    recording: Arc<Mutex<Recording>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Player {
    /// Connects, creates a stream and plays `live/<stream>` (in this thread, so errors are
    /// returned), then records in a thread.
    pub fn start(port: u16, stream: &str, max_duration: Duration) -> io::Result<Player> {
        Player::start_with(port, stream, max_duration, ClientOpts::default())
    }

    pub fn start_with(
        port: u16,
        stream: &str,
        max_duration: Duration,
        opts: ClientOpts,
    ) -> io::Result<Player> {
        let mut client = RtmpClient::connect(port, opts)?;
        let stream_id = client.create_stream()?;
        let play_sent = client.play(stream_id, stream)?;
        let local_addr = client.local_addr();
        let recording = Arc::new(Mutex::new(Recording::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let recording = recording.clone();
            let stop = stop.clone();
            let deadline = play_sent + max_duration;
            std::thread::spawn(move || record(client, recording, stop, deadline))
        };
        Ok(Player {
            local_addr,
            stream_name: stream.to_string(),
            play_sent,
            recording,
            stop,
            thread: Some(thread),
        })
    }

    /// A copy of what was recorded so far.
    pub fn recording(&self) -> Recording {
        self.recording
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until the recording satisfies `pred` (true) or `timeout` passes (false).
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Recording) -> bool) -> bool {
        super::wait_until(timeout, || {
            pred(&self.recording.lock().unwrap_or_else(|e| e.into_inner()))
        })
    }

    /// Stops recording, closes the connection and returns everything recorded.
    pub fn stop(mut self) -> Recording {
        self.finish();
        self.recording()
    }

    fn finish(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        self.finish();
    }
}

fn record(
    mut client: RtmpClient,
    recording: Arc<Mutex<Recording>>,
    stop: Arc<AtomicBool>,
    deadline: Instant,
) {
    let step = Duration::from_millis(50);
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        match client.read_message((Instant::now() + step).min(deadline)) {
            Ok(Some((at, message))) => {
                let received = Received::new(at, &message);
                recording
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .messages
                    .push(received);
            }
            Ok(None) => {}
            Err(e) => {
                recording.lock().unwrap_or_else(|e| e.into_inner()).closed =
                    Some((Instant::now(), e.to_string()));
                return;
            }
        }
    }
    client.shutdown();
}
