//! A loopback HTTP server that stands in for an SRS callback server: it records every request
//! (method, path, headers, JSON body, arrival time) and answers each by a behaviour chosen by
//! the first segment of its path (`/deny`, `/okjson/on_play`, ...):
//!
//! - `ok0`: 200 with body `0`; `okjson`: 200 `{"code":0}` — both allow;
//! - `deny`: 200 `{"code":1}`; `401`: 401 with body `unauthorized`; `garbage`: 200 `not json`;
//!   `big`: 200 with a 64 KiB body; `empty`: 200 with no body — all refuse;
//! - `hang`: never answers (the connection stays open until the server is dropped);
//! - `slow`: answers `0` after [`SLOW`];
//! - `auto`: the behaviour the request names: `hook=NAME` in the body's `param` (the client's
//!   query string), else the body's `app` up to its first `_` if that is a behaviour name,
//!   else `ok0`. One server can so give each client its own answer.
//!
//! [`down_url`] is a URL whose port nobody listens on. Everything is bounded: connections
//! that send no complete request in 5 s are dropped, request heads and bodies are limited.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long `slow` waits before answering.
pub const SLOW: Duration = Duration::from_millis(2500);
/// How long `hang` holds a request at most (longer than any test's hook timeout).
const HANG_FOR: Duration = Duration::from_secs(60);
const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 1024 * 1024;

/// One request the server received.
#[derive(Debug, Clone)]
pub struct HookRequest {
    /// When its body was complete.
    pub at: Instant,
    pub method: String,
    /// The path with the query, as sent.
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Value::Null` if it was not JSON).
    pub body: Value,
    pub raw_body: String,
    /// The behaviour it was answered with.
    pub behaviour: Behaviour,
}

impl HookRequest {
    /// The body's `action` (`on_publish`, ...).
    pub fn action(&self) -> &str {
        self.body
            .get("action")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// A string field of the body.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.body.get(key).and_then(Value::as_str)
    }

    pub fn client_id(&self) -> &str {
        self.str("client_id").unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How the server answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Ok0,
    OkJson,
    Deny,
    Unauthorized,
    Garbage,
    Big,
    Empty,
    Hang,
    Slow,
}

impl Behaviour {
    pub fn from_name(name: &str) -> Option<Behaviour> {
        Some(match name {
            "ok0" => Behaviour::Ok0,
            "okjson" => Behaviour::OkJson,
            "deny" => Behaviour::Deny,
            "401" => Behaviour::Unauthorized,
            "garbage" => Behaviour::Garbage,
            "big" => Behaviour::Big,
            "empty" => Behaviour::Empty,
            "hang" => Behaviour::Hang,
            "slow" => Behaviour::Slow,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Behaviour::Ok0 => "ok0",
            Behaviour::OkJson => "okjson",
            Behaviour::Deny => "deny",
            Behaviour::Unauthorized => "401",
            Behaviour::Garbage => "garbage",
            Behaviour::Big => "big",
            Behaviour::Empty => "empty",
            Behaviour::Hang => "hang",
            Behaviour::Slow => "slow",
        }
    }

    /// Whether SRS's contract makes this answer allow the client.
    pub fn allows(self) -> bool {
        matches!(self, Behaviour::Ok0 | Behaviour::OkJson | Behaviour::Slow)
    }

    /// The behaviour `auto` picks for a request body.
    fn for_body(body: &Value) -> Behaviour {
        let param = body.get("param").and_then(Value::as_str).unwrap_or("");
        let from_param = param
            .trim_start_matches('?')
            .split('&')
            .find_map(|kv| kv.strip_prefix("hook="))
            .and_then(Behaviour::from_name);
        let app = body.get("app").and_then(Value::as_str).unwrap_or("");
        let from_app = app.split('_').next().and_then(Behaviour::from_name);
        from_param.or(from_app).unwrap_or(Behaviour::Ok0)
    }
}

/// A URL on a loopback port nobody listens on (bound, read, released).
pub fn down_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}/down")
}

struct State {
    requests: Mutex<Vec<HookRequest>>,
    stop: AtomicBool,
}

/// The server; stops (and releases hanging requests) on drop.
pub struct HookServer {
    pub addr: SocketAddr,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl HookServer {
    pub fn start() -> HookServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the hook server");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State {
            requests: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let thread = {
            let state = state.clone();
            std::thread::spawn(move || accept_loop(listener, state))
        };
        HookServer {
            addr,
            state,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT/{path}` (no leading slash in `path`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    /// The URL as a TOML array of one string, for `ServerConfig::hooks`.
    pub fn toml(&self, path: &str) -> String {
        toml_urls(&[self.url(path)])
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<HookRequest> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The requests whose body's action is `action`.
    pub fn requests_of(&self, action: &str) -> Vec<HookRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.action() == action)
            .collect()
    }

    /// Waits for a request matching `pred` (already received or to come).
    pub fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&HookRequest) -> bool,
    ) -> Option<HookRequest> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.requests().into_iter().find(|r| pred(r)) {
                return Some(found);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for a request of `action` matching `pred`; panics naming what came instead.
    pub fn expect(
        &self,
        action: &str,
        timeout: Duration,
        pred: impl Fn(&HookRequest) -> bool,
    ) -> HookRequest {
        self.wait_for(timeout, |r| r.action() == action && pred(r))
            .unwrap_or_else(|| {
                panic!(
                    "no {action} hook request within {timeout:?}; received:\n{}",
                    self.summary()
                )
            })
    }

    /// One line per request so far, for failure messages.
    pub fn summary(&self) -> String {
        self.requests()
            .iter()
            .map(|r| {
                format!(
                    "  {} {} -> {} {}",
                    r.method,
                    r.path,
                    r.behaviour.name(),
                    r.raw_body
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for HookServer {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// URLs as a TOML array.
pub fn toml_urls(urls: &[String]) -> String {
    let quoted: Vec<String> = urls.iter().map(|u| super::toml_string(u)).collect();
    format!("[{}]", quoted.join(", "))
}

fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    while !state.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((sock, _)) => {
                let state = state.clone();
                connections.push(std::thread::spawn(move || {
                    let _ = serve(sock, &state);
                }));
                connections.retain(|c| !c.is_finished());
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    for connection in connections {
        let _ = connection.join();
    }
}

/// Reads one request, records it, answers it, closes.
fn serve(mut sock: TcpStream, state: &State) -> io::Result<()> {
    sock.set_nonblocking(false)?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if buf.len() > MAX_HEAD || Instant::now() >= deadline || state.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        match sock.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("").to_string();
    let path = request_line.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let length = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_BODY);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        if Instant::now() >= deadline || state.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        match sock.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
    let raw_body = String::from_utf8_lossy(&body).into_owned();
    let json: Value = serde_json::from_str(&raw_body).unwrap_or(Value::Null);
    let first = path
        .trim_start_matches('/')
        .split(['/', '?'])
        .next()
        .unwrap_or("");
    let behaviour = match first {
        "auto" => Behaviour::for_body(&json),
        other => Behaviour::from_name(other).unwrap_or(Behaviour::Ok0),
    };
    state
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(HookRequest {
            at: Instant::now(),
            method,
            path,
            headers,
            body: json,
            raw_body,
            behaviour,
        });
    let (status, body): (&str, Vec<u8>) = match behaviour {
        Behaviour::Ok0 => ("200 OK", b"0".to_vec()),
        Behaviour::OkJson => ("200 OK", br#"{"code":0}"#.to_vec()),
        Behaviour::Deny => ("200 OK", br#"{"code":1}"#.to_vec()),
        Behaviour::Unauthorized => ("401 Unauthorized", b"unauthorized".to_vec()),
        Behaviour::Garbage => ("200 OK", b"not json".to_vec()),
        Behaviour::Big => ("200 OK", {
            let mut big = vec![b' '; 64 * 1024];
            big.push(b'0');
            big
        }),
        Behaviour::Empty => ("200 OK", Vec::new()),
        Behaviour::Slow => {
            sleep_unless_stopped(SLOW, state);
            ("200 OK", b"0".to_vec())
        }
        Behaviour::Hang => {
            sleep_unless_stopped(HANG_FOR, state);
            return Ok(());
        }
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    let _ = sock.write_all(&response);
    let _ = sock.flush();
    Ok(())
}

fn sleep_unless_stopped(duration: Duration, state: &State) {
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline && !state.stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(10));
    }
}
