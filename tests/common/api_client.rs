//! The HTTP API (port 1985) from the tests' side: requests with parsed JSON replies, SRS's
//! reference replies (`tests/data/srs/`, copies of `compat/srs/` captured from SRS 7.0.18), and a
//! recursive comparison of JSON shapes — key sets and value types, not values.

use std::io;

use serde_json::Value;

use super::http_client::{HttpConn, Response};

/// A reply and its body parsed as JSON (`Value::Null` if it is not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    pub response: Response,
    pub json: Value,
}

impl Reply {
    pub fn status(&self) -> u16 {
        self.response.status
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.response.header(name)
    }

    /// `json["code"]` as a number (-1 when absent).
    pub fn code(&self) -> i64 {
        self.json["code"].as_i64().unwrap_or(-1)
    }
}

/// The API of a server on `port`.
#[derive(Debug, Clone, Copy)]
pub struct Api {
    pub port: u16,
}

impl Api {
    pub fn new(port: u16) -> Api {
        Api { port }
    }

    /// `method target` with `headers` on a new connection; the body parsed as JSON if it is.
    pub fn request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
    ) -> io::Result<Reply> {
        let mut conn = HttpConn::connect(self.port)?;
        let mut all = headers.to_vec();
        all.push(("Connection", "close"));
        let response = conn.request(method, target, &all)?;
        let json = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        Ok(Reply { response, json })
    }

    /// `GET target`, which must answer 200 with JSON `code` 0; returns the JSON.
    pub fn get(&self, target: &str) -> Value {
        let reply = self
            .request("GET", target, &[])
            .unwrap_or_else(|e| panic!("GET {target}: {e}"));
        assert_eq!(
            (reply.status(), reply.code()),
            (200, 0),
            "GET {target}: {}\n{}",
            reply.response.head_text(),
            reply.response.body_text()
        );
        assert_eq!(
            reply.header("content-type"),
            Some("application/json"),
            "GET {target}: {}",
            reply.response.head_text()
        );
        reply.json
    }

    /// `GET target` as [`get`](Self::get), or `None` on a connection error or non-200 (for
    /// polling while the server starts).
    pub fn try_get(&self, target: &str) -> Option<Value> {
        let reply = self.request("GET", target, &[]).ok()?;
        (reply.status() == 200 && reply.code() == 0).then_some(reply.json)
    }

    /// The clients list (all pages).
    pub fn clients(&self) -> Vec<Value> {
        self.get("/api/v1/clients?count=1000")["clients"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn streams(&self) -> Vec<Value> {
        self.get("/api/v1/streams?count=1000")["streams"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The client with this id, from the list.
    pub fn client(&self, id: &str) -> Option<Value> {
        self.clients().into_iter().find(|c| c["id"] == id)
    }

    /// `DELETE /api/v1/clients/{id}`.
    pub fn kick(&self, id: &str) -> Reply {
        self.request("DELETE", &format!("/api/v1/clients/{id}"), &[])
            .unwrap_or_else(|e| panic!("DELETE client {id}: {e}"))
    }
}

// ---------------------------------------------------------------------------------------------
// SRS samples and shapes

/// An SRS reference reply by file name (`api-streams.json`, ...), from `tests/data/srs/`.
pub fn srs_sample(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/srs")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read SRS sample {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("SRS sample {name} is not JSON: {e}"))
}

/// A JSON value's type as the comparison sees it: integers and floats apart (SRS prints its
/// floats with a decimal point, its integers without, and clients parse them differently).
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Known, deliberate differences from a sample, by path (`streams[].publish.cid`, `total`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Allow<'a> {
    /// Keys of the sample that may be absent.
    pub missing: &'a [&'a str],
    /// Keys that may be present though the sample lacks them.
    pub extra: &'a [&'a str],
}

/// Every place `actual` differs in shape from `expected`: a key missing or extra, a value of
/// another type. Arrays: each element of `actual` against the first element of `expected`.
pub fn shape_diff(expected: &Value, actual: &Value, allow: Allow<'_>) -> Vec<String> {
    let mut out = Vec::new();
    diff_at("", expected, actual, allow, &mut out);
    out
}

fn diff_at(path: &str, expected: &Value, actual: &Value, allow: Allow<'_>, out: &mut Vec<String>) {
    let child = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, e_value) in e {
                let at = child(key);
                match a.get(key) {
                    Some(a_value) => diff_at(&at, e_value, a_value, allow, out),
                    None if allow.missing.contains(&at.as_str()) => {}
                    None => out.push(format!("{at}: missing (SRS has {})", kind(e_value))),
                }
            }
            for (key, a_value) in a {
                let at = child(key);
                if !e.contains_key(key) && !allow.extra.contains(&at.as_str()) {
                    out.push(format!(
                        "{at}: extra key ({}) that SRS does not have",
                        kind(a_value)
                    ));
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if let Some(first) = e.first() {
                for item in a {
                    diff_at(&format!("{path}[]"), first, item, allow, out);
                }
            }
        }
        (e, a) if kind(e) != kind(a) => out.push(format!(
            "{path}: {} {a} where SRS has {} {e}",
            kind(a),
            kind(e)
        )),
        _ => {}
    }
}

/// Panics listing every shape difference between `actual` and the SRS sample `sample`.
pub fn assert_srs_shape(what: &str, sample: &str, actual: &Value, allow: Allow<'_>) {
    let diffs = shape_diff(&srs_sample(sample), actual, allow);
    assert!(
        diffs.is_empty(),
        "{what}: JSON shape differs from SRS's {sample}:\n  {}\nreply: {actual:#}",
        diffs.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------------
// Basic auth

/// `Basic base64(user:password)`.
pub fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
