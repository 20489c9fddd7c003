//! What the WebRTC clients (the WHEP viewers, the WHIP publisher) share: a
//! [str0m](https://docs.rs/str0m) `Rtc` with a host candidate on a UDP socket of its own,
//! driven from the load tool's thread, and its signalling, a plain HTTP/1.1 exchange on a
//! connection of the driver (`POST` of a non-trickle offer, `201 Created` with the answer and a
//! `Location` to `DELETE` at the end), closed by us once the response is in (at its
//! `Content-Length`, chunked end, or the server's close). No `Connection: close`: the io_uring
//! driver has lost a response whose FIN came right behind it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_ring::{ConnId, Driver, RecvBuf, UdpId};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};

use crate::udp::guarded;

/// The shortest timer: an `Rtc` that asks for "now" again is not spun on.
const MIN_WAKE: Duration = Duration::from_micros(500);
/// Largest signalling response accepted.
const MAX_RESPONSE: usize = 64 * 1024;
/// How long shutdown waits for the `DELETE` responses.
pub const DELETE_WAIT: Duration = Duration::from_secs(2);

/// Where a session is.
pub enum State {
    /// The offer is out; the answer is awaited.
    Signalling(Box<SdpPendingOffer>),
    /// ICE, DTLS, then media.
    Media,
    Done,
}

/// A client's `Rtc` configuration: H.264 and Opus only, and a DTLS certificate of its own.
pub fn client_config() -> Result<RtcConfig, String> {
    let provider = str0m::crypto::from_feature_flags();
    let cert = provider
        .dtls_provider
        .generate_certificate()
        .ok_or("cannot generate a DTLS certificate")?;
    Ok(RtcConfig::new()
        .set_crypto_provider(Arc::new(provider))
        .set_dtls_cert(cert)
        .clear_codecs()
        .enable_h264(true)
        .enable_opus(true, false))
}

/// A new `Rtc` and its offer.
pub struct Offer {
    pub rtc: Rtc,
    pub video: Mid,
    pub audio: Mid,
    pub sdp: String,
    pub pending: SdpPendingOffer,
}

/// Builds an `Rtc` from `config` with a host candidate on `local`, and its offer of one video
/// and one audio section, both `direction`.
pub fn offer(
    config: RtcConfig,
    now: Instant,
    local: SocketAddr,
    direction: Direction,
) -> Result<Offer, String> {
    let made = guarded(|| {
        let mut rtc = config.build(now);
        let candidate = Candidate::host(local, "udp").map_err(|e| e.to_string())?;
        rtc.add_local_candidate(candidate);
        let mut api = rtc.sdp_api();
        let video = api.add_media(MediaKind::Video, direction, None, None, None);
        let audio = api.add_media(MediaKind::Audio, direction, None, None, None);
        let (offer, pending) = api.apply().ok_or("no offer")?;
        let sdp = offer.to_sdp_string();
        Ok::<_, String>(Offer {
            rtc,
            video,
            audio,
            sdp,
            pending,
        })
    });
    match made {
        Some(Ok(made)) => Ok(made),
        Some(Err(e)) => Err(format!("offer: {e}")),
        None => Err("str0m panicked".into()),
    }
}

/// Feeds `rtc` a timeout (`None`) or a datagram that came to `local`, sends what it transmits
/// on `sock`, and hands its events to `on_event` until it names its next timer. Returns that
/// time (no sooner than [`MIN_WAKE`] from `now`), or why the session failed (a str0m error or
/// panic, ICE disconnected).
pub fn drive(
    rtc: &mut Rtc,
    driver: &mut Driver,
    sock: UdpId,
    local: SocketAddr,
    now: Instant,
    datagram: Option<(SocketAddr, &[u8])>,
    mut on_event: impl FnMut(&mut Rtc, Event),
) -> Result<Instant, String> {
    let input_ok = guarded(|| match datagram {
        None => rtc
            .handle_input(Input::Timeout(now))
            .map_err(|e| e.to_string()),
        Some((source, contents)) => {
            let Ok(contents) = contents.try_into() else {
                return Ok(());
            };
            let input = Input::Receive(
                now,
                Receive {
                    proto: Protocol::Udp,
                    source,
                    destination: local,
                    contents,
                },
            );
            if !rtc.accepts(&input) {
                return Ok(());
            }
            rtc.handle_input(input).map_err(|e| e.to_string())
        }
    });
    match input_ok {
        Some(Ok(())) => {}
        Some(Err(e)) => return Err(format!("str0m: {e}")),
        None => return Err("str0m panicked".into()),
    }
    loop {
        let output = match guarded(|| rtc.poll_output()) {
            Some(Ok(output)) => output,
            Some(Err(e)) => return Err(format!("str0m: {e}")),
            None => return Err("str0m panicked".into()),
        };
        match output {
            Output::Timeout(at) => return Ok(at.max(now + MIN_WAKE)),
            Output::Transmit(t) => driver.send_to(sock, t.destination, &t.contents),
            Output::Event(Event::IceConnectionStateChange(IceConnectionState::Disconnected)) => {
                return Err("ICE disconnected".into());
            }
            Output::Event(event) => on_event(rtc, event),
        }
    }
}

/// A session not yet connected has `timeout` from `started` for ICE and DTLS: past that, why
/// it failed; before it, its next timer `wake` no later than the deadline.
pub fn connect_deadline(
    connected: bool,
    started: Instant,
    timeout: Duration,
    now: Instant,
    wake: Instant,
) -> Result<Instant, String> {
    if connected {
        return Ok(wake);
    }
    if now >= started + timeout {
        return Err(format!("ICE/DTLS not connected in {} s", timeout.as_secs()));
    }
    Ok(wake.min(started + timeout))
}

/// Closes a session's `Rtc` (it says goodbye to the server) and ends the session. Returns
/// whether it had reached media (then it has something to `DELETE`).
pub fn close(state: &mut State, rtc: &mut Option<Box<Rtc>>) -> bool {
    if let Some(rtc) = rtc.as_mut() {
        let _ = guarded(|| rtc.disconnect());
    }
    let was_media = matches!(state, State::Media);
    *state = State::Done;
    *rtc = None;
    was_media
}

/// An HTTP exchange in flight: the signalling `POST`, or the `DELETE` at the end.
pub struct Exchange {
    pub conn: ConnId,
    response: Vec<u8>,
}

impl Exchange {
    fn send(driver: &mut Driver, conn: ConnId, request: String) -> Exchange {
        driver.send(conn, request.into_bytes().into());
        Exchange {
            conn,
            response: Vec::new(),
        }
    }

    /// Connects to the endpoint `api` and `POST`s the offer `sdp` to `path`.
    pub fn post_offer(
        driver: &mut Driver,
        api: SocketAddr,
        host: &str,
        path: &str,
        sdp: &str,
    ) -> Result<Exchange, String> {
        let conn = driver.connect(api).map_err(|e| format!("connect: {e}"))?;
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: sluice-load\r\nContent-Type: \
             application/sdp\r\nAccept: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        Ok(Exchange::send(driver, conn, request))
    }

    /// Connects to the endpoint `api` (at `path`) and `DELETE`s the session at `location`;
    /// `None` if it cannot connect.
    pub fn delete(
        driver: &mut Driver,
        api: SocketAddr,
        host: &str,
        path: &str,
        location: &str,
    ) -> Option<Exchange> {
        let target = delete_target(location, path);
        let conn = driver.connect(api).ok()?;
        let request = format!(
            "DELETE {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: sluice-load\r\n\
             Content-Length: 0\r\n\r\n"
        );
        Some(Exchange::send(driver, conn, request))
    }

    /// Adds the bytes of a receive to the response (the buffer goes back to the driver).
    /// Returns false, keeping none of them, if the response would grow too large.
    pub fn receive(&mut self, driver: &mut Driver, buf: RecvBuf) -> bool {
        let data = driver.recv_data(&buf);
        let fits = self.response.len() + data.len() <= MAX_RESPONSE;
        if fits {
            self.response.extend_from_slice(data);
        }
        driver.release(buf);
        fits
    }

    /// The response, once complete ([`parse_reply`]).
    pub fn reply(&self, closed: bool) -> Result<Option<HttpReply>, String> {
        parse_reply(&self.response, closed)
    }
}

/// Why a signalling reply refuses the offer (a status other than 200 or 201), if it does.
pub fn refusal(reply: &HttpReply) -> Option<String> {
    if reply.status == 201 || reply.status == 200 {
        return None;
    }
    let text = String::from_utf8_lossy(&reply.body);
    let text: String = text.chars().take(120).collect();
    Some(format!("status {} {}", reply.status, text.trim()))
}

/// The SDP answer in a signalling reply's body.
pub fn parse_answer(reply: &HttpReply) -> Result<SdpAnswer, String> {
    let text = String::from_utf8_lossy(&reply.body);
    SdpAnswer::from_sdp_string(&text).map_err(|e| format!("answer: {e}"))
}

/// Applies the server's answer to the `pending` offer.
pub fn accept_answer(
    rtc: &mut Rtc,
    pending: SdpPendingOffer,
    answer: SdpAnswer,
) -> Result<(), String> {
    match guarded(|| rtc.sdp_api().accept_answer(pending, answer)) {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(format!("answer: {e}")),
        None => Err("str0m panicked".into()),
    }
}

/// A complete HTTP response: status, `Location` header and body.
#[derive(Debug, PartialEq, Eq)]
pub struct HttpReply {
    pub status: u16,
    pub location: Option<String>,
    pub body: Vec<u8>,
}

/// Parses a response received so far: `Ok(None)` until it is complete (at its
/// `Content-Length`, or at the close when `closed` and it has none).
pub fn parse_reply(data: &[u8], closed: bool) -> Result<Option<HttpReply>, String> {
    let Some(head_end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
        if closed {
            return Err("connection closed before the response head".into());
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&data[..head_end]).map_err(|_| "response head not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut length = None;
    let mut location = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| format!("bad Content-Length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("location") {
            location = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    let body = &data[head_end + 4..];
    let body = if chunked {
        match dechunk(body)? {
            Some(body) => body,
            None if closed => return Err("connection closed inside a chunked body".into()),
            None => return Ok(None),
        }
    } else {
        match length {
            Some(n) if body.len() >= n => body[..n].to_vec(),
            Some(_) if closed => return Err("connection closed inside the body".into()),
            Some(_) => return Ok(None),
            None if closed => body.to_vec(),
            None => return Ok(None),
        }
    };
    Ok(Some(HttpReply {
        status,
        location,
        body,
    }))
}

/// A chunked body, once its last chunk is in.
fn dechunk(mut data: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&data[..eol]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(Some(body));
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// The request target for a `Location` header: absolute URLs lose their scheme and authority,
/// relative ones are resolved against the endpoint's path.
pub(crate) fn delete_target(location: &str, endpoint: &str) -> String {
    if let Some(rest) = location
        .strip_prefix("http://")
        .or_else(|| location.strip_prefix("https://"))
    {
        return rest
            .find('/')
            .map_or_else(|| "/".to_string(), |i| rest[i..].to_string());
    }
    if location.starts_with('/') {
        return location.to_string();
    }
    let base = endpoint.split('?').next().unwrap_or(endpoint);
    let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
    format!("{dir}{location}")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream, UdpSocket};
    use str0m::change::SdpOffer;

    /// Reads one HTTP request (head and `Content-Length` body) from `stream`.
    pub(crate) fn read_request(stream: &mut TcpStream) -> (String, Vec<u8>) {
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "request cut short");
            data.extend_from_slice(&buf[..n]);
            let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&data[..end]).into_owned();
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                return (head, data[end + 4..end + 4 + length].to_vec());
            }
        }
    }

    /// The server side of a test session: an ICE-lite str0m `Rtc` on a UDP socket.
    pub(crate) struct TestServer {
        pub rtc: Rtc,
        socket: UdpSocket,
        local: SocketAddr,
        buf: Vec<u8>,
    }

    impl TestServer {
        /// Accepts the offer `POST`ed to `path` on `listener` and answers it from an `Rtc` on
        /// `socket`, naming `location` to `DELETE`. Returns the server and the `POST`'s
        /// connection, left open (the client closes it once the response is in).
        pub(crate) fn answer(
            listener: &TcpListener,
            socket: UdpSocket,
            path: &str,
            location: &str,
        ) -> (TestServer, TcpStream) {
            let (mut stream, _) = listener.accept().unwrap();
            let (head, body) = read_request(&mut stream);
            assert!(head.starts_with(&format!("POST {path} ")), "{head}");
            assert!(head.contains("Content-Type: application/sdp"), "{head}");
            let local = socket.local_addr().unwrap();
            let mut rtc = RtcConfig::new()
                .set_ice_lite(true)
                .clear_codecs()
                .enable_h264(true)
                .enable_opus(true, false)
                .build(Instant::now());
            rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
            let offer = SdpOffer::from_sdp_string(std::str::from_utf8(&body).unwrap()).unwrap();
            let answer = rtc.sdp_api().accept_offer(offer).unwrap().to_sdp_string();
            let reply = format!(
                "HTTP/1.1 201 Created\r\nContent-Type: application/sdp\r\nLocation: \
                 {location}\r\nContent-Length: {}\r\n\r\n{answer}",
                answer.len()
            );
            stream.write_all(reply.as_bytes()).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_millis(2)))
                .unwrap();
            let server = TestServer {
                rtc,
                socket,
                local,
                buf: vec![0u8; 2048],
            };
            (server, stream)
        }

        /// Polls the `Rtc` until it names a timer, sending what it transmits and handing its
        /// events to `on_event`; then feeds it a datagram (waiting up to 2 ms) or the time.
        pub(crate) fn turn(&mut self, mut on_event: impl FnMut(&mut Rtc, Event)) {
            let timeout = loop {
                match self.rtc.poll_output().unwrap() {
                    Output::Timeout(at) => break at,
                    Output::Transmit(t) => {
                        self.socket.send_to(&t.contents, t.destination).unwrap();
                    }
                    Output::Event(event) => on_event(&mut self.rtc, event),
                }
            };
            let input = match self.socket.recv_from(&mut self.buf) {
                Ok((n, source)) => Input::Receive(
                    Instant::now(),
                    Receive {
                        proto: Protocol::Udp,
                        source,
                        destination: self.local,
                        contents: self.buf[..n].try_into().unwrap(),
                    },
                ),
                Err(_) => Input::Timeout(Instant::now().max(timeout.min(Instant::now()))),
            };
            self.rtc.handle_input(input).unwrap();
        }
    }

    /// Answers the `DELETE` on `stream` and waits until the client has closed (or a moment).
    /// Returns the request line.
    pub(crate) fn answer_delete(mut stream: TcpStream) -> String {
        let (head, _) = read_request(&mut stream);
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let _ = stream.read(&mut [0u8; 16]);
        head.lines().next().unwrap().to_string()
    }

    #[test]
    fn replies() {
        let head = b"HTTP/1.1 201 Created\r\nContent-Type: application/sdp\r\nLocation: \
                     /rtc/v1/whep/?action=delete&token=x\r\nContent-Length: 5\r\n\r\n";
        let mut data = head.to_vec();
        assert_eq!(parse_reply(&data, false), Ok(None));
        data.extend_from_slice(b"v=0\r\n");
        let reply = parse_reply(&data, false).unwrap().unwrap();
        assert_eq!(reply.status, 201);
        assert_eq!(
            reply.location.as_deref(),
            Some("/rtc/v1/whep/?action=delete&token=x")
        );
        assert_eq!(reply.body, b"v=0\r\n");
        assert!(parse_reply(&data[..data.len() - 1], true).is_err());

        let chunked = b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n\
                        2\r\nde\r\n0\r\n\r\n";
        let reply = parse_reply(chunked, false).unwrap().unwrap();
        assert_eq!((reply.status, reply.body.as_slice()), (404, &b"abcde"[..]));
        assert_eq!(parse_reply(&chunked[..60], false), Ok(None));

        let close_delimited = b"HTTP/1.0 200 OK\r\n\r\nbody";
        assert_eq!(parse_reply(close_delimited, false), Ok(None));
        assert_eq!(
            parse_reply(close_delimited, true).unwrap().unwrap().body,
            b"body"
        );
        assert!(parse_reply(b"SIP/2.0 200 OK\r\n\r\n", true).is_err());
    }

    #[test]
    fn delete_targets() {
        let endpoint = "/rtc/v1/whep/?app=live&stream=s";
        assert_eq!(delete_target("/whep/abc", endpoint), "/whep/abc");
        assert_eq!(
            delete_target("http://127.0.0.1:1985/rtc/v1/whep/x?y", endpoint),
            "/rtc/v1/whep/x?y"
        );
        assert_eq!(delete_target("abc", endpoint), "/rtc/v1/whep/abc");
    }
}
