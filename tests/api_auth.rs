//! HTTP Basic authentication of the API (`[http_api.auth]`): when enabled, every route —
//! `/api/v1/*` and `/metrics` — answers 401 with `WWW-Authenticate: Basic realm="sluice"`
//! without credentials, with wrong ones, a wrong scheme or a malformed token, and 200 with the
//! right ones; a CORS preflight needs none. When disabled, no credentials are needed (and with
//! `cors_origin = ""` no CORS headers are sent).

mod common;

use common::api_client::{Api, Reply, base64, basic_auth};
use common::{Io, Server, ServerConfig, toml_string};

const USER: &str = "admin";
const PASSWORD: &str = "s3cret pass";

const ROUTES: [&str; 5] = [
    "/api/v1/versions",
    "/api/v1/summaries",
    "/api/v1/streams",
    "/api/v1/clients/nope",
    "/metrics",
];

/// The `code` a route answers when allowed: an unknown id is HTTP 200 with SRS's code in the
/// body; `/metrics` is not JSON (-1).
fn expected_code(path: &str) -> i64 {
    match path {
        "/metrics" => -1,
        p if p.ends_with("/nope") => 2049,
        _ => 0,
    }
}

#[test]
fn auth_enabled_requires_basic_credentials() {
    // The test's own encoder, against RFC 4648's vectors.
    for (plain, encoded) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(plain.as_bytes()), encoded);
    }
    common::on_each_backend(auth_enabled);
}

#[test]
fn auth_disabled_needs_no_credentials() {
    common::on_each_backend(auth_disabled);
}

fn request(io: Io, api: &Api, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    api.request(method, path, headers)
        .unwrap_or_else(|e| panic!("[{io}] {method} {path}: {e}"))
}

fn auth_enabled(io: Io) {
    let config = ServerConfig::new()
        .api("auth.enabled", "true")
        .api("auth.username", toml_string(USER))
        .api("auth.password", toml_string(PASSWORD));
    let server = Server::start(io, &config);
    let api = Api::new(server.api_port);
    let right = basic_auth(USER, PASSWORD);
    let wrong_password = basic_auth(USER, "s3cret pas");
    let wrong_user = basic_auth("Admin", PASSWORD);
    let bearer = format!("Bearer {}", base64(format!("{USER}:{PASSWORD}").as_bytes()));
    let refused: [(&str, Option<&str>); 6] = [
        ("no credentials", None),
        ("a wrong password", Some(&wrong_password)),
        ("a wrong user", Some(&wrong_user)),
        ("another scheme", Some(&bearer)),
        ("a malformed token", Some("Basic !!!notbase64")),
        ("an empty token", Some("Basic ")),
    ];
    for path in ROUTES {
        for (what, authorization) in refused {
            let headers: Vec<(&str, &str)> = authorization
                .map(|a| ("Authorization", a))
                .into_iter()
                .collect();
            let reply = request(io, &api, "GET", path, &headers);
            assert_eq!(reply.status(), 401, "[{io}] {path} with {what}");
            assert_eq!(
                reply.header("www-authenticate"),
                Some("Basic realm=\"sluice\""),
                "[{io}] {path} with {what}: {}",
                reply.response.head_text()
            );
            assert_eq!(reply.code(), 401, "[{io}] {path} with {what}");
        }
        let reply = request(io, &api, "GET", path, &[("Authorization", &right)]);
        assert_eq!(
            (reply.status(), reply.code()),
            (200, expected_code(path)),
            "[{io}] {path} with the right credentials: {}",
            reply.response.body_text()
        );
    }
    // A kick is refused without credentials (and nothing is kicked).
    let reply = request(io, &api, "DELETE", "/api/v1/clients/nope", &[]);
    assert_eq!(reply.status(), 401, "[{io}] DELETE without credentials");
    // The scheme name is case-insensitive.
    let lower = right.replacen("Basic", "basic", 1);
    let reply = request(
        io,
        &api,
        "GET",
        "/api/v1/versions",
        &[("Authorization", &lower)],
    );
    assert_eq!(reply.status(), 200, "[{io}] lowercase scheme");
    // Browsers send preflights without credentials.
    let preflight = request(
        io,
        &api,
        "OPTIONS",
        "/api/v1/streams",
        &[
            ("Origin", "http://console.example"),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "authorization"),
        ],
    );
    assert!(
        matches!(preflight.status(), 200 | 204),
        "[{io}] preflight with auth on: {}",
        preflight.response.head_text()
    );
    server.assert_no_panic();
}

fn auth_disabled(io: Io) {
    let config = ServerConfig::new()
        .api("auth.enabled", "false")
        .api("auth.username", toml_string(USER))
        .api("auth.password", toml_string(PASSWORD))
        .api("cors_origin", toml_string(""));
    let server = Server::start(io, &config);
    let api = Api::new(server.api_port);
    for path in ROUTES {
        let reply = request(io, &api, "GET", path, &[]);
        assert_eq!(
            (reply.status(), reply.code()),
            (200, expected_code(path)),
            "[{io}] {path} without credentials"
        );
        assert_eq!(reply.header("www-authenticate"), None, "[{io}] {path}");
        assert_eq!(
            reply.header("access-control-allow-origin"),
            None,
            "[{io}] {path}: CORS headers with cors_origin empty"
        );
    }
    // Credentials are ignored when auth is off, right or wrong.
    let wrong = basic_auth("x", "y");
    let reply = request(
        io,
        &api,
        "GET",
        "/api/v1/versions",
        &[("Authorization", &wrong)],
    );
    assert_eq!(
        reply.status(),
        200,
        "[{io}] wrong credentials with auth off"
    );
    server.assert_no_panic();
}
