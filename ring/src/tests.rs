//! Driver tests, run on every backend this machine has: real sockets on loopback, real
//! clients on their own threads.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;

fn backends() -> Vec<Backend> {
    let mut all = vec![Backend::Epoll];
    match uring_support() {
        Ok(()) => all.push(Backend::Uring),
        Err(why) => eprintln!("skipping io_uring: {why}"),
    }
    all
}

struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Waker,
    thread: Option<JoinHandle<Vec<String>>>,
}

impl Server {
    /// Runs a driver on its own thread, calling `handle` for every event; returns a log of
    /// the event names when stopped.
    fn spawn(
        backend: Backend,
        mut handle: impl FnMut(&mut Driver, &Event) + Send + 'static,
    ) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let stop_flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let config = DriverConfig {
                recv_buffers: 16,
                recv_buffer_size: 4096,
                ..DriverConfig::default()
            };
            let mut driver = Driver::new(backend, &config).expect("driver");
            let listener = driver.listen("127.0.0.1:0".parse().unwrap()).unwrap();
            tx.send((driver.local_addr(listener).unwrap(), driver.waker()))
                .unwrap();
            let mut log = Vec::new();
            while !stop_flag.load(Ordering::SeqCst) {
                driver.wait(Some(Duration::from_millis(20))).unwrap();
                while let Some(event) = driver.next_event() {
                    log.push(
                        format!("{event:?}")
                            .split([' ', '{'])
                            .next()
                            .unwrap()
                            .to_string(),
                    );
                    handle(&mut driver, &event);
                    if let Event::Received { buf, .. } = event {
                        driver.release(buf);
                    }
                }
            }
            log
        });
        let (addr, waker) = rx.recv().unwrap();
        Server {
            addr,
            stop,
            waker,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.waker.wake();
        self.thread.take().unwrap().join().unwrap()
    }
}

fn echo(driver: &mut Driver, event: &Event) {
    if let Event::Received { conn, buf } = event {
        let data = Bytes::copy_from_slice(driver.recv_data(buf));
        driver.send(*conn, data);
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn echo_roundtrip() {
    for backend in backends() {
        let server = Server::spawn(backend, echo);
        let mut client = TcpStream::connect(server.addr).unwrap();
        let data = pattern(1 << 20, 7);
        let writer = {
            let mut client = client.try_clone().unwrap();
            let data = data.clone();
            std::thread::spawn(move || {
                for piece in data.chunks(3001) {
                    client.write_all(piece).unwrap();
                }
            })
        };
        let mut back = vec![0; data.len()];
        client.read_exact(&mut back).unwrap();
        writer.join().unwrap();
        assert!(back == data, "{backend}: echoed bytes differ");
        drop(client);
        std::thread::sleep(Duration::from_millis(100));
        let log = server.stop();
        assert_eq!(
            log.first().map(String::as_str),
            Some("Accepted"),
            "{backend}"
        );
        assert!(log.iter().any(|e| e == "Closed"), "{backend}: {log:?}");
    }
}

#[test]
fn many_connections() {
    for backend in backends() {
        let server = Server::spawn(backend, echo);
        let addr = server.addr;
        let clients: Vec<_> = (0..8)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut streams: Vec<TcpStream> =
                        (0..64).map(|_| TcpStream::connect(addr).unwrap()).collect();
                    for (i, s) in streams.iter_mut().enumerate() {
                        s.write_all(&pattern(10_000, (t * 64 + i) as u8)).unwrap();
                    }
                    for (i, s) in streams.iter_mut().enumerate() {
                        let mut back = vec![0; 10_000];
                        s.read_exact(&mut back).unwrap();
                        assert!(back == pattern(10_000, (t * 64 + i) as u8));
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
        let log = server.stop();
        let accepted = log.iter().filter(|e| *e == "Accepted").count();
        let closed = log.iter().filter(|e| *e == "Closed").count();
        assert_eq!(accepted, 512, "{backend}");
        assert_eq!(
            closed, 512,
            "{backend}: every connection reports Closed once"
        );
    }
}

/// Sends `total` bytes as a mix of shared buffers and small copies on the first byte received.
fn blast(total: usize) -> impl FnMut(&mut Driver, &Event) + Send + 'static {
    let data = Bytes::from(pattern(total, 3));
    move |driver, event| {
        if let Event::Received { conn, .. } = event {
            let mut offset = 0;
            while offset < data.len() {
                let end = (offset + 65_536).min(data.len());
                // Alternate the three ways of queueing, as servers mix them.
                match (offset / 65_536) % 3 {
                    0 => {
                        driver.send_copy(*conn, &data[offset..offset + 16]);
                        driver.send(*conn, data.slice(offset + 16..end));
                    }
                    1 => driver.send_with_header(
                        *conn,
                        &data[offset..offset + 16],
                        data.slice(offset + 16..end),
                    ),
                    _ => {
                        // A "header" longer than the inline limit.
                        driver.send_with_header(
                            *conn,
                            &data[offset..offset + 40],
                            data.slice(offset + 40..end),
                        );
                    }
                }
                offset = end;
            }
        }
    }
}

#[test]
fn partial_writes_arrive_whole_and_in_order() {
    for backend in backends() {
        let total = 24 << 20;
        let server = Server::spawn(backend, blast(total));
        let mut client = TcpStream::connect(server.addr).unwrap();
        client.write_all(b"go").unwrap();
        let mut got = Vec::with_capacity(total);
        let mut buf = vec![0; 100_000];
        let started = Instant::now();
        while got.len() < total && started.elapsed() < Duration::from_secs(30) {
            let n = client.read(&mut buf).unwrap();
            assert!(n > 0, "{backend}: early EOF at {}", got.len());
            got.extend_from_slice(&buf[..n]);
            if got.len() < 4 << 20 {
                // A slow reader at first, so the server's writes come back partial.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        assert!(got == pattern(total, 3), "{backend}: stream corrupted");
        let log = server.stop();
        assert!(log.iter().any(|e| e == "Drained"), "{backend}: {log:?}");
    }
}

#[test]
fn peer_closing_mid_send_only_ends_that_connection() {
    for backend in backends() {
        let server = Server::spawn(backend, {
            let mut blast = blast(64 << 20);
            move |driver: &mut Driver, event: &Event| {
                if let Event::Received { conn, buf } = event {
                    if driver.recv_data(buf) == b"echo" {
                        driver.send_copy(*conn, b"echo");
                    } else {
                        blast(driver, event);
                    }
                }
            }
        });
        let mut quitter = TcpStream::connect(server.addr).unwrap();
        quitter.write_all(b"go").unwrap();
        let mut buf = [0; 1024];
        quitter.read_exact(&mut buf).unwrap();
        drop(quitter);
        std::thread::sleep(Duration::from_millis(200));
        let mut other = TcpStream::connect(server.addr).unwrap();
        other.write_all(b"echo").unwrap();
        let mut back = [0; 4];
        other.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"echo");
        drop(other);
        std::thread::sleep(Duration::from_millis(100));
        let log = server.stop();
        assert_eq!(
            log.iter().filter(|e| *e == "Closed").count(),
            2,
            "{backend}"
        );
    }
}

#[test]
fn close_after_flush_delivers_everything_then_eof() {
    for backend in backends() {
        let total = 4 << 20;
        let server = Server::spawn(backend, {
            let mut blast = blast(total);
            move |driver: &mut Driver, event: &Event| {
                blast(driver, event);
                if let Event::Received { conn, .. } = event {
                    driver.close_after_flush(*conn);
                    // Anything queued after the close request is dropped.
                    driver.send_copy(*conn, b"late");
                }
            }
        });
        let mut client = TcpStream::connect(server.addr).unwrap();
        client.write_all(b"go").unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert!(got == pattern(total, 3), "{backend}: {} bytes", got.len());
        server.stop();
    }
}

#[test]
fn local_close_reports_closed_once_and_ignores_stale_ids() {
    for backend in backends() {
        let server = Server::spawn(backend, |driver: &mut Driver, event: &Event| match event {
            Event::Received { conn, .. } => {
                driver.close(*conn);
                driver.close(*conn);
                driver.send_copy(*conn, b"ignored");
                assert_eq!(driver.pending_bytes(*conn), 0);
            }
            Event::Closed { reason, .. } => assert_eq!(*reason, CloseReason::Local),
            _ => {}
        });
        let mut client = TcpStream::connect(server.addr).unwrap();
        client.write_all(b"bye").unwrap();
        let mut rest = Vec::new();
        let _ = client.read_to_end(&mut rest);
        assert!(rest.is_empty());
        std::thread::sleep(Duration::from_millis(100));
        let log = server.stop();
        assert_eq!(
            log.iter().filter(|e| *e == "Closed").count(),
            1,
            "{backend}"
        );
    }
}

#[test]
fn wakes_from_another_thread() {
    for backend in backends() {
        let woken = Arc::new(AtomicBool::new(false));
        let seen = woken.clone();
        let server = Server::spawn(backend, move |_driver: &mut Driver, event: &Event| {
            if matches!(event, Event::Woken) {
                seen.store(true, Ordering::SeqCst);
            }
        });
        std::thread::sleep(Duration::from_millis(50));
        let started = Instant::now();
        server.waker.wake();
        while !woken.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(woken.load(Ordering::SeqCst), "{backend}: wake lost");
        server.stop();
    }
}

#[test]
fn receive_buffers_are_recycled_under_load() {
    // 16 buffers of 4 KiB (see Server::spawn): 8 MiB through them proves they come back.
    for backend in backends() {
        let server = Server::spawn(backend, echo);
        let clients: Vec<_> = (0..4)
            .map(|i| {
                let addr = server.addr;
                std::thread::spawn(move || {
                    let mut s = TcpStream::connect(addr).unwrap();
                    let data = pattern(2 << 20, i);
                    let mut r = s.try_clone().unwrap();
                    let reader = std::thread::spawn(move || {
                        let mut back = vec![0; 2 << 20];
                        r.read_exact(&mut back).unwrap();
                        back
                    });
                    s.write_all(&data).unwrap();
                    assert!(reader.join().unwrap() == data);
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        server.stop();
    }
}

/// Drives a client-side driver on the test thread until `done` says so or 5 s pass.
fn drive_until(driver: &mut Driver, mut on_event: impl FnMut(&mut Driver, Event) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        driver.wait(Some(Duration::from_millis(20))).unwrap();
        while let Some(event) = driver.next_event() {
            if on_event(driver, event) {
                return;
            }
        }
    }
    panic!("timed out");
}

#[test]
fn outbound_connect_sends_queued_data_and_receives() {
    for backend in backends() {
        let server = Server::spawn(backend, echo);
        let mut client = Driver::new(backend, &DriverConfig::default()).unwrap();
        let conn = client.connect(server.addr).unwrap();
        // Queued before the connection is up: goes out once it is.
        client.send_copy(conn, b"hello ");
        client.send(conn, Bytes::from_static(b"world"));
        let mut connected = false;
        let mut got = Vec::new();
        drive_until(&mut client, |driver, event| {
            match event {
                Event::Connected { conn: c } => connected = c == conn,
                Event::Received { conn: c, buf } => {
                    assert_eq!(c, conn);
                    got.extend_from_slice(driver.recv_data(&buf));
                    driver.release(buf);
                }
                Event::Closed { reason, .. } => panic!("{backend}: closed: {reason}"),
                _ => {}
            }
            got.len() >= 11
        });
        assert!(connected, "{backend}");
        assert_eq!(got, b"hello world", "{backend}");
        client.close(conn);
        drive_until(&mut client, |_, event| {
            matches!(event, Event::Closed { .. })
        });
        assert_eq!(client.connection_count(), 0);
        assert_eq!(client.counters().connected, 1);
        server.stop();
    }
}

#[test]
fn outbound_connect_refused_is_closed_with_the_error() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = unused.local_addr().unwrap();
    drop(unused);
    for backend in backends() {
        let mut client = Driver::new(backend, &DriverConfig::default()).unwrap();
        let conn = client.connect(addr).unwrap();
        client.send_copy(conn, b"never sent");
        drive_until(&mut client, |_, event| match event {
            Event::Closed { conn: c, reason } => {
                assert_eq!(c, conn);
                assert_eq!(
                    reason,
                    CloseReason::Error(std::io::ErrorKind::ConnectionRefused),
                    "{backend}"
                );
                true
            }
            Event::Connected { .. } => panic!("{backend}: connected to nothing"),
            _ => false,
        });
        assert_eq!(client.connection_count(), 0);
    }
}

#[test]
fn fin_arriving_with_the_last_data_is_seen() {
    // The peer's last bytes and its FIN often arrive together: one readiness edge for both.
    // The server must still see the EOF and close (the peer leaving ends the connection).
    for backend in backends() {
        let server = Server::spawn(backend, echo);
        for round in 0..20 {
            let mut client = TcpStream::connect(server.addr).unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(3)))
                .unwrap();
            client
                .write_all(&pattern(1000 + round * 37, round as u8))
                .unwrap();
            client.shutdown(std::net::Shutdown::Write).unwrap();
            let mut back = Vec::new();
            match client.read_to_end(&mut back) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                Err(e) => panic!("{backend} round {round}: server missed the FIN: {e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        let log = server.stop();
        assert_eq!(
            log.iter().filter(|e| *e == "Closed").count(),
            20,
            "{backend}"
        );
    }
}

/// Bytes that do not repeat with any short period, so a file region sent from a wrong offset
/// shows.
fn file_pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len as u64)
        .map(|i| ((i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8) ^ seed)
        .collect()
}

/// A patterned file in the temp dir, removed when dropped.
struct TempFile {
    path: std::path::PathBuf,
    file: Arc<std::fs::File>,
    data: Vec<u8>,
}

impl TempFile {
    fn new(len: usize, seed: u8) -> TempFile {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "sluice-ring-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let data = file_pattern(len, seed);
        std::fs::write(&path, &data).unwrap();
        let file = Arc::new(std::fs::File::open(&path).unwrap());
        TempFile { path, file, data }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One way of queueing bytes, as the server mixes them.
#[derive(Clone)]
enum Piece {
    Copy(Vec<u8>),
    Header(Vec<u8>, Bytes),
    Shared(Bytes),
    File(u64, u64),
}

fn queue_pieces(driver: &mut Driver, conn: ConnId, file: &Arc<std::fs::File>, pieces: &[Piece]) {
    for piece in pieces {
        match piece {
            Piece::Copy(data) => driver.send_copy(conn, data),
            Piece::Header(head, body) => driver.send_with_header(conn, head, body.clone()),
            Piece::Shared(body) => driver.send(conn, body.clone()),
            Piece::File(offset, len) => driver.send_file(conn, file.clone(), *offset, *len),
        }
    }
}

fn expected_bytes(file: &[u8], pieces: &[Piece]) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Copy(data) => out.extend_from_slice(data),
            Piece::Header(head, body) => {
                out.extend_from_slice(head);
                out.extend_from_slice(body);
            }
            Piece::Shared(body) => out.extend_from_slice(body),
            Piece::File(offset, len) => {
                out.extend_from_slice(&file[*offset as usize..(*offset + *len) as usize])
            }
        }
    }
    out
}

fn file_bytes(pieces: &[Piece]) -> u64 {
    pieces
        .iter()
        .map(|p| match p {
            Piece::File(_, len) => *len,
            _ => 0,
        })
        .sum()
}

/// Reads everything until EOF, slowly for the first `slow_until` bytes so the server's writes
/// come back partial. A reset after the data counts as EOF.
fn read_all_slowly(client: &mut TcpStream, slow_until: usize) -> Vec<u8> {
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        match client.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("read failed after {} bytes: {e}", got.len()),
        }
        if got.len() < slow_until {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[test]
fn file_regions_interleaved_with_memory_arrive_whole_and_in_order() {
    const SIZE: u64 = 8 << 20;
    let file = TempFile::new(SIZE as usize, 0x5a);
    let body = Bytes::from(pattern(300_000, 9));
    let pieces = vec![
        Piece::Copy(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec()),
        Piece::File(0, SIZE),
        Piece::Header(b"head".to_vec(), body.slice(..1000)),
        Piece::File(4095, 100_000),
        Piece::Shared(body.slice(1000..200_000)),
        // A header-only copy (an HTTP chunk-size line) the next region joins.
        Piece::Copy(b"\r\n1e8481\r\n".to_vec()),
        Piece::File(12_345, 2_000_001),
        Piece::File(SIZE - 1, 1),
        Piece::File(1 << 20, 3 << 20),
        Piece::Header(vec![b'L'; 40], body.slice(200_000..)),
        Piece::File(7, 0),
        Piece::File(SIZE - 5000, 5000),
        Piece::Copy(b"end".to_vec()),
    ];
    let expected = expected_bytes(&file.data, &pieces);
    for backend in backends() {
        let file_sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let server = Server::spawn(backend, {
            let (file, pieces, file_sent) = (file.file.clone(), pieces.clone(), file_sent.clone());
            let total = expected.len();
            move |driver: &mut Driver, event: &Event| match event {
                Event::Received { conn, .. } => {
                    queue_pieces(driver, *conn, &file, &pieces);
                    assert_eq!(driver.pending_bytes(*conn), total);
                }
                Event::Drained { .. } => {
                    file_sent.store(driver.counters().file_bytes_sent, Ordering::SeqCst);
                    assert!(driver.counters().bytes_sent >= total as u64);
                }
                _ => {}
            }
        });
        let mut client = TcpStream::connect(server.addr).unwrap();
        client.write_all(b"go").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut got = Vec::with_capacity(expected.len());
        let mut buf = vec![0; 64 * 1024];
        while got.len() < expected.len() {
            let n = client.read(&mut buf).unwrap();
            assert!(n > 0, "{backend}: early EOF at {}", got.len());
            got.extend_from_slice(&buf[..n]);
            if got.len() < 6 << 20 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        if let Some(at) = got.iter().zip(&expected).position(|(a, b)| a != b) {
            panic!("{backend}: stream differs at byte {at}");
        }
        assert_eq!(got.len(), expected.len(), "{backend}");
        std::thread::sleep(Duration::from_millis(50));
        drop(client);
        let log = server.stop();
        assert!(log.iter().any(|e| e == "Drained"), "{backend}: {log:?}");
        assert_eq!(
            file_sent.load(Ordering::SeqCst),
            file_bytes(&pieces),
            "{backend}: file_bytes_sent"
        );
    }
}

#[test]
fn peer_closing_mid_file_ends_only_that_connection() {
    let file = TempFile::new(8 << 20, 3);
    for backend in backends() {
        let live_at_close = Arc::new(std::sync::Mutex::new(Vec::new()));
        let server = Server::spawn(backend, {
            let (file, live_at_close) = (file.file.clone(), live_at_close.clone());
            move |driver: &mut Driver, event: &Event| match event {
                Event::Received { conn, buf } => {
                    if driver.recv_data(buf) == b"echo" {
                        driver.send_copy(*conn, b"echo");
                    } else {
                        for _ in 0..8 {
                            driver.send_file(*conn, file.clone(), 0, 8 << 20);
                        }
                    }
                }
                Event::Closed { .. } => live_at_close
                    .lock()
                    .unwrap()
                    .push(driver.connection_count()),
                _ => {}
            }
        });
        let mut quitter = TcpStream::connect(server.addr).unwrap();
        quitter.write_all(b"go").unwrap();
        let mut start = vec![0; 1 << 20];
        quitter.read_exact(&mut start).unwrap();
        assert!(start == file.data[..1 << 20], "{backend}");
        // While that file send is stalled on a reader that stopped reading, others are served.
        let mut other = TcpStream::connect(server.addr).unwrap();
        let mut back = [0; 4];
        other.write_all(b"echo").unwrap();
        other.read_exact(&mut back).unwrap();
        drop(quitter);
        std::thread::sleep(Duration::from_millis(200));
        other.write_all(b"echo").unwrap();
        other.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"echo");
        drop(other);
        std::thread::sleep(Duration::from_millis(100));
        let log = server.stop();
        assert_eq!(
            log.iter().filter(|e| *e == "Closed").count(),
            2,
            "{backend}: {log:?}"
        );
        assert_eq!(*live_at_close.lock().unwrap(), [1, 0], "{backend}");
    }
}

#[test]
fn close_after_flush_sends_queued_files_then_eof() {
    let file = TempFile::new(8 << 20, 77);
    let pieces = vec![
        Piece::Copy(b"HTTP/1.1 200 OK\r\n\r\n".to_vec()),
        Piece::File(0, 8 << 20),
        Piece::Shared(Bytes::from_static(b"between")),
        Piece::File(100, 1000),
    ];
    let expected = expected_bytes(&file.data, &pieces);
    for backend in backends() {
        let reasons = Arc::new(std::sync::Mutex::new(Vec::new()));
        let server = Server::spawn(backend, {
            let (file, pieces, reasons) = (file.file.clone(), pieces.clone(), reasons.clone());
            move |driver: &mut Driver, event: &Event| match event {
                Event::Received { conn, .. } => {
                    queue_pieces(driver, *conn, &file, &pieces);
                    driver.close_after_flush(*conn);
                    // Anything queued after the close request is dropped.
                    driver.send_file(*conn, file.clone(), 0, 10);
                    driver.send_copy(*conn, b"late");
                }
                Event::Closed { reason, .. } => reasons.lock().unwrap().push(*reason),
                _ => {}
            }
        });
        let mut client = TcpStream::connect(server.addr).unwrap();
        client.write_all(b"go").unwrap();
        let got = read_all_slowly(&mut client, 2 << 20);
        assert_eq!(got.len(), expected.len(), "{backend}");
        assert!(got == expected, "{backend}: stream corrupted");
        std::thread::sleep(Duration::from_millis(50));
        server.stop();
        assert_eq!(*reasons.lock().unwrap(), [CloseReason::Local], "{backend}");
    }
}

#[test]
fn a_file_shorter_than_promised_closes_the_connection_with_an_error() {
    for backend in backends() {
        // Truncated to an odd length so the last piece of file is not page aligned.
        let file = TempFile::new(4 << 20, 1);
        let kept = (1 << 20) + 1234;
        let reasons = Arc::new(std::sync::Mutex::new(Vec::new()));
        let server = Server::spawn(backend, {
            let (path, read, reasons) = (file.path.clone(), file.file.clone(), reasons.clone());
            move |driver: &mut Driver, event: &Event| match event {
                Event::Received { conn, .. } => {
                    driver.send_copy(*conn, b"head");
                    driver.send_file(*conn, read.clone(), 0, 4 << 20);
                    driver.send_copy(*conn, b"never");
                    let writer = std::fs::OpenOptions::new().write(true).open(&path);
                    writer.unwrap().set_len(kept).unwrap();
                }
                Event::Closed { reason, .. } => reasons.lock().unwrap().push(*reason),
                _ => {}
            }
        });
        let mut client = TcpStream::connect(server.addr).unwrap();
        client.write_all(b"go").unwrap();
        let got = read_all_slowly(&mut client, 0);
        let mut expected = b"head".to_vec();
        expected.extend_from_slice(&file.data[..kept as usize]);
        assert!(
            got.len() <= expected.len() && got == expected[..got.len()],
            "{backend}: {} bytes, not a prefix of what the file holds",
            got.len()
        );
        assert_eq!(
            got.len(),
            expected.len(),
            "{backend}: the file's bytes arrive"
        );
        std::thread::sleep(Duration::from_millis(50));
        server.stop();
        assert_eq!(
            *reasons.lock().unwrap(),
            [CloseReason::Error(std::io::ErrorKind::UnexpectedEof)],
            "{backend}"
        );
    }
}

#[test]
fn zero_length_file_regions_are_no_ops() {
    let file = TempFile::new(1000, 2);
    for backend in backends() {
        let server = Server::spawn(backend, {
            let file = file.file.clone();
            move |driver: &mut Driver, event: &Event| {
                if let Event::Received { conn, buf } = event {
                    let data = driver.recv_data(buf).to_vec();
                    if data.starts_with(b"zero") {
                        driver.send_file(*conn, file.clone(), 0, 0);
                        driver.send_file(*conn, file.clone(), 1 << 40, 0);
                        assert_eq!(driver.pending_bytes(*conn), 0);
                    }
                    if data.ends_with(b"ok") {
                        driver.send_file(*conn, file.clone(), 10, 0);
                        driver.send_copy(*conn, b"ok");
                        driver.send_file(*conn, file.clone(), 999, 0);
                        assert_eq!(driver.pending_bytes(*conn), 2);
                    }
                }
            }
        });
        let mut client = TcpStream::connect(server.addr).unwrap();
        client.write_all(b"zero").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        client.write_all(b"ok").unwrap();
        let mut back = [0; 2];
        client.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"ok");
        client
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        assert!(client.read(&mut back).is_err(), "{backend}: nothing more");
        let log = server.stop();
        assert_eq!(
            log.iter().filter(|e| *e == "Drained").count(),
            1,
            "{backend}: {log:?}"
        );
    }
}

#[test]
fn outbound_connect_sends_a_file_queued_while_connecting() {
    let file = TempFile::new(300_000, 4);
    for backend in backends() {
        let server = Server::spawn(backend, echo);
        let mut client = Driver::new(backend, &DriverConfig::default()).unwrap();
        let conn = client.connect(server.addr).unwrap();
        client.send_copy(conn, b"<");
        client.send_file(conn, file.file.clone(), 1000, 200_000);
        client.send_copy(conn, b">");
        assert_eq!(client.pending_bytes(conn), 200_002);
        let mut got = Vec::new();
        drive_until(&mut client, |driver, event| {
            match event {
                Event::Received { buf, .. } => {
                    got.extend_from_slice(driver.recv_data(&buf));
                    driver.release(buf);
                }
                Event::Closed { reason, .. } => panic!("{backend}: closed: {reason}"),
                _ => {}
            }
            got.len() >= 200_002
        });
        let mut expected = b"<".to_vec();
        expected.extend_from_slice(&file.data[1000..201_000]);
        expected.push(b'>');
        assert!(got == expected, "{backend}");
        assert_eq!(client.counters().file_bytes_sent, 200_000, "{backend}");
        client.close(conn);
        drive_until(&mut client, |_, event| {
            matches!(event, Event::Closed { .. })
        });
        assert_eq!(client.connection_count(), 0);
        server.stop();
    }
}
