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

// ---- UDP ----

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Datagrams received, split at their segment size, per socket.
#[derive(Default)]
struct Inbox {
    /// (socket, peer, datagram), in arrival order.
    datagrams: Vec<(UdpId, SocketAddr, Vec<u8>)>,
    /// Datagrams per `Event::Datagrams` (more than one: GRO coalesced them).
    per_event: Vec<usize>,
    drained: Vec<ConnId>,
    closed: Vec<(ConnId, CloseReason)>,
}

impl Inbox {
    /// Records an event; returns the buffer to the driver.
    fn take(&mut self, driver: &mut Driver, event: Event) {
        match event {
            Event::Datagrams {
                sock,
                peer,
                buf,
                segment_size,
            } => {
                assert!(segment_size > 0 && !buf.is_empty());
                let data = driver.recv_data(&buf);
                assert_eq!(data.len(), buf.len());
                let chunks: Vec<Vec<u8>> = data.chunks(segment_size).map(<[u8]>::to_vec).collect();
                self.per_event.push(chunks.len());
                self.datagrams
                    .extend(chunks.into_iter().map(|d| (sock, peer, d)));
                driver.release(buf);
            }
            Event::Received { buf, .. } => driver.release(buf),
            Event::Drained { conn } => self.drained.push(conn),
            Event::Closed { conn, reason } => self.closed.push((conn, reason)),
            _ => {}
        }
    }

    fn on(&self, sock: UdpId) -> Vec<&[u8]> {
        self.datagrams
            .iter()
            .filter(|(s, _, _)| *s == sock)
            .map(|(_, _, d)| &d[..])
            .collect()
    }
}

/// Waits on every driver in turn, recording their events, until `done` says so (panics after
/// 10 s).
fn pump(drivers: &mut [&mut Driver], inbox: &mut Inbox, mut done: impl FnMut(&Inbox) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(inbox) {
        assert!(Instant::now() < deadline, "timed out");
        for driver in drivers.iter_mut() {
            driver.wait(Some(Duration::from_millis(1))).unwrap();
            while let Some(event) = driver.next_event() {
                inbox.take(driver, event);
            }
        }
    }
}

/// A `send_datagrams` call: the data and its segment size.
type Call = (Vec<u8>, u16);

/// The datagrams a list of calls makes.
fn datagrams_of(calls: &[Call]) -> Vec<Vec<u8>> {
    calls
        .iter()
        .flat_map(|(data, segment)| {
            let segment = if *segment == 0 {
                data.len()
            } else {
                *segment as usize
            };
            data.chunks(segment).map(<[u8]>::to_vec)
        })
        .collect()
}

/// Datagrams of assorted sizes, queued the ways a session does. With GSO they make 7 sends:
/// [1] [100] [1200 1200 (5 × 1200 + 300)] [500] [10 × 1000] [60,000] [7] — the third joins
/// three calls of one segment size and ends at the first short datagram.
fn assorted_calls(seed: u8) -> Vec<Call> {
    vec![
        (pattern(1, seed), 0),
        (pattern(100, seed.wrapping_add(1)), 100),
        (pattern(1200, seed.wrapping_add(2)), 1200),
        (pattern(1200, seed.wrapping_add(3)), 1200),
        (pattern(5 * 1200 + 300, seed.wrapping_add(4)), 1200),
        (pattern(500, seed.wrapping_add(5)), 1200),
        (pattern(10 * 1000, seed.wrapping_add(6)), 1000),
        (pattern(60_000, seed.wrapping_add(7)), 0),
        (pattern(7, seed.wrapping_add(8)), 7),
    ]
}
/// GSO sends per direction for [`assorted_calls`]: [1], [100], [1200 ×7 + 300], [500],
/// [1000 ×10], [60,000] (above an MTU: alone), [7].
const ASSORTED_GSO_SENDS: u64 = 7;

fn udp_driver(backend: Backend, gso: bool) -> Driver {
    let mut driver = Driver::new(backend, &DriverConfig::default()).unwrap();
    driver.set_udp_gso(gso);
    if gso && !driver.udp_gso() {
        eprintln!("{backend}: no UDP GSO on this kernel; testing without");
    }
    assert!(gso || !driver.udp_gso());
    driver
}

/// Two UDP sockets of one driver on loopback, `a` to send from and `b` to receive on.
struct UdpPair {
    a: UdpId,
    b: UdpId,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
}

fn udp_pair(driver: &mut Driver, bind: SocketAddr) -> UdpPair {
    let a = driver.bind_udp(bind).unwrap();
    let b = driver.bind_udp(bind).unwrap();
    UdpPair {
        a,
        b,
        a_addr: driver.udp_local_addr(a).unwrap(),
        b_addr: driver.udp_local_addr(b).unwrap(),
    }
}

#[test]
fn udp_flows_carry_datagrams_both_ways_in_order() {
    for backend in backends() {
        for gso in [true, false] {
            let mut driver = udp_driver(backend, gso);
            let gso = driver.udp_gso();
            let UdpPair {
                a,
                b,
                a_addr,
                b_addr,
            } = udp_pair(&mut driver, loopback());
            let to_b = driver.open_flow(a, b_addr);
            let to_a = driver.open_flow(b, a_addr);
            assert_eq!(driver.connection_count(), 2);
            let (calls_ab, calls_ba) = (assorted_calls(1), assorted_calls(100));
            for (data, segment) in &calls_ab {
                driver.send_datagrams(to_b, Bytes::from(data.clone()), *segment);
            }
            for (data, segment) in &calls_ba {
                driver.send_datagrams(to_a, Bytes::from(data.clone()), *segment);
            }
            let bytes: usize = calls_ab.iter().map(|(d, _)| d.len()).sum();
            assert_eq!(driver.pending_bytes(to_b), bytes);
            let (want_b, want_a) = (datagrams_of(&calls_ab), datagrams_of(&calls_ba));
            let mut inbox = Inbox::default();
            pump(&mut [&mut driver], &mut inbox, |inbox| {
                inbox.on(b).len() >= want_b.len()
                    && inbox.on(a).len() >= want_a.len()
                    && inbox.drained.len() >= 2
            });
            let what = format!("{backend}, gso {gso}");
            assert!(inbox.on(b) == want_b, "{what}: a → b differs");
            assert!(inbox.on(a) == want_a, "{what}: b → a differs");
            for (sock, peer, _) in &inbox.datagrams {
                assert_eq!(*peer, if *sock == b { a_addr } else { b_addr }, "{what}");
            }
            assert_eq!(driver.pending_bytes(to_b), 0, "{what}");
            assert_eq!(driver.pending_bytes(to_a), 0, "{what}");
            let c = driver.counters();
            let datagrams = (want_a.len() + want_b.len()) as u64;
            assert_eq!(c.datagrams_sent, datagrams, "{what}");
            assert_eq!(c.datagrams_received, datagrams, "{what}");
            assert_eq!(c.datagrams_dropped, 0, "{what}");
            assert_eq!(c.bytes_sent, 2 * bytes as u64, "{what}");
            assert_eq!(c.bytes_received, 2 * bytes as u64, "{what}");
            match (gso, backend) {
                (true, _) => assert_eq!(c.udp_send_calls, 2 * ASSORTED_GSO_SENDS, "{what}"),
                (false, Backend::Uring) => assert_eq!(c.udp_send_calls, datagrams, "{what}"),
                // sendmmsg on Linux: one call per flow; elsewhere one per datagram.
                (false, Backend::Epoll) => {
                    assert!(
                        c.udp_send_calls >= 2 && c.udp_send_calls <= datagrams,
                        "{what}"
                    )
                }
            }
            if gso {
                assert!(
                    inbox.per_event.iter().any(|&n| n > 1),
                    "{what}: GSO sends arrive GRO-coalesced on loopback"
                );
            }
        }
    }
}

#[test]
fn udp_gro_receives_split_back_into_the_datagrams_sent() {
    for backend in backends() {
        let mut receiver = Driver::new(backend, &DriverConfig::default()).unwrap();
        let sock = receiver.bind_udp(loopback()).unwrap();
        let addr = receiver.udp_local_addr(sock).unwrap();
        let numbered = |i: u32| {
            let mut d = pattern(1000, i as u8);
            d[..4].copy_from_slice(&i.to_be_bytes());
            d
        };
        // From a plain socket, as fast as it goes, in bursts the socket buffer holds.
        let sender = std::net::UdpSocket::bind(loopback()).unwrap();
        let mut inbox = Inbox::default();
        let mut sent = 0u32;
        while sent < 3000 {
            for _ in 0..100 {
                sender.send_to(&numbered(sent), addr).unwrap();
                sent += 1;
            }
            pump(&mut [&mut receiver], &mut inbox, |inbox| {
                inbox.datagrams.len() >= sent as usize
            });
        }
        // From a driver with GSO: 64 datagrams a send, which loopback hands over whole.
        let mut gso_sender = udp_driver(backend, true);
        let gso = gso_sender.udp_gso();
        let from = gso_sender.bind_udp(loopback()).unwrap();
        let flow = gso_sender.open_flow(from, addr);
        for round in 0..20u32 {
            let mut data = Vec::new();
            for i in 0..64 {
                data.extend(numbered(3000 + round * 64 + i));
            }
            gso_sender.send_datagrams(flow, Bytes::from(data), 1000);
            sent += 64;
            pump(&mut [&mut gso_sender, &mut receiver], &mut inbox, |inbox| {
                inbox.datagrams.len() >= sent as usize
            });
        }
        assert_eq!(inbox.datagrams.len(), sent as usize, "{backend}");
        for (i, (_, _, d)) in inbox.datagrams.iter().enumerate() {
            assert!(*d == numbered(i as u32), "{backend}: datagram {i} differs");
        }
        let c = receiver.counters();
        assert_eq!(c.datagrams_received, u64::from(sent), "{backend}");
        assert_eq!(c.bytes_received, u64::from(sent) * 1000, "{backend}");
        assert_eq!(c.datagrams_dropped, 0, "{backend}");
        if gso {
            let biggest = inbox.per_event.iter().max().copied().unwrap_or(0);
            assert_eq!(biggest, 64, "{backend}: GRO coalesces a GSO send whole");
            assert_eq!(gso_sender.counters().udp_send_calls, 20, "{backend}");
        }
    }
}

#[test]
fn udp_gso_splits_more_than_64_datagrams_into_several_sends() {
    for backend in backends() {
        for gso in [true, false] {
            let mut driver = udp_driver(backend, gso);
            let gso = driver.udp_gso();
            let UdpPair { a, b, b_addr, .. } = udp_pair(&mut driver, loopback());
            let flow = driver.open_flow(a, b_addr);
            // 100 datagrams of 200 bytes and one of 50, in one call.
            let data = pattern(100 * 200 + 50, 9);
            driver.send_datagrams(flow, Bytes::from(data.clone()), 200);
            let mut inbox = Inbox::default();
            pump(&mut [&mut driver], &mut inbox, |inbox| {
                inbox.datagrams.len() >= 101 && !inbox.drained.is_empty()
            });
            let want: Vec<Vec<u8>> = data.chunks(200).map(<[u8]>::to_vec).collect();
            let what = format!("{backend}, gso {gso}");
            assert!(inbox.on(b) == want, "{what}");
            let calls = driver.counters().udp_send_calls;
            match (gso, backend) {
                (true, _) => assert_eq!(calls, 2, "{what}: 64 + 37"),
                (false, Backend::Uring) => assert_eq!(calls, 101, "{what}"),
                (false, Backend::Epoll) => assert!((2..=101).contains(&calls), "{what}"),
            }
            assert_eq!(driver.counters().datagrams_sent, 101, "{what}");
        }
    }
}

#[test]
fn udp_send_to_answers_a_stranger() {
    for backend in backends() {
        let mut driver = Driver::new(backend, &DriverConfig::default()).unwrap();
        let sock = driver.bind_udp(loopback()).unwrap();
        let addr = driver.udp_local_addr(sock).unwrap();
        // Graceful shutdown leaves UDP sockets alone.
        driver.stop_listening();
        let stranger = std::net::UdpSocket::bind(loopback()).unwrap();
        stranger
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stranger.send_to(b"hello?", addr).unwrap();
        let mut inbox = Inbox::default();
        pump(&mut [&mut driver], &mut inbox, |inbox| {
            !inbox.datagrams.is_empty()
        });
        let (_, peer, data) = inbox.datagrams[0].clone();
        assert_eq!(peer, stranger.local_addr().unwrap(), "{backend}");
        assert_eq!(data, b"hello?", "{backend}");
        driver.send_to(sock, peer, b"go away");
        driver.wait(Some(Duration::ZERO)).unwrap();
        let mut buf = [0; 100];
        let (n, from) = stranger.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"go away"[..], addr), "{backend}");
        // Counted, with nothing to drain or close: there is no flow.
        pump(&mut [&mut driver], &mut inbox, |_| true);
        let c = driver.counters();
        assert_eq!((c.datagrams_sent, c.udp_send_calls), (1, 1), "{backend}");
        assert!(inbox.drained.is_empty() && inbox.closed.is_empty());
        assert_eq!(driver.connection_count(), 0);
    }
}

#[test]
fn udp_flow_close_reports_closed_once() {
    for backend in backends() {
        let mut driver = Driver::new(backend, &DriverConfig::default()).unwrap();
        let UdpPair { a, b, b_addr, .. } = udp_pair(&mut driver, loopback());

        // close(): at once, queued datagrams dropped, stale id ignored.
        let flow = driver.open_flow(a, b_addr);
        driver.send_datagrams(flow, Bytes::from_static(b"never"), 0);
        // Stream sends on a flow are ignored.
        driver.send_copy(flow, b"not a stream");
        driver.send(flow, Bytes::from_static(b"nor this"));
        assert_eq!(driver.pending_bytes(flow), 5);
        driver.close(flow);
        driver.close(flow);
        driver.close_after_flush(flow);
        driver.send_datagrams(flow, Bytes::from_static(b"late"), 0);
        assert_eq!(driver.pending_bytes(flow), 0);
        let mut inbox = Inbox::default();
        pump(&mut [&mut driver], &mut inbox, |inbox| {
            !inbox.closed.is_empty()
        });
        assert_eq!(inbox.closed, [(flow, CloseReason::Local)], "{backend}");
        assert_eq!(driver.connection_count(), 0);

        // close_after_flush(): what was queued goes out, then one Closed.
        let flow = driver.open_flow(a, b_addr);
        for i in 0..3u8 {
            driver.send_datagrams(flow, Bytes::from(vec![i; 10]), 0);
        }
        driver.close_after_flush(flow);
        driver.send_datagrams(flow, Bytes::from_static(b"dropped"), 0);
        let mut inbox = Inbox::default();
        pump(&mut [&mut driver], &mut inbox, |inbox| {
            inbox.datagrams.len() >= 3 && !inbox.closed.is_empty()
        });
        for _ in 0..5 {
            pump(&mut [&mut driver], &mut inbox, |_| true);
        }
        assert_eq!(
            inbox.on(b),
            [&[0u8; 10][..], &[1; 10], &[2; 10]],
            "{backend}"
        );
        assert_eq!(inbox.closed, [(flow, CloseReason::Local)], "{backend}");
        assert!(
            inbox.drained.is_empty(),
            "{backend}: a closing flow is not drained"
        );
        assert_eq!(driver.connection_count(), 0);
        assert_eq!(driver.counters().datagrams_sent, 3, "{backend}");
    }
}

#[test]
fn udp_send_errors_drop_and_count_and_the_socket_goes_on() {
    for backend in backends() {
        for gso in [true, false] {
            let mut driver = udp_driver(backend, gso);
            let UdpPair { a, b, b_addr, .. } = udp_pair(&mut driver, loopback());
            // A peer that is gone: ICMP port unreachable comes back, to be ignored.
            let gone = std::net::UdpSocket::bind(loopback()).unwrap();
            let gone_addr = gone.local_addr().unwrap();
            drop(gone);
            let dead = driver.open_flow(a, gone_addr);
            driver.send_datagrams(dead, Bytes::from_static(b"anyone?"), 0);
            let live = driver.open_flow(a, b_addr);
            // Too big for UDP: refused, dropped, counted; what follows still goes.
            driver.send_datagrams(live, Bytes::from(vec![1; 70_000]), 0);
            driver.send_datagrams(live, Bytes::from(pattern(3 * 500, 4)), 500);
            let mut inbox = Inbox::default();
            pump(&mut [&mut driver], &mut inbox, |inbox| {
                inbox.datagrams.len() >= 3 && inbox.drained.contains(&live)
            });
            driver.send_datagrams(dead, Bytes::from_static(b"still?"), 0);
            driver.send_datagrams(live, Bytes::from_static(b"after"), 0);
            pump(&mut [&mut driver], &mut inbox, |inbox| {
                inbox.datagrams.len() >= 4
            });
            let what = format!("{backend}, gso {gso}");
            let mut want: Vec<Vec<u8>> = pattern(1500, 4).chunks(500).map(<[u8]>::to_vec).collect();
            want.push(b"after".to_vec());
            assert!(inbox.on(b) == want, "{what}");
            let c = driver.counters();
            assert_eq!(c.datagrams_dropped, 1, "{what}");
            assert_eq!(c.datagrams_sent, 2 + 3 + 1, "{what}");
            assert!(inbox.closed.is_empty(), "{what}");
        }
    }
}

#[test]
fn udp_bind_port_zero_and_share_a_port_between_drivers() {
    for backend in backends() {
        let mut first = Driver::new(backend, &DriverConfig::default()).unwrap();
        // Port-0 binds get ports of their own, never one another socket has (SO_REUSEPORT
        // would let the kernel hand out a port twice).
        let mut ports = std::collections::HashSet::new();
        for _ in 0..200 {
            let sock = first.bind_udp(loopback()).unwrap();
            let port = first.udp_local_addr(sock).unwrap().port();
            assert_ne!(port, 0, "{backend}");
            assert!(
                ports.insert(port),
                "{backend}: port {port} handed out twice"
            );
        }
        assert!(first.udp_local_addr(UdpId(100_000)).is_err());
        // Workers share a configured port (SO_REUSEPORT): find a free one, then both bind it.
        let addr = std::net::UdpSocket::bind(loopback())
            .unwrap()
            .local_addr()
            .unwrap();
        let sock = first.bind_udp(addr).unwrap();
        assert_eq!(first.udp_local_addr(sock).unwrap(), addr, "{backend}");
        let mut second = Driver::new(backend, &DriverConfig::default()).unwrap();
        let other = second.bind_udp(addr).unwrap();
        assert_eq!(second.udp_local_addr(other).unwrap(), addr, "{backend}");
        // Each peer lands on one of them, every datagram of it on the same one.
        let peer = std::net::UdpSocket::bind(loopback()).unwrap();
        for i in 0..10u8 {
            peer.send_to(&[i], addr).unwrap();
        }
        let mut inbox = Inbox::default();
        pump(&mut [&mut first, &mut second], &mut inbox, |inbox| {
            inbox.datagrams.len() >= 10
        });
        let data: Vec<u8> = inbox.datagrams.iter().map(|(_, _, d)| d[0]).collect();
        assert_eq!(data, (0..10).collect::<Vec<u8>>(), "{backend}");
        let on_first = first.counters().datagrams_received;
        assert!(on_first == 0 || on_first == 10, "{backend}: {on_first}");
    }
}

#[test]
fn udp_and_tcp_share_a_driver() {
    for backend in backends() {
        let server = Server::spawn(backend, echo);
        let mut driver = Driver::new(backend, &DriverConfig::default()).unwrap();
        let conn = driver.connect(server.addr).unwrap();
        let UdpPair { a, b, b_addr, .. } = udp_pair(&mut driver, loopback());
        let flow = driver.open_flow(a, b_addr);
        assert_ne!(conn.index(), flow.index());
        driver.send_copy(conn, b"tcp");
        driver.send_datagrams(flow, Bytes::from_static(b"udp"), 0);
        // Datagrams on a flow are ignored on a TCP connection.
        driver.send_datagrams(conn, Bytes::from_static(b"no"), 0);
        assert_eq!(driver.pending_bytes(conn), 3);
        let mut echoed = Vec::new();
        let mut inbox = Inbox::default();
        drive_until(&mut driver, |driver, event| {
            match event {
                Event::Received { buf, .. } => {
                    echoed.extend_from_slice(driver.recv_data(&buf));
                    driver.release(buf);
                }
                other => inbox.take(driver, other),
            }
            echoed.len() >= 3 && !inbox.datagrams.is_empty()
        });
        assert_eq!(echoed, b"tcp", "{backend}");
        assert_eq!(inbox.on(b), [b"udp"], "{backend}");
        assert_eq!(driver.connection_count(), 2);
        driver.close(conn);
        driver.close(flow);
        let mut closed = 0;
        drive_until(&mut driver, |_, event| {
            closed += usize::from(matches!(event, Event::Closed { .. }));
            closed == 2
        });
        assert_eq!(driver.connection_count(), 0);
        server.stop();
    }
}

#[test]
fn udp_receive_buffers_held_by_the_caller_pause_receiving_without_loss() {
    for backend in backends() {
        let config = DriverConfig {
            udp_recv_buffers: 4,
            ..DriverConfig::default()
        };
        let mut driver = Driver::new(backend, &config).unwrap();
        let sock = driver.bind_udp(loopback()).unwrap();
        let addr = driver.udp_local_addr(sock).unwrap();
        let peer = std::net::UdpSocket::bind(loopback()).unwrap();
        for i in 0..40u8 {
            peer.send_to(&[i; 100], addr).unwrap();
        }
        // Hold every buffer lent: io_uring runs out of its 4 and stops receiving.
        let mut held = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while held.len() < 4 && Instant::now() < deadline {
            driver.wait(Some(Duration::from_millis(5))).unwrap();
            while let Some(event) = driver.next_event() {
                if let Event::Datagrams { buf, .. } = event {
                    held.push(buf);
                }
            }
        }
        for _ in 0..5 {
            driver.wait(Some(Duration::from_millis(5))).unwrap();
            while let Some(event) = driver.next_event() {
                if let Event::Datagrams { buf, .. } = event {
                    held.push(buf);
                }
            }
        }
        if backend == Backend::Uring {
            assert_eq!(
                held.len(),
                4,
                "{backend}: only as many as the buffer ring has"
            );
        }
        let mut got: Vec<u8> = held.iter().map(|buf| driver.recv_data(buf)[0]).collect();
        for buf in held {
            driver.release(buf);
        }
        let mut inbox = Inbox::default();
        pump(&mut [&mut driver], &mut inbox, |inbox| {
            got.len() + inbox.datagrams.len() >= 40
        });
        got.extend(inbox.datagrams.iter().map(|(_, _, d)| d[0]));
        assert_eq!(got, (0..40).collect::<Vec<u8>>(), "{backend}");
    }
}

#[test]
fn udp_many_flows_on_one_socket_each_arrive_in_order() {
    for backend in backends() {
        for gso in [true, false] {
            let mut driver = udp_driver(backend, gso);
            let sock = driver.bind_udp(loopback()).unwrap();
            let peers: Vec<std::net::UdpSocket> = (0..20)
                .map(|_| std::net::UdpSocket::bind(loopback()).unwrap())
                .collect();
            let flows: Vec<ConnId> = peers
                .iter()
                .map(|p| driver.open_flow(sock, p.local_addr().unwrap()))
                .collect();
            // 30 datagrams of 1,000 bytes per flow, queued one by one (joined into GSO sends).
            for round in 0..30u32 {
                for (i, flow) in flows.iter().enumerate() {
                    let mut d = pattern(1000, i as u8);
                    d[..4].copy_from_slice(&round.to_be_bytes());
                    driver.send_datagrams(*flow, Bytes::from(d), 1000);
                }
            }
            let mut inbox = Inbox::default();
            pump(&mut [&mut driver], &mut inbox, |inbox| {
                inbox.drained.len() >= 20
            });
            let what = format!("{backend}, gso {gso}");
            for (i, peer) in peers.iter().enumerate() {
                peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = [0; 2000];
                for round in 0..30u32 {
                    let n = peer.recv(&mut buf).unwrap();
                    let mut want = pattern(1000, i as u8);
                    want[..4].copy_from_slice(&round.to_be_bytes());
                    assert!(buf[..n] == want, "{what}: flow {i} datagram {round}");
                }
            }
            let c = driver.counters();
            assert_eq!(c.datagrams_sent, 600, "{what}");
            if driver.udp_gso() {
                assert_eq!(c.udp_send_calls, 20, "{what}: one GSO send per flow");
            }
        }
    }
}

#[test]
fn udp_over_ipv6() {
    let Ok(probe) = std::net::UdpSocket::bind("[::1]:0") else {
        eprintln!("no IPv6 loopback here");
        return;
    };
    drop(probe);
    for backend in backends() {
        let mut driver = udp_driver(backend, true);
        let UdpPair {
            a,
            b,
            a_addr,
            b_addr,
        } = udp_pair(&mut driver, "[::1]:0".parse().unwrap());
        let flow = driver.open_flow(a, b_addr);
        let calls = assorted_calls(50);
        for (data, segment) in &calls {
            driver.send_datagrams(flow, Bytes::from(data.clone()), *segment);
        }
        let want = datagrams_of(&calls);
        let mut inbox = Inbox::default();
        pump(&mut [&mut driver], &mut inbox, |inbox| {
            inbox.datagrams.len() >= want.len()
        });
        assert!(inbox.on(b) == want, "{backend}");
        assert!(inbox.datagrams.iter().all(|(_, peer, _)| *peer == a_addr));
    }
}

#[test]
fn dropping_a_driver_with_udp_in_flight_is_prompt() {
    for backend in backends() {
        let mut driver = Driver::new(backend, &DriverConfig::default()).unwrap();
        let UdpPair { a, b_addr, .. } = udp_pair(&mut driver, loopback());
        let flow = driver.open_flow(a, b_addr);
        driver.send_datagrams(flow, Bytes::from(vec![5; 20_000]), 1000);
        driver.wait(Some(Duration::ZERO)).unwrap();
        driver.send_datagrams(flow, Bytes::from(vec![6; 20_000]), 1000);
        driver.send_to(a, b_addr, b"bye");
        let started = Instant::now();
        drop(driver);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{backend}: drop took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn outbound_connect_gets_what_the_peer_wrote_before_it_closed() {
    for backend in backends() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let (mut sock, _) = listener.accept().unwrap();
            sock.write_all(&[7u8; 3000]).unwrap();
            // Closed at once: the FIN follows the data.
        });
        let mut client = Driver::new(backend, &DriverConfig::default()).unwrap();
        let conn = client.connect(addr).unwrap();
        let mut got = 0;
        let mut closed = None;
        drive_until(&mut client, |driver, event| {
            match event {
                Event::Received { conn: c, buf } if c == conn => {
                    got += driver.recv_data(&buf).len();
                    driver.release(buf);
                }
                Event::Closed { conn: c, reason } if c == conn => closed = Some(reason),
                _ => {}
            }
            closed.is_some()
        });
        peer.join().unwrap();
        assert_eq!(got, 3000, "{backend}: bytes before {closed:?}");
    }
}
