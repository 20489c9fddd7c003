//! Percent-decoding (RFC 3986 §2.1) of request paths and query components.
//!
//! A decoded path is what the server maps onto streams and files, so decoding is strict: a
//! malformed escape or an encoded NUL is an error (NUL truncates paths in C APIs and logs), the
//! result must be UTF-8, and whether a `..` segment appears *after* decoding (`%2e%2e`, or a
//! `..` made by an encoded slash) is reported so file serving can refuse to leave its root.

use std::borrow::Cow;

use thiserror::Error;

/// Why a path cannot be decoded. Each is answered 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PathError {
    #[error("`%` not followed by two hex digits")]
    BadEscape,
    #[error("encoded NUL (%00) in path")]
    EncodedNul,
    #[error("decoded path is not UTF-8")]
    InvalidUtf8,
}

/// A decoded path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedPath<'a> {
    /// Borrowed when the path had no escapes.
    pub path: Cow<'a, str>,
    /// Some segment is `..` after decoding (segments split at `/` and, conservatively, `\`).
    pub has_dot_dot: bool,
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes; `plus_is_space` for the form encoding of query components.
fn percent_decode(raw: &str, plus_is_space: bool) -> Result<Cow<'_, str>, PathError> {
    if !raw
        .bytes()
        .any(|b| b == b'%' || (plus_is_space && b == b'+'))
    {
        return Ok(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let high = bytes.get(index + 1).copied().and_then(hex_value);
                let low = bytes.get(index + 2).copied().and_then(hex_value);
                let (Some(high), Some(low)) = (high, low) else {
                    return Err(PathError::BadEscape);
                };
                let byte = (high << 4) | low;
                if byte == 0 {
                    return Err(PathError::EncodedNul);
                }
                decoded.push(byte);
                index += 3;
            }
            b'+' if plus_is_space => {
                decoded.push(b' ');
                index += 1;
            }
            byte => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(decoded)
        .map(Cow::Owned)
        .map_err(|_| PathError::InvalidUtf8)
}

/// Decodes a request path (`+` stays `+` in paths).
pub fn decode_path(raw: &str) -> Result<DecodedPath<'_>, PathError> {
    let path = percent_decode(raw, false)?;
    let has_dot_dot = path.split(['/', '\\']).any(|segment| segment == "..");
    Ok(DecodedPath { path, has_dot_dot })
}

/// Decodes one query key or value (`+` is a space, as in HTML forms).
pub fn decode_query_component(raw: &str) -> Result<Cow<'_, str>, PathError> {
    percent_decode(raw, true)
}

/// The raw `key=value` pairs of a query string, split at `&` (a pair without `=` has an empty
/// value; empty pairs are skipped).
pub fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// The decoded value of the first query parameter named `name` (`vhost`, `token`, ...).
/// Pairs whose key or value does not decode are skipped.
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<Cow<'a, str>> {
    query_pairs(query).find_map(|(key, value)| {
        let key = decode_query_component(key).ok()?;
        if key == name {
            decode_query_component(value).ok()
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_borrows() {
        let decoded = decode_path("/live/stream.flv").unwrap();
        assert!(matches!(decoded.path, Cow::Borrowed("/live/stream.flv")));
        assert!(!decoded.has_dot_dot);
        let decoded = decode_path("/live/my%20stream+1.flv").unwrap();
        assert_eq!(decoded.path, "/live/my stream+1.flv");
        assert_eq!(decode_path("/%E4%B8%AD").unwrap().path, "/中");
    }

    #[test]
    fn rejects_bad_escapes_and_nul() {
        assert_eq!(decode_path("/a%2"), Err(PathError::BadEscape));
        assert_eq!(decode_path("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(decode_path("/a%00b"), Err(PathError::EncodedNul));
        assert_eq!(decode_path("/%ff"), Err(PathError::InvalidUtf8));
    }

    #[test]
    fn reports_dot_dot_after_decoding() {
        assert!(decode_path("/a/../b").unwrap().has_dot_dot);
        assert!(decode_path("/a/%2e%2E/b").unwrap().has_dot_dot);
        assert!(decode_path("/a%2f..%2fb").unwrap().has_dot_dot);
        assert!(decode_path("/..").unwrap().has_dot_dot);
        assert!(decode_path("/a\\..\\b").unwrap().has_dot_dot);
        assert!(!decode_path("/a/..b/c.").unwrap().has_dot_dot);
        assert!(!decode_path("/a/.../b").unwrap().has_dot_dot);
    }

    #[test]
    fn query_parameters() {
        let query = "vhost=a.com&token=x%2By+z&flag&&token=second";
        assert_eq!(query_param(query, "vhost").as_deref(), Some("a.com"));
        assert_eq!(query_param(query, "token").as_deref(), Some("x+y z"));
        assert_eq!(query_param(query, "flag").as_deref(), Some(""));
        assert_eq!(query_param(query, "missing"), None);
        assert_eq!(query_pairs(query).count(), 4);
    }
}
