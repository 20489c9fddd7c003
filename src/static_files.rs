//! Static files under the HTTP server's root: resolving a request path to a file that is
//! really inside the root (no `..`, no symlink out), and the metadata a response needs —
//! Content-Type, Last-Modified, ETag.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StaticError {
    #[error("no such file")]
    NotFound,
    #[error("outside the document root")]
    Forbidden,
    /// A directory asked for without its trailing slash: redirect there.
    #[error("a directory")]
    Directory,
}

/// A file ready to send.
#[derive(Debug)]
pub struct StaticFile {
    pub file: File,
    pub len: u64,
    pub content_type: &'static str,
    pub last_modified: String,
    pub etag: String,
}

/// The canonical document root, or `None` if it does not exist (every request is then 404).
pub fn canonical_root(dir: &str) -> Option<PathBuf> {
    std::fs::canonicalize(dir).ok()
}

/// Opens the file a decoded request path names under `root` (canonical). `path` starts with
/// `/`; a path ending in `/` means its `index.html`.
pub fn open(root: &Path, path: &str) -> Result<StaticFile, StaticError> {
    let relative = path.trim_start_matches('/');
    if relative.split('/').any(|part| part == "..") || relative.contains('\0') {
        return Err(StaticError::Forbidden);
    }
    let mut candidate = root.join(relative);
    if path.ends_with('/') {
        candidate.push("index.html");
    }
    // Resolving symlinks, then checking the prefix, keeps links that point outside out.
    let resolved = std::fs::canonicalize(&candidate).map_err(|_| StaticError::NotFound)?;
    if !resolved.starts_with(root) {
        return Err(StaticError::Forbidden);
    }
    let metadata = std::fs::metadata(&resolved).map_err(|_| StaticError::NotFound)?;
    if metadata.is_dir() {
        return Err(StaticError::Directory);
    }
    if !metadata.is_file() {
        return Err(StaticError::NotFound);
    }
    let file = File::open(&resolved).map_err(|_| StaticError::NotFound)?;
    let modified = metadata.modified().unwrap_or(UNIX_EPOCH);
    let seconds = modified
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(StaticFile {
        file,
        len: metadata.len(),
        content_type: content_type(&resolved),
        last_modified: http_date(modified),
        etag: format!("\"{seconds:x}-{:x}\"", metadata.len()),
    })
}

/// Content-Type by extension, for what a media server's web root holds.
pub fn content_type(path: &Path) -> &'static str {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        Some("xml") => "application/xml",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("ico") => "image/x-icon",
        Some("webp") => "image/webp",
        Some("wasm") => "application/wasm",
        Some("m3u8") => "application/vnd.apple.mpegurl",
        Some("mpd") => "application/dash+xml",
        Some("ts") => "video/mp2t",
        Some("m4s") => "video/iso.segment",
        Some("mp4" | "m4v") => "video/mp4",
        Some("m4a") => "audio/mp4",
        Some("flv") => "video/x-flv",
        Some("aac") => "audio/aac",
        Some("mp3") => "audio/mpeg",
        Some("webm") => "video/webm",
        _ => "application/octet-stream",
    }
}

/// RFC 9110 IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(time: SystemTime) -> String {
    let seconds = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = seconds / 86_400;
    let (hour, minute, second) = (seconds % 86_400 / 3600, seconds % 3600 / 60, seconds % 60);
    let (year, month, day) = civil_from_days(days as i64);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {hour:02}:{minute:02}:{second:02} GMT",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize]
    )
}

/// `http_date` of now, formatted at most once a second per thread (every response's `Date`).
pub fn http_date_now() -> String {
    thread_local! {
        static CACHE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != second {
            *cache = (second, http_date(now));
        }
        cache.1.clone()
    })
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's `civil_from_days`.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn http_dates() {
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        let rfc_example = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(http_date(rfc_example), "Sun, 06 Nov 1994 08:49:37 GMT");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(http_date(leap), "Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn paths_stay_inside_the_root() {
        let base = std::env::temp_dir().join(format!("sluice-static-{}", std::process::id()));
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("index.html"), b"<html>").unwrap();
        std::fs::write(root.join("sub/a.js"), b"x").unwrap();
        std::fs::write(base.join("secret.txt"), b"secret").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(base.join("secret.txt"), root.join("link.txt")).unwrap();
        let root = canonical_root(root.to_str().unwrap()).unwrap();

        let index = open(&root, "/").unwrap();
        assert_eq!(
            (index.len, index.content_type),
            (6, "text/html; charset=utf-8")
        );
        assert!(index.etag.starts_with('"') && index.last_modified.ends_with("GMT"));
        assert_eq!(
            open(&root, "/sub/a.js").unwrap().content_type,
            "text/javascript; charset=utf-8"
        );
        assert_eq!(open(&root, "/sub").unwrap_err(), StaticError::Directory);
        assert_eq!(
            open(&root, "/../secret.txt").unwrap_err(),
            StaticError::Forbidden
        );
        assert_eq!(
            open(&root, "/sub/../../secret.txt").unwrap_err(),
            StaticError::Forbidden
        );
        assert_eq!(
            open(&root, "/nope.html").unwrap_err(),
            StaticError::NotFound
        );
        #[cfg(unix)]
        assert_eq!(
            open(&root, "/link.txt").unwrap_err(),
            StaticError::Forbidden
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}
