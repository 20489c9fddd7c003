//! `/metrics` on the API port: a strict parse of the exposition (every sample belongs to a
//! family declared with `# TYPE` and `# HELP`, counters' samples end in `_total`, no series
//! twice, `# EOF` last), gauges that follow the live state (connections by protocol, streams,
//! clients by type — as a publisher, an RTMP player and an HTTP-FLV viewer come and go), and
//! byte and I/O counters, labelled with the backend, that grow.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::api_client::Api;
use common::http_client::LiveViewer;
use common::rtmp_client::Player;
use common::{FfmpegPublisher, Io, PublishOpts, Server, ServerConfig, wait_until};

#[test]
fn metrics_parse_and_follow_the_live_state() {
    common::require_ffmpeg();
    common::on_each_backend(metrics);
}

// ---------------------------------------------------------------------------------------------
// A strict parser of the Prometheus / OpenMetrics text format

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

#[derive(Debug, Default)]
struct Family {
    kind: String,
    help: Option<String>,
}

#[derive(Debug, Default)]
struct Exposition {
    families: HashMap<String, Family>,
    samples: Vec<Sample>,
}

impl Exposition {
    /// The value of the series `name{labels}`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == labels)
            .map(|s| s.value)
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no series {name}{labels:?} in {:#?}", self.samples))
    }
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Which family a sample name belongs to, given the declared families and their types.
fn family_of<'a>(name: &'a str, families: &HashMap<String, Family>) -> Result<&'a str, String> {
    if let Some(family) = families.get(name) {
        return match family.kind.as_str() {
            "gauge" | "untyped" | "unknown" => Ok(name),
            kind => Err(format!("sample {name} is the bare name of a {kind} family")),
        };
    }
    let suffixed = [
        ("_total", &["counter"][..]),
        ("_created", &["counter", "histogram", "summary"][..]),
        ("_info", &["info"][..]),
        ("_bucket", &["histogram"][..]),
        ("_sum", &["histogram", "summary"][..]),
        ("_count", &["histogram", "summary"][..]),
    ];
    for (suffix, kinds) in suffixed {
        if let Some(base) = name.strip_suffix(suffix)
            && let Some(family) = families.get(base)
        {
            return if kinds.contains(&family.kind.as_str()) {
                Ok(base)
            } else {
                Err(format!(
                    "sample {name}: {suffix} on a {} family",
                    family.kind
                ))
            };
        }
    }
    Err(format!("sample {name} belongs to no declared family"))
}

/// `{a="x",b="y\"z"}` from the start of `text`: the labels and the rest.
fn parse_labels(text: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = text.strip_prefix('{').ok_or("labels must start with {")?;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let key = &rest[..eq];
        if !is_name(key) || key.contains(':') {
            return Err(format!("bad label name {key:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value must be quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '"')) => value.push('"'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(key.to_string(), value).is_some() {
            return Err(format!("label {key} twice"));
        }
        rest = &rest[end + 1..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err(format!("expected , or }} at {rest:?}"));
        }
    }
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text.parse().map_err(|_| format!("bad value {text:?}")),
    }
}

/// Parses an exposition, failing on anything the format does not allow.
fn parse_exposition(text: &str) -> Result<Exposition, String> {
    let mut exposition = Exposition::default();
    let mut seen_eof = false;
    let mut series = std::collections::HashSet::new();
    let mut finished_families = std::collections::HashSet::new();
    let mut current: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if seen_eof {
            return Err(at("content after # EOF".into()));
        }
        if line == "# EOF" {
            seen_eof = true;
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let (keyword, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let rest = parts.next().unwrap_or("");
            if !is_name(name) {
                return Err(at(format!("bad metric name {name:?}")));
            }
            let family = exposition.families.entry(name.to_string()).or_default();
            match keyword {
                "TYPE" => {
                    if !family.kind.is_empty() {
                        return Err(at("TYPE twice".into()));
                    }
                    let known = [
                        "counter",
                        "gauge",
                        "histogram",
                        "summary",
                        "info",
                        "stateset",
                        "gaugehistogram",
                        "unknown",
                        "untyped",
                    ];
                    if !known.contains(&rest) {
                        return Err(at(format!("unknown type {rest:?}")));
                    }
                    family.kind = rest.to_string();
                }
                "HELP" => {
                    if family.help.replace(rest.to_string()).is_some() {
                        return Err(at("HELP twice".into()));
                    }
                }
                "UNIT" => {}
                _ => return Err(at(format!("unknown comment {keyword:?}"))),
            }
            continue;
        }
        if line.is_empty() {
            return Err(at("empty line".into()));
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| at("sample without a value".into()))?;
        let name = &line[..name_end];
        if !is_name(name) {
            return Err(at(format!("bad sample name {name:?}")));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(at)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let mut fields = rest
            .strip_prefix(' ')
            .ok_or_else(|| at("no space before the value".into()))?
            .split(' ');
        let value = parse_value(fields.next().unwrap_or("")).map_err(at)?;
        if let Some(timestamp) = fields.next() {
            timestamp
                .parse::<f64>()
                .map_err(|_| at(format!("bad timestamp {timestamp:?}")))?;
        }
        if fields.next().is_some() {
            return Err(at("trailing fields".into()));
        }
        let family = family_of(name, &exposition.families)
            .map_err(at)?
            .to_string();
        let declared = &exposition.families[&family];
        if declared.help.is_none() {
            return Err(at(format!("family {family} has no HELP")));
        }
        if declared.kind == "counter" && (value.is_nan() || value < 0.0) {
            return Err(at("negative counter".into()));
        }
        // A family's samples are contiguous.
        if current.as_deref() != Some(family.as_str()) {
            if finished_families.contains(&family) {
                return Err(at(format!("samples of {family} are not contiguous")));
            }
            if let Some(previous) = current.replace(family.clone()) {
                finished_families.insert(previous);
            }
        }
        if !series.insert((name.to_string(), format!("{labels:?}"))) {
            return Err(at("series twice".into()));
        }
        exposition.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    if !seen_eof {
        return Err("no # EOF at the end".into());
    }
    for (name, family) in &exposition.families {
        if family.kind.is_empty() {
            return Err(format!("family {name} has HELP but no TYPE"));
        }
    }
    Ok(exposition)
}

#[test]
fn the_parser_is_strict() {
    let help_twice = "# HELP a x.\n# TYPE a counter\n# HELP a x.\n# EOF\n";
    assert!(parse_exposition(help_twice).is_err(), "HELP twice");
    let ok = "# HELP a x.\n# TYPE a counter\na_total{l=\"v\\\"w\"} 3\n# EOF\n";
    let parsed = parse_exposition(ok).unwrap();
    assert_eq!(parsed.value("a_total", &[("l", "v\"w")]), 3.0);
    for bad in [
        "# HELP a x.\n# TYPE a counter\na 3\n# EOF\n",
        "# HELP a x.\n# TYPE a gauge\na_total 3\n# EOF\n",
        "b 1\n# EOF\n",
        "# HELP a x.\n# TYPE a gauge\na 1\n",
        "# HELP a x.\n# TYPE a gauge\na 1\na 2\n# EOF\n",
        "# HELP a x.\n# TYPE a gauge\na{l=\"1\"} 1\n# EOF\nx",
        "# HELP a x.\n# TYPE a gauge\na{l=1} 1\n# EOF\n",
        "# HELP a x.\n# TYPE a gauge\na one\n# EOF\n",
        "# TYPE a gauge\na 1\n# EOF\n",
        "# HELP a x.\n# TYPE a counter\na_total -1\n# EOF\n",
        "# HELP a x.\n# TYPE a gauge\n# HELP b x.\n# TYPE b gauge\na{l=\"1\"} 1\nb 1\na{l=\"2\"} 1\n# EOF\n",
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted {bad:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// The test

fn scrape(io: Io, api: &Api) -> Exposition {
    let reply = api
        .request("GET", "/metrics", &[])
        .unwrap_or_else(|e| panic!("[{io}] GET /metrics: {e}"));
    assert_eq!(reply.status(), 200, "[{io}] /metrics");
    let content_type = reply.header("content-type").unwrap_or("");
    assert!(
        content_type.starts_with("application/openmetrics-text")
            || content_type.starts_with("text/plain; version=0.0.4"),
        "[{io}] /metrics content type {content_type:?}"
    );
    let text = reply.response.body_text();
    parse_exposition(&text)
        .unwrap_or_else(|e| panic!("[{io}] /metrics does not parse: {e}\n{text}"))
}

/// The live-state gauges: (rtmp, http) connections, streams, and clients of the three types.
fn live_state(m: &Exposition) -> [f64; 6] {
    [
        m.value("sluice_connections", &[("protocol", "rtmp")]),
        m.value("sluice_connections", &[("protocol", "http")]),
        m.value("sluice_streams", &[]),
        m.value("sluice_clients", &[("type", "fmle-publish")]),
        m.value("sluice_clients", &[("type", "rtmp-play")]),
        m.value("sluice_clients", &[("type", "flv-play")]),
    ]
}

fn expect_state(io: Io, api: &Api, expected: [f64; 6], what: &str) {
    let mut last = [f64::NAN; 6];
    let ok = wait_until(Duration::from_secs(3), || {
        last = live_state(&scrape(io, api));
        last == expected
    });
    assert!(
        ok,
        "[{io}] {what}: [rtmp conns, http conns, streams, publishers, rtmp players, flv viewers] \
         = {last:?}, expected {expected:?}"
    );
}

fn metrics(io: Io) {
    let server = Server::start(io, &ServerConfig::new().workers(2));
    let api = Api::new(server.api_port);
    let idle = scrape(io, &api);
    assert_eq!(
        idle.value(
            "sluice_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert_eq!(idle.families["sluice_build_info"].kind, "gauge");
    for family in [
        "sluice_bytes_received",
        "sluice_bytes_sent",
        "sluice_viewer_skips",
        "sluice_viewer_skipped_frames",
        "sluice_connections_refused",
        "sluice_io_waits",
        "sluice_io_writes",
        "sluice_io_write_syscalls",
        "sluice_io_accepted",
        "sluice_io_file_bytes_sent",
    ] {
        assert_eq!(
            idle.families.get(family).map(|f| f.kind.as_str()),
            Some("counter"),
            "[{io}] {family}"
        );
    }
    for family in ["sluice_connections", "sluice_streams", "sluice_clients"] {
        assert_eq!(idle.families[family].kind, "gauge", "[{io}] {family}");
    }
    expect_state(io, &api, [0.0; 6], "idle");

    let _publisher = FfmpegPublisher::start(&server, "m", PublishOpts::default().seconds(60.0));
    server.expect_publish("live/m", Duration::from_secs(10));
    let player = Player::start(server.port, "m", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("[{io}] player: {e}"));
    let viewer = LiveViewer::start(server.http_port, "/live/m.flv", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("[{io}] viewer: {e}"));
    assert!(player.wait_for(Duration::from_secs(5), |r| r.video_frames().count() >= 5));
    assert!(
        viewer.wait_for(Duration::from_secs(5), |r| r.media.video_frames().count()
            >= 5)
    );
    expect_state(
        io,
        &api,
        [2.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        "publisher, RTMP player, HTTP-FLV viewer",
    );

    // Counters grow while media flows; I/O counters carry the backend.
    let backend = [("backend", io.name())];
    let before = scrape(io, &api);
    std::thread::sleep(Duration::from_millis(1500));
    let after = scrape(io, &api);
    for (name, labels) in [
        ("sluice_bytes_received_total", &[][..]),
        ("sluice_bytes_sent_total", &[][..]),
        ("sluice_io_waits_total", &backend[..]),
        ("sluice_io_writes_total", &backend[..]),
    ] {
        let (b, a) = (before.value(name, labels), after.value(name, labels));
        assert!(a > b, "[{io}] {name} did not grow: {b} -> {a}");
    }
    assert!(after.value("sluice_io_accepted_total", &backend) >= 3.0);
    if io == Io::Epoll {
        assert!(after.value("sluice_io_write_syscalls_total", &backend) > 0.0);
    }
    for name in [
        "sluice_viewer_skips_total",
        "sluice_viewer_skipped_frames_total",
        "sluice_connections_refused_total",
    ] {
        assert_eq!(after.value(name, &[]), 0.0, "[{io}] {name}");
    }
    // Every counter is monotonic between the scrapes.
    for sample in &before.samples {
        if sample.name.ends_with("_total") {
            let later = after
                .samples
                .iter()
                .find(|s| s.name == sample.name && s.labels == sample.labels)
                .unwrap_or_else(|| panic!("[{io}] {} vanished", sample.name));
            assert!(
                later.value >= sample.value,
                "[{io}] {} went down",
                sample.name
            );
        }
    }

    // The viewer and the player leave: the gauges follow.
    viewer.stop();
    expect_state(
        io,
        &api,
        [2.0, 0.0, 1.0, 1.0, 1.0, 0.0],
        "after the viewer left",
    );
    player.stop();
    expect_state(
        io,
        &api,
        [1.0, 0.0, 1.0, 1.0, 0.0, 0.0],
        "after the player left",
    );
    server.assert_no_panic();
}
