//! Static files from `[http_server] dir` as a browser or a download tool sees them: a 20 MiB
//! file byte-exact (whole, to several clients at once, and in ranges: start, middle, suffix,
//! open-ended), 416 past the end, 304 for a matching ETag or Last-Modified, HEAD without a
//! body, keep-alive with pipelined requests answered in order, Content-Type by extension,
//! directories redirected to their slash and served by their index.html, CORS headers, OPTIONS
//! and other methods; and never a byte from outside the root — not through `..`, not
//! percent-encoded, not through a symlink.

mod common;

use std::time::{Duration, Instant};

use common::http_client::{self, HttpConn, Response, request_bytes};
use common::{Io, Server, ServerConfig, TempDir};

const BIG_LEN: usize = 20 * 1024 * 1024;

/// Method, target, headers.
type Request<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
const KEEPALIVE_TIMEOUT_MS: u64 = 2000;

#[test]
fn static_files_ranges_caching_keepalive_and_no_escape() {
    let root = TempDir::new("static-root");
    let outside = TempDir::new("static-outside");
    let tree = Tree::build(&root, &outside);
    common::on_each_backend(|io| static_files(io, &root, &tree));
}

/// The 20 MiB file's bytes: each 8-byte word is a hash of its offset, so any misplaced range
/// shows.
fn big_file() -> Vec<u8> {
    let mut out = Vec::with_capacity(BIG_LEN);
    for word in 0..(BIG_LEN / 8) as u64 {
        out.extend_from_slice(&(word.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED).to_le_bytes());
    }
    out
}

struct Tree {
    big: Vec<u8>,
    index: &'static str,
    sub_index: &'static str,
    /// Name of the directory outside the root, as a sibling of it.
    outside_name: String,
    secret: String,
}

impl Tree {
    fn build(root: &TempDir, outside: &TempDir) -> Tree {
        let big = big_file();
        std::fs::write(root.join("big.bin"), &big).unwrap();
        let index = "<!doctype html><title>root index</title>\n";
        let sub_index = "<!doctype html><title>sub index</title>\n";
        std::fs::write(root.join("index.html"), index).unwrap();
        std::fs::write(root.join("style.css"), "body { color: #222 }\n").unwrap();
        std::fs::write(root.join("with space.txt"), "a name with a space\n").unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/index.html"), sub_index).unwrap();
        let secret = format!("TOP-SECRET-{}-{}", std::process::id(), BIG_LEN);
        std::fs::write(outside.join("secret.txt"), &secret).unwrap();
        std::os::unix::fs::symlink(outside.join("secret.txt"), root.join("link.txt")).unwrap();
        std::os::unix::fs::symlink(&outside.path, root.join("linkdir")).unwrap();
        Tree {
            big,
            index,
            sub_index,
            outside_name: outside
                .path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
            secret,
        }
    }
}

fn expect_cors(io: Io, what: &str, response: &Response) {
    assert_eq!(
        response.header("access-control-allow-origin"),
        Some("*"),
        "[{io}] {what}: no CORS header: {}",
        response.head_text()
    );
}

fn static_files(io: Io, root: &TempDir, tree: &Tree) {
    let server = Server::start(
        io,
        &ServerConfig::new()
            .workers(2)
            .http_dir(&root.path)
            .http("keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    );
    let port = server.http_port;
    let get = |target: &str, headers: &[(&str, &str)]| -> Response {
        http_client::request(port, "GET", target, headers)
            .unwrap_or_else(|e| panic!("[{io}] GET {target} {headers:?}: {e}"))
    };
    let len = tree.big.len();

    // The whole file, byte-exact, with its validators.
    let whole = get("/big.bin", &[]);
    assert_eq!(whole.status, 200, "[{io}] {}", whole.head_text());
    assert_eq!(
        whole.content_length(),
        Some(len as u64),
        "[{io}] {}",
        whole.head_text()
    );
    assert!(
        whole.body == tree.big,
        "[{io}] /big.bin: the body differs from the file"
    );
    assert_eq!(
        whole.header("content-type"),
        Some("application/octet-stream"),
        "[{io}] {}",
        whole.head_text()
    );
    let etag = whole
        .header("etag")
        .unwrap_or_else(|| panic!("[{io}] no ETag: {}", whole.head_text()))
        .to_string();
    let last_modified = whole
        .header("last-modified")
        .unwrap_or_else(|| panic!("[{io}] no Last-Modified: {}", whole.head_text()))
        .to_string();
    assert!(
        last_modified.ends_with(" GMT"),
        "[{io}] Last-Modified: {last_modified}"
    );
    expect_cors(io, "GET /big.bin", &whole);

    // Three clients at once get it byte-exact too.
    std::thread::scope(|s| {
        let downloads: Vec<_> = (0..3).map(|_| s.spawn(|| get("/big.bin", &[]))).collect();
        for (i, d) in downloads.into_iter().enumerate() {
            let r = d.join().unwrap();
            assert_eq!(
                r.status,
                200,
                "[{io}] parallel download {i}: {}",
                r.head_text()
            );
            assert!(
                r.body == tree.big,
                "[{io}] parallel download {i}: the body differs"
            );
        }
    });

    // Ranges: start, middle (unaligned, across pages), a big one, suffix, open-ended.
    let ranges: [(&str, usize, usize); 5] = [
        ("bytes=0-99", 0, 99),
        ("bytes=10485757-10486799", 10_485_757, 10_486_799),
        ("bytes=1-15000000", 1, 15_000_000),
        ("bytes=-1000", len - 1000, len - 1),
        ("bytes=20000000-", 20_000_000, len - 1),
    ];
    for (range, first, last) in ranges {
        let r = get("/big.bin", &[("Range", range)]);
        assert_eq!(r.status, 206, "[{io}] {range}: {}", r.head_text());
        let expected = format!("bytes {first}-{last}/{len}");
        assert_eq!(
            r.header("content-range"),
            Some(expected.as_str()),
            "[{io}] {range}: {}",
            r.head_text()
        );
        assert_eq!(
            r.content_length(),
            Some((last - first + 1) as u64),
            "[{io}] {range}"
        );
        assert!(
            r.body == tree.big[first..=last],
            "[{io}] {range}: {} bytes that are not the file's {first}..={last}",
            r.body.len()
        );
        expect_cors(io, range, &r);
    }
    for range in [
        format!("bytes={len}-"),
        "bytes=99999999-100000000".to_string(),
    ] {
        let r = get("/big.bin", &[("Range", &range)]);
        assert_eq!(r.status, 416, "[{io}] {range}: {}", r.head_text());
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes */{len}").as_str()),
            "[{io}] {range}: {}",
            r.head_text()
        );
    }

    // Conditional requests.
    for (what, headers) in [
        ("If-None-Match", vec![("If-None-Match", etag.as_str())]),
        (
            "If-Modified-Since",
            vec![("If-Modified-Since", last_modified.as_str())],
        ),
    ] {
        let r = get("/big.bin", &headers);
        assert_eq!(r.status, 304, "[{io}] {what}: {}", r.head_text());
        assert!(r.body.is_empty(), "[{io}] {what}: a 304 with a body");
        expect_cors(io, what, &r);
    }
    let r = get(
        "/big.bin",
        &[
            ("If-None-Match", "\"something-else\""),
            ("Range", "bytes=0-9"),
        ],
    );
    assert_eq!(
        r.status,
        206,
        "[{io}] a stale ETag must not give 304: {}",
        r.head_text()
    );

    // Keep-alive: HEAD, then pipelined requests in one write, answered in order, byte-exact.
    {
        let mut conn = HttpConn::connect(port).unwrap();
        let addr = conn.local_addr();
        let head = conn.request("HEAD", "/big.bin", &[]).unwrap();
        assert_eq!(head.status, 200, "[{io}] HEAD: {}", head.head_text());
        assert_eq!(
            head.content_length(),
            Some(len as u64),
            "[{io}] HEAD: {}",
            head.head_text()
        );
        assert_eq!(
            head.header("etag"),
            Some(etag.as_str()),
            "[{io}] HEAD: {}",
            head.head_text()
        );
        let mut batch = Vec::new();
        let pipelined: [Request; 6] = [
            ("GET", "/index.html", &[]),
            ("GET", "/big.bin", &[("Range", "bytes=100-199")]),
            ("HEAD", "/big.bin", &[]),
            ("GET", "/style.css", &[]),
            ("GET", "/missing.txt", &[]),
            ("GET", "/big.bin", &[]),
        ];
        for (method, target, headers) in pipelined {
            batch.extend(request_bytes(method, target, headers));
        }
        conn.send(&batch).unwrap();
        let mut read = |head_only: bool| {
            conn.read_response(head_only)
                .unwrap_or_else(|e| panic!("[{io}] pipelined response: {e}"))
        };
        let r = read(false);
        assert_eq!(
            (r.status, r.body_text().as_str()),
            (200, tree.index),
            "[{io}] pipelined 1"
        );
        assert!(
            r.header("content-type")
                .is_some_and(|t| t.starts_with("text/html")),
            "[{io}] {}",
            r.head_text()
        );
        let r = read(false);
        assert_eq!(r.status, 206, "[{io}] pipelined 2: {}", r.head_text());
        assert!(
            r.body == tree.big[100..200],
            "[{io}] pipelined 2: wrong bytes"
        );
        let r = read(true);
        assert_eq!(
            r.status,
            200,
            "[{io}] pipelined 3 (HEAD): {}",
            r.head_text()
        );
        let r = read(false);
        assert_eq!(r.status, 200, "[{io}] pipelined 4: {}", r.head_text());
        assert!(
            r.header("content-type")
                .is_some_and(|t| t.starts_with("text/css")),
            "[{io}] {}",
            r.head_text()
        );
        let r = read(false);
        assert_eq!(r.status, 404, "[{io}] pipelined 5: {}", r.head_text());
        expect_cors(io, "404", &r);
        let r = read(false);
        assert_eq!(r.status, 200, "[{io}] pipelined 6: {}", r.head_text());
        assert!(
            r.body == tree.big,
            "[{io}] pipelined 6: the 20 MiB body differs"
        );

        // Idle now: closed at keepalive_timeout, not long before.
        let idle_from = Instant::now();
        assert!(
            conn.wait_closed(Duration::from_millis(KEEPALIVE_TIMEOUT_MS + 3000)),
            "[{io}] an idle keep-alive connection stayed open past keepalive_timeout"
        );
        let idle = idle_from.elapsed();
        assert!(
            idle >= Duration::from_millis(KEEPALIVE_TIMEOUT_MS - 500),
            "[{io}] idle keep-alive closed after {idle:?} (keepalive_timeout {KEEPALIVE_TIMEOUT_MS} ms)"
        );
        let id = server
            .connected_line(addr)
            .and_then(|l| l.client())
            .expect("client id of the keep-alive connection");
        let left = server.expect_log(
            "client left for the keep-alive connection",
            |l| l.is("client left") && l.client().as_deref() == Some(id.as_str()),
            Duration::from_secs(3),
        );
        assert_eq!(left.str("role").as_deref(), Some("static"), "[{io}] {left}");
        assert_eq!(left.u64("requests"), Some(7), "[{io}] {left}");
        assert!(
            left.u64("bytes_out").unwrap_or(0) > len as u64,
            "[{io}] the connection sent a 20 MiB file but logs fewer bytes: {left}"
        );
    }

    // Directories: without the slash, a redirect to it; with it, its index.html.
    let r = get("/sub", &[]);
    assert_eq!(r.status, 301, "[{io}] /sub: {}", r.head_text());
    assert!(
        r.header("location").is_some_and(|l| l.ends_with("/sub/")),
        "[{io}] /sub: {}",
        r.head_text()
    );
    let r = get("/sub/", &[]);
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (200, tree.sub_index),
        "[{io}] /sub/"
    );
    let r = get("/", &[]);
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (200, tree.index),
        "[{io}] /"
    );
    // Percent-encoded names, and a query string (cache busting), name the file.
    let r = get("/with%20space.txt", &[]);
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (200, "a name with a space\n"),
        "[{io}] /with%20space.txt: {}",
        r.head_text()
    );
    let r = get("/style.css?v=123", &[]);
    assert_eq!(r.status, 200, "[{io}] /style.css?v=123: {}", r.head_text());
    let r = get("/nope/missing.txt", &[]);
    assert_eq!(r.status, 404, "[{io}] missing file: {}", r.head_text());

    // Nothing from outside the root, however asked for.
    let out = &tree.outside_name;
    let escapes = [
        format!("/../{out}/secret.txt"),
        format!("/%2e%2e/{out}/secret.txt"),
        format!("/%2E%2E/{out}/secret.txt"),
        format!("/sub/../../{out}/secret.txt"),
        format!("/sub/%2e%2e/%2e%2e/{out}/secret.txt"),
        format!("/..%2f{out}%2fsecret.txt"),
        format!("/.%2e/{out}/secret.txt"),
        "/link.txt".to_string(),
        "/linkdir/secret.txt".to_string(),
    ];
    for target in &escapes {
        let r = get(target, &[]);
        assert!(
            !r.body_text().contains(&tree.secret),
            "[{io}] GET {target} served a file from outside the root"
        );
        assert_eq!(r.status, 403, "[{io}] GET {target}: {}", r.head_text());
        expect_cors(io, target, &r);
    }

    // OPTIONS: 204 with the CORS headers. Other methods: 405; one with a body also closes
    // the connection (its body is not read).
    let r =
        http_client::request(port, "OPTIONS", "/big.bin", &[("Origin", "http://example")]).unwrap();
    assert_eq!(r.status, 204, "[{io}] OPTIONS: {}", r.head_text());
    expect_cors(io, "OPTIONS", &r);
    assert!(
        r.header("access-control-allow-methods")
            .is_some_and(|m| m.contains("GET")),
        "[{io}] OPTIONS: {}",
        r.head_text()
    );
    {
        let mut conn = HttpConn::connect(port).unwrap();
        let r = conn.request("DELETE", "/big.bin", &[]).unwrap();
        assert_eq!(r.status, 405, "[{io}] DELETE: {}", r.head_text());
        let r = conn.request("GET", "/style.css", &[]).unwrap();
        assert_eq!(
            r.status, 200,
            "[{io}] GET after a 405 on a kept-alive connection"
        );
        let mut post = request_bytes("POST", "/big.bin", &[("Content-Length", "5")]);
        post.extend_from_slice(b"hello");
        conn.send(&post).unwrap();
        let r = conn.read_response(false).unwrap();
        assert_eq!(r.status, 405, "[{io}] POST: {}", r.head_text());
        assert!(
            conn.wait_closed(Duration::from_secs(3)),
            "[{io}] a POST with an unread body left the connection open"
        );
    }
    {
        let mut conn = HttpConn::connect(port).unwrap();
        let mut bad = request_bytes("GET", "/style.css", &[("Content-Length", "4")]);
        bad.extend_from_slice(b"abcd");
        conn.send(&bad).unwrap();
        let r = conn.read_response(false).unwrap();
        assert_eq!(r.status, 400, "[{io}] GET with a body: {}", r.head_text());
        assert!(
            conn.wait_closed(Duration::from_secs(3)),
            "[{io}] a GET with a body left the connection open"
        );
    }

    // With cors_origin empty, no CORS headers.
    {
        let quiet = Server::start(
            io,
            &ServerConfig::new()
                .workers(2)
                .http_dir(&root.path)
                .http("cors_origin", "\"\""),
        );
        for (method, target) in [("GET", "/style.css"), ("GET", "/missing"), ("OPTIONS", "/")] {
            let r = http_client::request(quiet.http_port, method, target, &[]).unwrap();
            assert!(
                r.headers
                    .iter()
                    .all(|(k, _)| !k.to_ascii_lowercase().starts_with("access-control-")),
                "[{io}] cors_origin = \"\" but {method} {target} has CORS headers: {}",
                r.head_text()
            );
        }
    }

    // A download read slowly, for longer than keepalive_timeout, is not idle: the connection
    // stays open for the next request once the body is in.
    {
        let mut conn = HttpConn::connect_with(port, Some(64 * 1024)).unwrap();
        conn.pace = Some((64 * 1024, Duration::from_millis(8)));
        conn.timeout = Duration::from_secs(30);
        let started = Instant::now();
        let r = conn.request("GET", "/big.bin", &[]).unwrap();
        let took = started.elapsed();
        assert_eq!(r.status, 200, "[{io}] slow download: {}", r.head_text());
        assert!(r.body == tree.big, "[{io}] slow download: the body differs");
        eprintln!(
            "[{io}] slow download took {took:?} (keepalive_timeout {KEEPALIVE_TIMEOUT_MS} ms)"
        );
        conn.pace = None;
        let next = conn.request("GET", "/style.css", &[]).unwrap_or_else(|e| {
            panic!(
                "[{io}] the connection was closed after a {took:?} download, as if it had been idle \
                 for keepalive_timeout ({KEEPALIVE_TIMEOUT_MS} ms): {e}"
            )
        });
        assert_eq!(
            next.status,
            200,
            "[{io}] request after a slow download: {}",
            next.head_text()
        );
    }

    server.assert_no_panic();
}
