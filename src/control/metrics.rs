//! `/metrics`: the server's state and counters in the OpenMetrics text format (which
//! Prometheus reads), encoded by prometheus-client.
//!
//! Nothing is kept between scrapes: each scrape builds a registry from what the workers last
//! published (their counters, summed) and from a fresh snapshot of clients and streams, so a
//! counter here is exactly the sum of the workers' own monotonic counters.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::views::{Snapshot, WorkerCounters};

/// What [`render`] produces.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Client types that always appear in `sluice_clients` (0 when there are none), so a dashboard
/// sees a series from the start.
const CLIENT_TYPES: [&str; 8] = [
    "fmle-publish",
    "rtmp-play",
    "flv-play",
    "ws-flv-play",
    "ts-play",
    "aac-play",
    "mp3-play",
    "unknown",
];

type Labels = Vec<(String, String)>;

fn label(key: &str, value: &str) -> Labels {
    vec![(key.to_string(), value.to_string())]
}

/// A gauge family with one series per `(label value, value)`.
fn gauge_family(key: &str, values: &[(&str, u64)]) -> Family<Labels, Gauge> {
    let family = Family::<Labels, Gauge>::default();
    for (value, n) in values {
        family.get_or_create(&label(key, value)).set(clamp(*n));
    }
    family
}

fn gauge(n: u64) -> Gauge {
    let gauge = Gauge::default();
    gauge.set(clamp(n));
    gauge
}

fn counter(n: u64) -> Counter {
    let counter = Counter::default();
    counter.inc_by(n);
    counter
}

/// A counter family with one series, labelled `backend`.
fn backend_counter(backend: &str, n: u64) -> Family<Labels, Counter> {
    let family = Family::<Labels, Counter>::default();
    family.get_or_create(&label("backend", backend)).inc_by(n);
    family
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The exposition: `counters` are every worker's last published counters, `snapshot` the
/// clients and streams now, `backend` the I/O backend the workers run on.
pub fn render(counters: &[WorkerCounters], snapshot: &Snapshot, backend: &str) -> String {
    let sum = |f: fn(&WorkerCounters) -> u64| counters.iter().map(f).sum::<u64>();
    let mut registry = Registry::default();

    let build = Family::<Labels, Gauge>::default();
    build
        .get_or_create(&label("version", env!("CARGO_PKG_VERSION")))
        .set(1);
    registry.register(
        "sluice_build_info",
        "Build of this server (always 1)",
        build,
    );

    registry.register(
        "sluice_connections",
        "Open client connections by protocol",
        gauge_family(
            "protocol",
            &[
                ("rtmp", sum(|c| c.rtmp_connections)),
                ("http", sum(|c| c.http_connections)),
                ("srt", sum(|c| c.srt_connections)),
                ("rtc", sum(|c| c.rtc_connections)),
            ],
        ),
    );
    registry.register(
        "sluice_streams",
        "Streams the hub knows (published, or awaited by players)",
        gauge(snapshot.streams.len() as u64),
    );
    registry.register(
        "sluice_publishers",
        "Streams being published now",
        gauge(
            snapshot
                .streams
                .iter()
                .filter(|s| s.publisher.is_some())
                .count() as u64,
        ),
    );
    let mut by_type: Vec<(&str, u64)> = CLIENT_TYPES.iter().map(|t| (*t, 0)).collect();
    for client in &snapshot.clients {
        match by_type.iter_mut().find(|(t, _)| *t == client.kind) {
            Some((_, n)) => *n += 1,
            None => by_type.push((client.kind, 1)),
        }
    }
    registry.register(
        "sluice_clients",
        "Clients by SRS client type (publishers, players, viewers)",
        gauge_family("type", &by_type),
    );

    registry.register(
        "sluice_bytes_received",
        "Bytes received from clients",
        counter(sum(|c| c.io.bytes_received)),
    );
    registry.register(
        "sluice_bytes_sent",
        "Bytes sent to clients (file bytes included)",
        counter(sum(|c| c.io.bytes_sent)),
    );
    registry.register(
        "sluice_viewer_skips",
        "Times a viewer fell so far behind that it skipped to a newer keyframe",
        counter(sum(|c| c.viewer_skips)),
    );
    registry.register(
        "sluice_viewer_skipped_frames",
        "Frames viewers skipped by falling behind",
        counter(sum(|c| c.viewer_skipped_frames)),
    );
    registry.register(
        "sluice_hls_requests",
        "HLS and DASH playlists, init segments, segments and parts served",
        counter(sum(|c| c.hls_requests)),
    );
    registry.register(
        "sluice_srt_dropped_datagrams",
        "Datagrams on the SRT port that were not SRT or belonged to no connection",
        counter(sum(|c| c.srt_dropped_datagrams)),
    );
    registry.register(
        "sluice_rtc_dropped_datagrams",
        "Datagrams on the WebRTC port that belonged to no session or were not WebRTC",
        counter(sum(|c| c.rtc_dropped_datagrams)),
    );
    registry.register(
        "sluice_connections_refused",
        "Connections refused (connection limits, security rules, hooks)",
        counter(sum(|c| c.refused)),
    );

    let io: [(&str, &str, u64); 9] = [
        (
            "sluice_io_waits",
            "Times the I/O drivers entered the kernel to wait or submit",
            sum(|c| c.io.waits),
        ),
        (
            "sluice_io_writes",
            "Write operations the I/O drivers issued",
            sum(|c| c.io.writes),
        ),
        (
            "sluice_io_write_syscalls",
            "Syscalls issued for writes (epoll; on io_uring writes ride on waits)",
            sum(|c| c.io.write_syscalls),
        ),
        (
            "sluice_io_accepted",
            "Connections the I/O drivers accepted",
            sum(|c| c.io.accepted),
        ),
        (
            "sluice_io_file_bytes_sent",
            "Bytes sent from files (sendfile/splice)",
            sum(|c| c.io.file_bytes_sent),
        ),
        (
            "sluice_io_datagrams_received",
            "UDP datagrams received (a GRO receive counts each datagram in it)",
            sum(|c| c.io.datagrams_received),
        ),
        (
            "sluice_io_datagrams_sent",
            "UDP datagrams sent (a GSO send counts each datagram in it)",
            sum(|c| c.io.datagrams_sent),
        ),
        (
            "sluice_io_udp_send_calls",
            "UDP sends issued (sendmsg/sendmmsg calls or io_uring sendmsg operations)",
            sum(|c| c.io.udp_send_calls),
        ),
        (
            "sluice_io_datagrams_dropped",
            "UDP datagrams the kernel refused to send (dropped; the protocol retransmits)",
            sum(|c| c.io.datagrams_dropped),
        ),
    ];
    for (name, help, n) in io {
        registry.register(name, help, backend_counter(backend, n));
    }

    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::views::{ClientView, StreamView};

    fn client(id: &str, kind: &'static str) -> ClientView {
        ClientView {
            id: id.into(),
            worker: 0,
            ip: "127.0.0.1".parse().unwrap(),
            vhost: "__defaultVhost__".into(),
            app: "live".into(),
            stream: "s".into(),
            stream_id: Some(1),
            name: "s".into(),
            tc_url: String::new(),
            page_url: String::new(),
            swf_url: String::new(),
            kind,
            publish: kind == "fmle-publish",
            alive_s: 1.0,
            send_bytes: 0,
            recv_bytes: 0,
            send_kbps_30s: 0,
            recv_kbps_30s: 0,
        }
    }

    #[test]
    fn sums_workers_and_counts_clients() {
        let mut a = WorkerCounters {
            rtmp_connections: 2,
            http_connections: 1,
            refused: 3,
            ..WorkerCounters::default()
        };
        a.io.bytes_sent = 100;
        a.io.waits = 7;
        let mut b = a;
        b.io.bytes_sent = 50;
        let snapshot = Snapshot {
            clients: vec![client("a", "fmle-publish"), client("b", "rtmp-play")],
            streams: vec![StreamView {
                id: 1,
                vhost: "__defaultVhost__".into(),
                app: "live".into(),
                name: "s".into(),
                tc_url: String::new(),
                live_ms: 0,
                frames: 0,
                publisher: Some("a".into()),
                video: None,
                audio: None,
            }],
        };
        let text = render(&[a, b], &snapshot, "epoll");
        for line in [
            "sluice_connections{protocol=\"rtmp\"} 4",
            "sluice_connections{protocol=\"http\"} 2",
            "sluice_streams 1",
            "sluice_publishers 1",
            "sluice_clients{type=\"fmle-publish\"} 1",
            "sluice_clients{type=\"flv-play\"} 0",
            "sluice_bytes_sent_total 150",
            "sluice_connections_refused_total 6",
            "sluice_io_waits_total{backend=\"epoll\"} 14",
            "# TYPE sluice_bytes_sent counter",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(text.contains(&format!(
            "sluice_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
    }
}
