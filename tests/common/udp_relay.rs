//! A lossy UDP relay for the SRT tests: clients send to [`UdpRelay::addr`] (loopback), the relay
//! forwards each datagram to the server from a socket of its own per client, and the server's
//! answers back to that client — dropping a configurable fraction in each direction, decided by
//! a seeded [`XorShift`] so a run is reproducible in what it drops (not in when). It counts what
//! it forwarded and dropped, and stops when dropped or when its time is up: every read has a
//! short timeout, so nothing outlives the relay by more than that.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::is_timeout;

/// How often the relay's threads look at the stop flag and the deadline.
const TICK: Duration = Duration::from_millis(20);
/// Larger than any UDP datagram on loopback that SRT sends (1500 MTU) and than garbage tests
/// send.
const MAX_DATAGRAM: usize = 65_536;
/// Clients the relay will carry at once; more are dropped (and counted).
const MAX_CLIENTS: usize = 16;

/// xorshift64*: a tiny seeded generator, enough for test decisions and garbage bytes.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        // A zero state would stay zero.
        XorShift((seed ^ 0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[0, n)` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }
}

/// What fraction of datagrams the relay drops in each direction.
#[derive(Debug, Clone, Copy)]
pub struct Loss {
    /// Client → server.
    pub to_server: f64,
    /// Server → client.
    pub to_client: f64,
}

impl Loss {
    /// The same loss both ways.
    pub fn both(fraction: f64) -> Loss {
        Loss {
            to_server: fraction,
            to_client: fraction,
        }
    }
}

/// Counts of one direction.
#[derive(Debug, Default)]
struct Direction {
    forwarded: AtomicU64,
    dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Stats {
    to_server: Direction,
    to_client: Direction,
    /// Datagrams from clients beyond [`MAX_CLIENTS`], or that could not be sent on.
    refused: AtomicU64,
}

/// A snapshot of the relay's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayCounts {
    pub to_server_forwarded: u64,
    pub to_server_dropped: u64,
    pub to_client_forwarded: u64,
    pub to_client_dropped: u64,
    pub refused: u64,
}

impl std::fmt::Display for RelayCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pct = |dropped: u64, forwarded: u64| {
            100.0 * dropped as f64 / (dropped + forwarded).max(1) as f64
        };
        write!(
            f,
            "client->server {} forwarded, {} dropped ({:.1} %); server->client {} forwarded, {} \
             dropped ({:.1} %)",
            self.to_server_forwarded,
            self.to_server_dropped,
            pct(self.to_server_dropped, self.to_server_forwarded),
            self.to_client_forwarded,
            self.to_client_dropped,
            pct(self.to_client_dropped, self.to_client_forwarded),
        )?;
        if self.refused > 0 {
            write!(f, "; {} refused", self.refused)?;
        }
        Ok(())
    }
}

/// The relay. Stops on drop (joins its threads within about [`TICK`]).
pub struct UdpRelay {
    /// Where clients send (127.0.0.1, a free port).
    pub addr: SocketAddr,
    pub upstream: SocketAddr,
    pub loss: Loss,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpRelay {
    /// A relay to `upstream` dropping `loss` of the datagrams, decided by generators seeded
    /// with `seed`, for at most `max_duration`.
    pub fn start(
        upstream: SocketAddr,
        loss: Loss,
        seed: u64,
        max_duration: Duration,
    ) -> io::Result<UdpRelay> {
        let listener = UdpSocket::bind("127.0.0.1:0")?;
        listener.set_read_timeout(Some(TICK))?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + max_duration;
        let thread = {
            let stats = stats.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                client_side(listener, upstream, loss, seed, stats, stop, deadline)
            })
        };
        Ok(UdpRelay {
            addr,
            upstream,
            loss,
            stats,
            stop,
            thread: Some(thread),
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn counts(&self) -> RelayCounts {
        let s = &self.stats;
        RelayCounts {
            to_server_forwarded: s.to_server.forwarded.load(Ordering::Relaxed),
            to_server_dropped: s.to_server.dropped.load(Ordering::Relaxed),
            to_client_forwarded: s.to_client.forwarded.load(Ordering::Relaxed),
            to_client_dropped: s.to_client.dropped.load(Ordering::Relaxed),
            refused: s.refused.load(Ordering::Relaxed),
        }
    }

    /// Stops forwarding and returns the final counts.
    pub fn stop(mut self) -> RelayCounts {
        self.finish();
        self.counts()
    }

    fn finish(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Reads what clients send and forwards it from each client's own upstream socket; starts a
/// server-side thread per client.
fn client_side(
    listener: UdpSocket,
    upstream: SocketAddr,
    loss: Loss,
    seed: u64,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    deadline: Instant,
) {
    let mut rng = XorShift::new(seed);
    let mut clients: HashMap<SocketAddr, UdpSocket> = HashMap::new();
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        let (n, from) = match listener.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if is_timeout(&e) => continue,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        };
        if !clients.contains_key(&from) {
            if clients.len() >= MAX_CLIENTS {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let Ok(socket) = UdpSocket::bind("127.0.0.1:0") else {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            if socket.connect(upstream).is_err() || socket.set_read_timeout(Some(TICK)).is_err() {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let Ok(reader) = socket.try_clone() else {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            // The answers go out of the client-facing socket, so they come from the relay's port.
            let Ok(back) = listener.try_clone() else {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            // Each client's return path has its own generator, seeded from the relay's.
            let client_seed = rng.next_u64();
            let (stats, stop) = (stats.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                server_side(
                    reader,
                    back,
                    from,
                    loss.to_client,
                    client_seed,
                    stats,
                    stop,
                    deadline,
                )
            }));
            clients.insert(from, socket);
        }
        if rng.chance(loss.to_server) {
            stats.to_server.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        match clients[&from].send(&buf[..n]) {
            Ok(_) => stats.to_server.forwarded.fetch_add(1, Ordering::Relaxed),
            Err(_) => stats.refused.fetch_add(1, Ordering::Relaxed),
        };
    }
    stop.store(true, Ordering::SeqCst);
    for thread in threads {
        let _ = thread.join();
    }
}

/// Reads what the server sends to one client's upstream socket and forwards it to the client.
#[allow(clippy::too_many_arguments)]
fn server_side(
    reader: UdpSocket,
    back: UdpSocket,
    client: SocketAddr,
    loss: f64,
    seed: u64,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    deadline: Instant,
) {
    let mut rng = XorShift::new(seed);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        let n = match reader.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if is_timeout(&e) => continue,
            // ECONNREFUSED from an ICMP unreachable: the server is not (yet) there.
            Err(_) => {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        };
        if rng.chance(loss) {
            stats.to_client.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        match back.send_to(&buf[..n], client) {
            Ok(_) => stats.to_client.forwarded.fetch_add(1, Ordering::Relaxed),
            Err(_) => stats.refused.fetch_add(1, Ordering::Relaxed),
        };
    }
}
