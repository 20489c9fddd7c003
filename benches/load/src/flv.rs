//! An HTTP-FLV player's receive path, as cheap as the load tool needs: the response head is
//! checked, the body is followed through HTTP chunked coding and FLV tags without copying it —
//! only each tag's type and the first bytes of its body (keyframe flag, synthetic frame
//! number) are kept.

/// What the stream delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlvEvent {
    /// A whole tag: 8 audio, 9 video, 18 script, with up to [`PREFIX`] bytes of its body.
    Tag {
        tag_type: u8,
        size: u32,
        prefix: [u8; PREFIX],
        prefix_len: u8,
    },
}

/// Body bytes kept per tag.
pub const PREFIX: usize = 32;
/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlvError {
    #[error("HTTP response: {0}")]
    Status(String),
    #[error("response head too large")]
    HeadTooLarge,
    #[error("bad chunk size line")]
    BadChunk,
    #[error("not an FLV stream")]
    NotFlv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// `Transfer-Encoding: chunked`: reading a chunk-size line.
    ChunkSize,
    /// Inside a chunk, this many bytes left.
    ChunkData(usize),
    /// The CRLF after a chunk's data, this many bytes left.
    ChunkEnd(usize),
    /// Not chunked: everything is FLV.
    Plain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flv {
    /// FLV header (9) + PreviousTagSize0 (4): this many bytes left.
    FileHeader(usize),
    /// Collecting an 11-byte tag header.
    TagHeader,
    /// In a tag body, this many bytes left.
    TagBody(usize),
    /// The 4-byte PreviousTagSize, this many bytes left.
    TagSize(usize),
}

pub struct FlvReader {
    head: Option<Vec<u8>>,
    body: Body,
    flv: Flv,
    /// A partial chunk-size line.
    line: Vec<u8>,
    /// A partial tag header.
    scratch: Vec<u8>,
    tag_type: u8,
    tag_size: u32,
    prefix: [u8; PREFIX],
    prefix_len: usize,
}

impl Default for FlvReader {
    fn default() -> Self {
        FlvReader {
            head: Some(Vec::new()),
            body: Body::Plain,
            flv: Flv::FileHeader(13),
            line: Vec::new(),
            scratch: Vec::new(),
            tag_type: 0,
            tag_size: 0,
            prefix: [0; PREFIX],
            prefix_len: 0,
        }
    }
}

impl FlvReader {
    /// The request that starts an HTTP-FLV play.
    pub fn request(host: &str, path: &str) -> Vec<u8> {
        format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: sluice-load\r\nAccept: */*\r\n\r\n"
        )
        .into_bytes()
    }

    /// Feeds received bytes; complete tags are appended to `events`.
    pub fn feed(&mut self, mut data: &[u8], events: &mut Vec<FlvEvent>) -> Result<(), FlvError> {
        if let Some(head) = &mut self.head {
            let before = head.len();
            head.extend_from_slice(data);
            let Some(end) = find(head, b"\r\n\r\n") else {
                if head.len() > MAX_HEAD {
                    return Err(FlvError::HeadTooLarge);
                }
                return Ok(());
            };
            let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
            let status = text.lines().next().unwrap_or("").to_string();
            if !status.starts_with("http/1.1 200") && !status.starts_with("http/1.0 200") {
                return Err(FlvError::Status(status));
            }
            self.body = if text.contains("transfer-encoding: chunked") {
                Body::ChunkSize
            } else {
                Body::Plain
            };
            data = &data[end + 4 - before..];
            self.head = None;
        }
        while !data.is_empty() {
            match self.body {
                Body::Plain => {
                    self.flv_bytes(data, events)?;
                    data = &[];
                }
                Body::ChunkSize => match data.iter().position(|&b| b == b'\n') {
                    Some(newline) => {
                        self.line.extend_from_slice(&data[..newline]);
                        data = &data[newline + 1..];
                        let size = std::str::from_utf8(&self.line)
                            .ok()
                            .and_then(|l| l.trim().split(';').next())
                            .and_then(|hex| usize::from_str_radix(hex, 16).ok());
                        self.line.clear();
                        let size = size.ok_or(FlvError::BadChunk)?;
                        self.body = if size == 0 {
                            Body::Plain
                        } else {
                            Body::ChunkData(size)
                        };
                    }
                    None => {
                        if self.line.len() + data.len() > 64 {
                            return Err(FlvError::BadChunk);
                        }
                        self.line.extend_from_slice(data);
                        data = &[];
                    }
                },
                Body::ChunkData(left) => {
                    let take = left.min(data.len());
                    self.flv_bytes(&data[..take], events)?;
                    data = &data[take..];
                    self.body = if take == left {
                        Body::ChunkEnd(2)
                    } else {
                        Body::ChunkData(left - take)
                    };
                }
                Body::ChunkEnd(left) => {
                    let take = left.min(data.len());
                    data = &data[take..];
                    self.body = if take == left {
                        Body::ChunkSize
                    } else {
                        Body::ChunkEnd(left - take)
                    };
                }
            }
        }
        Ok(())
    }

    fn flv_bytes(&mut self, mut data: &[u8], events: &mut Vec<FlvEvent>) -> Result<(), FlvError> {
        while !data.is_empty() {
            match self.flv {
                Flv::FileHeader(left) => {
                    let take = left.min(data.len());
                    if left == 13 && !data.starts_with(&b"FLV"[..take.min(3)]) {
                        return Err(FlvError::NotFlv);
                    }
                    data = &data[take..];
                    self.flv = if take == left {
                        Flv::TagHeader
                    } else {
                        Flv::FileHeader(left - take)
                    };
                }
                Flv::TagHeader => {
                    let take = (11 - self.scratch.len()).min(data.len());
                    self.scratch.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.scratch.len() == 11 {
                        let h = &self.scratch;
                        self.tag_type = h[0] & 0x1f;
                        self.tag_size = u32::from_be_bytes([0, h[1], h[2], h[3]]);
                        self.scratch.clear();
                        self.prefix_len = 0;
                        self.flv = Flv::TagBody(self.tag_size as usize);
                        if self.tag_size == 0 {
                            self.flv = Flv::TagSize(4);
                        }
                    }
                }
                Flv::TagBody(left) => {
                    let take = left.min(data.len());
                    let room = (PREFIX - self.prefix_len).min(take);
                    self.prefix[self.prefix_len..self.prefix_len + room]
                        .copy_from_slice(&data[..room]);
                    self.prefix_len += room;
                    data = &data[take..];
                    if take == left {
                        events.push(FlvEvent::Tag {
                            tag_type: self.tag_type,
                            size: self.tag_size,
                            prefix: self.prefix,
                            prefix_len: self.prefix_len as u8,
                        });
                        self.flv = Flv::TagSize(4);
                    } else {
                        self.flv = Flv::TagBody(left - take);
                    }
                }
                Flv::TagSize(left) => {
                    let take = left.min(data.len());
                    data = &data[take..];
                    self.flv = if take == left {
                        Flv::TagHeader
                    } else {
                        Flv::TagSize(left - take)
                    };
                }
            }
        }
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use sluice_proto::flv::{TagType, write_file_header, write_tag};

    use super::*;

    fn flv_body() -> Vec<u8> {
        let mut body = Vec::new();
        write_file_header(&mut body, true, true);
        write_tag(&mut body, TagType::Video, 0, &[0x17, 0, 0, 0, 0, 1]).unwrap();
        write_tag(&mut body, TagType::Video, 33, &[0x17; 100]).unwrap();
        write_tag(&mut body, TagType::Audio, 40, &[0xaf, 1, 2]).unwrap();
        body
    }

    fn check(wire: &[u8]) {
        for piece in [1, 3, 7, 1000] {
            let mut reader = FlvReader::default();
            let mut events = Vec::new();
            for part in wire.chunks(piece) {
                reader.feed(part, &mut events).unwrap();
            }
            let types: Vec<(u8, u32)> = events
                .iter()
                .map(|FlvEvent::Tag { tag_type, size, .. }| (*tag_type, *size))
                .collect();
            assert_eq!(types, vec![(9, 6), (9, 100), (8, 3)], "piece {piece}");
            let FlvEvent::Tag { prefix_len, .. } = &events[1];
            assert_eq!(*prefix_len as usize, PREFIX);
        }
    }

    #[test]
    fn plain_and_chunked_bodies() {
        let body = flv_body();
        let mut plain = b"HTTP/1.0 200 OK\r\nContent-Type: video/x-flv\r\n\r\n".to_vec();
        plain.extend_from_slice(&body);
        check(&plain);
        let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for piece in body.chunks(17) {
            chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            chunked.extend_from_slice(piece);
            chunked.extend_from_slice(b"\r\n");
        }
        check(&chunked);
    }

    #[test]
    fn errors_are_reported() {
        let mut reader = FlvReader::default();
        let err = reader.feed(b"HTTP/1.1 404 Not Found\r\n\r\n", &mut Vec::new());
        assert!(matches!(err, Err(FlvError::Status(_))));
        let mut reader = FlvReader::default();
        let err = reader.feed(b"HTTP/1.1 200 OK\r\n\r\nNOPE", &mut Vec::new());
        assert_eq!(err, Err(FlvError::NotFlv));
    }
}
