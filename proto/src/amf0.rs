//! AMF0 (Action Message Format 0): the value encoding of RTMP commands (`connect`, `publish`,
//! `_result`, ...) and of data messages such as `@setDataFrame`/`onMetaData`.
//!
//! This module owns the [`Amf0Value`] tree, its decoder ([`decode`], [`decode_all`]) and its
//! encoder ([`Amf0Value::encode`], [`encode_all`]). It knows nothing about RTMP messages: callers
//! hand it the message payload and get values back.
//!
//! The decoder is total. Malformed input is an [`Amf0Error`], never a panic; nesting is limited to
//! [`MAX_DEPTH`] containers, so recursion is bounded; no count read from the wire is trusted for
//! an allocation beyond what the remaining input could actually hold.
//!
//! It is deliberately as lenient as SRS and ffmpeg where real encoders are sloppy:
//! - strings are decoded lossily: invalid UTF-8 becomes U+FFFD instead of an error;
//! - an object, ECMA array or typed object that runs to the very end of the input without its
//!   `00 00 09` end marker is accepted (some encoders omit it);
//! - the ECMA array count is only a hint: it is ignored on decode (the end marker decides), and
//!   the real count is written on encode;
//! - any non-zero boolean byte is `true`.

use thiserror::Error;

/// How many containers (object, ECMA array, strict array, typed object) may nest inside each
/// other. Real RTMP traffic nests two or three deep; the limit exists so that hostile input
/// cannot drive the recursive decoder into a stack overflow.
pub const MAX_DEPTH: usize = 64;

/// One AMF0 value. Property lists keep wire order and duplicates, as SRS does.
#[derive(Debug, Clone, PartialEq)]
pub enum Amf0Value {
    /// 0x00: an IEEE-754 double.
    Number(f64),
    /// 0x01
    Boolean(bool),
    /// 0x02: a string of at most 65535 bytes. Longer strings are encoded as a long string
    /// (0x0c), so they decode back as [`Amf0Value::LongString`].
    String(String),
    /// 0x03: anonymous object, properties then `00 00 09`.
    Object(Vec<(String, Amf0Value)>),
    /// 0x05
    Null,
    /// 0x06
    Undefined,
    /// 0x07: index of an earlier complex value in the same message.
    Reference(u16),
    /// 0x08: associative array: u32 count hint, properties, `00 00 09`.
    EcmaArray(Vec<(String, Amf0Value)>),
    /// 0x0a: u32 count, then that many values.
    StrictArray(Vec<Amf0Value>),
    /// 0x0b: milliseconds since the Unix epoch (UTC) and a timezone field that the spec says
    /// must be sent as zero and ignored; kept only so that re-encoding is byte-exact.
    Date { millis: f64, timezone: i16 },
    /// 0x0c: a string with a u32 length.
    LongString(String),
    /// 0x0d
    Unsupported,
    /// 0x0f: XML text with a u32 length.
    XmlDocument(String),
    /// 0x10: a class name, then properties as in an object.
    TypedObject {
        class: String,
        properties: Vec<(String, Amf0Value)>,
    },
}

/// Why a buffer is not valid AMF0.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum Amf0Error {
    #[error("AMF0 input ends in the middle of a value")]
    Truncated,
    #[error("unknown AMF0 type marker {0:#04x}")]
    UnknownMarker(u8),
    #[error("AMF0 type marker {0:#04x} (MovieClip or RecordSet) is reserved and has no encoding")]
    ReservedMarker(u8),
    #[error("AMF0 AVM+ switch marker 0x11: the value is AMF3, which is not supported")]
    Amf3NotSupported,
    #[error("AMF0 object-end marker 0x09 where a value was expected")]
    UnexpectedObjectEnd,
    #[error("AMF0 values nested deeper than {MAX_DEPTH} containers")]
    TooDeep,
}

mod marker {
    pub const NUMBER: u8 = 0x00;
    pub const BOOLEAN: u8 = 0x01;
    pub const STRING: u8 = 0x02;
    pub const OBJECT: u8 = 0x03;
    pub const MOVIE_CLIP: u8 = 0x04;
    pub const NULL: u8 = 0x05;
    pub const UNDEFINED: u8 = 0x06;
    pub const REFERENCE: u8 = 0x07;
    pub const ECMA_ARRAY: u8 = 0x08;
    pub const OBJECT_END: u8 = 0x09;
    pub const STRICT_ARRAY: u8 = 0x0a;
    pub const DATE: u8 = 0x0b;
    pub const LONG_STRING: u8 = 0x0c;
    pub const UNSUPPORTED: u8 = 0x0d;
    pub const RECORD_SET: u8 = 0x0e;
    pub const XML_DOCUMENT: u8 = 0x0f;
    pub const TYPED_OBJECT: u8 = 0x10;
    pub const AVM_PLUS: u8 = 0x11;
}

/// The `00 00 09` that closes an object, ECMA array or typed object: an empty property name
/// followed by the object-end marker.
const OBJECT_END_SEQUENCE: [u8; 3] = [0x00, 0x00, marker::OBJECT_END];

/// Upper bound on the capacity reserved up front for a strict array. The count on the wire is
/// already checked against the remaining input, but one input byte per element would still let
/// a short message reserve ~50x its size in `Amf0Value`s before failing; past this the vector
/// grows as elements actually decode.
const STRICT_ARRAY_PREALLOCATION_LIMIT: usize = 1024;

/// Decodes one value from the start of `input` and returns it with the number of bytes it
/// occupied. Trailing bytes are left for the caller (RTMP commands are a sequence of values).
pub fn decode(input: &[u8]) -> Result<(Amf0Value, usize), Amf0Error> {
    let mut reader = Reader::new(input);
    let value = reader.read_value(0)?;
    Ok((value, reader.position))
}

/// Decodes values one after another until `input` is exhausted. Empty input yields no values.
pub fn decode_all(input: &[u8]) -> Result<Vec<Amf0Value>, Amf0Error> {
    let mut reader = Reader::new(input);
    let mut values = Vec::new();
    while !reader.is_at_end() {
        values.push(reader.read_value(0)?);
    }
    Ok(values)
}

/// Appends the encodings of `values`, one after another, to `out`.
pub fn encode_all(values: &[Amf0Value], out: &mut Vec<u8>) {
    for value in values {
        value.encode(out);
    }
}

impl Amf0Value {
    /// Appends the AMF0 encoding of this value to `out`.
    ///
    /// Encoding cannot fail, so the few things AMF0 cannot represent are clipped rather than
    /// rejected: a property name or class name longer than 65535 bytes is cut at the last UTF-8
    /// character boundary that fits, and likewise a long string or XML document past
    /// `u32::MAX` bytes, or a strict array past `u32::MAX` elements. No real peer sends these.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Amf0Value::Number(number) => {
                out.push(marker::NUMBER);
                out.extend_from_slice(&number.to_be_bytes());
            }
            Amf0Value::Boolean(flag) => {
                out.push(marker::BOOLEAN);
                out.push(u8::from(*flag));
            }
            Amf0Value::String(text) => {
                if text.len() <= usize::from(u16::MAX) {
                    out.push(marker::STRING);
                    write_short_string(text, out);
                } else {
                    out.push(marker::LONG_STRING);
                    write_long_string(text, out);
                }
            }
            Amf0Value::Object(properties) => {
                out.push(marker::OBJECT);
                write_properties(properties, out);
            }
            Amf0Value::Null => out.push(marker::NULL),
            Amf0Value::Undefined => out.push(marker::UNDEFINED),
            Amf0Value::Reference(index) => {
                out.push(marker::REFERENCE);
                out.extend_from_slice(&index.to_be_bytes());
            }
            Amf0Value::EcmaArray(properties) => {
                out.push(marker::ECMA_ARRAY);
                let count = u32::try_from(properties.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&count.to_be_bytes());
                write_properties(properties, out);
            }
            Amf0Value::StrictArray(elements) => {
                out.push(marker::STRICT_ARRAY);
                let count = u32::try_from(elements.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&count.to_be_bytes());
                // `count` and the elements written must agree, even in the clipped case.
                for element in elements.iter().take(count as usize) {
                    element.encode(out);
                }
            }
            Amf0Value::Date { millis, timezone } => {
                out.push(marker::DATE);
                out.extend_from_slice(&millis.to_be_bytes());
                out.extend_from_slice(&timezone.to_be_bytes());
            }
            Amf0Value::LongString(text) => {
                out.push(marker::LONG_STRING);
                write_long_string(text, out);
            }
            Amf0Value::Unsupported => out.push(marker::UNSUPPORTED),
            Amf0Value::XmlDocument(text) => {
                out.push(marker::XML_DOCUMENT);
                write_long_string(text, out);
            }
            Amf0Value::TypedObject { class, properties } => {
                out.push(marker::TYPED_OBJECT);
                write_short_string(class, out);
                write_properties(properties, out);
            }
        }
    }

    /// Looks up a property of an object, ECMA array or typed object; `None` for other values
    /// or a missing key. If a key occurs twice the last one wins, as in SRS (whose property
    /// table replaces on insert) and in ActionScript itself.
    pub fn get(&self, key: &str) -> Option<&Amf0Value> {
        let properties = match self {
            Amf0Value::Object(properties)
            | Amf0Value::EcmaArray(properties)
            | Amf0Value::TypedObject { properties, .. } => properties,
            _ => return None,
        };
        properties
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
    }

    /// The text of a `String` or `LongString`: peers pick either encoding for the same field.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0Value::String(text) | Amf0Value::LongString(text) => Some(text),
            _ => None,
        }
    }

    /// The value of a `Number`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Amf0Value::Number(number) => Some(*number),
            _ => None,
        }
    }

    /// The value of a `Boolean`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Amf0Value::Boolean(flag) => Some(*flag),
            _ => None,
        }
    }

    /// Builds an anonymous `Object` from `(name, value)` pairs, keeping their order:
    /// `Amf0Value::object([("code", "NetStream.Publish.Start".into()), ...])`.
    pub fn object<K: Into<String>>(props: impl IntoIterator<Item = (K, Amf0Value)>) -> Amf0Value {
        Amf0Value::Object(
            props
                .into_iter()
                .map(|(name, value)| (name.into(), value))
                .collect(),
        )
    }
}

impl From<&str> for Amf0Value {
    fn from(text: &str) -> Self {
        Amf0Value::String(text.to_owned())
    }
}

impl From<String> for Amf0Value {
    fn from(text: String) -> Self {
        Amf0Value::String(text)
    }
}

impl From<f64> for Amf0Value {
    fn from(number: f64) -> Self {
        Amf0Value::Number(number)
    }
}

impl From<bool> for Amf0Value {
    fn from(flag: bool) -> Self {
        Amf0Value::Boolean(flag)
    }
}

/// The longest prefix of `text` that is at most `max_len` bytes and ends on a char boundary.
fn clip_to_char_boundary(text: &str, max_len: usize) -> &str {
    if text.len() <= max_len {
        return text;
    }
    let mut end = max_len;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A u16 length then the bytes: property names, class names and short strings.
fn write_short_string(text: &str, out: &mut Vec<u8>) {
    let text = clip_to_char_boundary(text, usize::from(u16::MAX));
    // Cannot fail after the clip; the fallback only keeps this function panic-free.
    let len = u16::try_from(text.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// A u32 length then the bytes: long strings and XML documents.
fn write_long_string(text: &str, out: &mut Vec<u8>) {
    let text = clip_to_char_boundary(text, u32::MAX as usize);
    let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// Name/value pairs then the end sequence, shared by object, ECMA array and typed object.
fn write_properties(properties: &[(String, Amf0Value)], out: &mut Vec<u8>) {
    for (name, value) in properties {
        write_short_string(name, out);
        value.encode(out);
    }
    out.extend_from_slice(&OBJECT_END_SEQUENCE);
}

/// A cursor over the input. Every read checks the remaining length first, so a short buffer
/// surfaces as [`Amf0Error::Truncated`] and never as an out-of-bounds panic.
struct Reader<'a> {
    input: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn new(input: &'a [u8]) -> Self {
        Reader { input, position: 0 }
    }

    fn remaining(&self) -> &'a [u8] {
        // `position` never passes the end; `get` keeps that an invariant, not a panic site.
        self.input.get(self.position..).unwrap_or_default()
    }

    fn is_at_end(&self) -> bool {
        self.position >= self.input.len()
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], Amf0Error> {
        let bytes = self.remaining().get(..len).ok_or(Amf0Error::Truncated)?;
        self.position += len;
        Ok(bytes)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], Amf0Error> {
        let bytes = self.take(N)?;
        let mut array = [0; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    fn read_u8(&mut self) -> Result<u8, Amf0Error> {
        Ok(self.take_array::<1>()?[0])
    }

    fn read_u16(&mut self) -> Result<u16, Amf0Error> {
        Ok(u16::from_be_bytes(self.take_array()?))
    }

    fn read_u32(&mut self) -> Result<u32, Amf0Error> {
        Ok(u32::from_be_bytes(self.take_array()?))
    }

    fn read_f64(&mut self) -> Result<f64, Amf0Error> {
        Ok(f64::from_be_bytes(self.take_array()?))
    }

    fn read_short_string(&mut self) -> Result<String, Amf0Error> {
        let len = self.read_u16()?;
        let bytes = self.take(usize::from(len))?;
        Ok(lossy_string(bytes))
    }

    fn read_long_string(&mut self) -> Result<String, Amf0Error> {
        let len = self.read_u32()?;
        // A length past what the input holds fails in `take` before anything is allocated.
        let len = usize::try_from(len).map_err(|_| Amf0Error::Truncated)?;
        let bytes = self.take(len)?;
        Ok(lossy_string(bytes))
    }

    /// Reads one value whose marker is at the cursor. `depth` is the number of containers
    /// already open around it.
    fn read_value(&mut self, depth: usize) -> Result<Amf0Value, Amf0Error> {
        let type_marker = self.read_u8()?;
        let is_container = matches!(
            type_marker,
            marker::OBJECT | marker::ECMA_ARRAY | marker::STRICT_ARRAY | marker::TYPED_OBJECT
        );
        if is_container && depth >= MAX_DEPTH {
            return Err(Amf0Error::TooDeep);
        }
        let value = match type_marker {
            marker::NUMBER => Amf0Value::Number(self.read_f64()?),
            // Any non-zero byte is true, as SRS and ffmpeg read it.
            marker::BOOLEAN => Amf0Value::Boolean(self.read_u8()? != 0),
            marker::STRING => Amf0Value::String(self.read_short_string()?),
            marker::OBJECT => Amf0Value::Object(self.read_properties(depth + 1)?),
            marker::NULL => Amf0Value::Null,
            marker::UNDEFINED => Amf0Value::Undefined,
            marker::REFERENCE => Amf0Value::Reference(self.read_u16()?),
            marker::ECMA_ARRAY => {
                // Only a hint: encoders get it wrong (often 0), so the end marker decides.
                let _count_hint = self.read_u32()?;
                Amf0Value::EcmaArray(self.read_properties(depth + 1)?)
            }
            marker::STRICT_ARRAY => Amf0Value::StrictArray(self.read_strict_array(depth + 1)?),
            marker::DATE => {
                let millis = self.read_f64()?;
                let timezone = i16::from_be_bytes(self.take_array()?);
                Amf0Value::Date { millis, timezone }
            }
            marker::LONG_STRING => Amf0Value::LongString(self.read_long_string()?),
            marker::UNSUPPORTED => Amf0Value::Unsupported,
            marker::XML_DOCUMENT => Amf0Value::XmlDocument(self.read_long_string()?),
            marker::TYPED_OBJECT => {
                let class = self.read_short_string()?;
                let properties = self.read_properties(depth + 1)?;
                Amf0Value::TypedObject { class, properties }
            }
            marker::OBJECT_END => return Err(Amf0Error::UnexpectedObjectEnd),
            marker::MOVIE_CLIP | marker::RECORD_SET => {
                return Err(Amf0Error::ReservedMarker(type_marker));
            }
            marker::AVM_PLUS => return Err(Amf0Error::Amf3NotSupported),
            unknown => return Err(Amf0Error::UnknownMarker(unknown)),
        };
        Ok(value)
    }

    /// Name/value pairs up to `00 00 09`. `depth` counts the container being read.
    fn read_properties(&mut self, depth: usize) -> Result<Vec<(String, Amf0Value)>, Amf0Error> {
        let mut properties = Vec::new();
        loop {
            // Some encoders omit the end marker of the last object in a message; SRS accepts
            // that, so do we — but only at the very end of the input, where nothing else can
            // be meant.
            if self.is_at_end() {
                return Ok(properties);
            }
            // An empty name followed by anything other than 0x09 is a real property named ""
            // (SRS reads it that way too), so only the full sequence ends the object.
            if self.remaining().starts_with(&OBJECT_END_SEQUENCE) {
                self.position += OBJECT_END_SEQUENCE.len();
                return Ok(properties);
            }
            let name = self.read_short_string()?;
            let value = self.read_value(depth)?;
            properties.push((name, value));
        }
    }

    /// A u32 count then that many values. `depth` counts the array being read.
    fn read_strict_array(&mut self, depth: usize) -> Result<Vec<Amf0Value>, Amf0Error> {
        let count = self.read_u32()?;
        // Every element takes at least its one marker byte, so a count beyond the remaining
        // input can never be satisfied: fail now, before looping or allocating.
        let count = usize::try_from(count).map_err(|_| Amf0Error::Truncated)?;
        if count > self.remaining().len() {
            return Err(Amf0Error::Truncated);
        }
        let mut elements = Vec::with_capacity(count.min(STRICT_ARRAY_PREALLOCATION_LIMIT));
        for _ in 0..count {
            elements.push(self.read_value(depth)?);
        }
        Ok(elements)
    }
}

/// Real encoders send Latin-1 and other non-UTF-8 bytes in names and strings; SRS and ffmpeg
/// pass them through, so we substitute U+FFFD rather than reject the whole message.
fn lossy_string(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_has_marker_and_big_endian_double() {
        let mut out = Vec::new();
        Amf0Value::Number(1.0).encode(&mut out);
        assert_eq!(out, [0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(decode(&out), Ok((Amf0Value::Number(1.0), 9)));
    }

    #[test]
    fn decode_leaves_trailing_bytes() {
        let input = [0x05, 0x06, 0x01];
        assert_eq!(decode(&input), Ok((Amf0Value::Null, 1)));
    }

    #[test]
    fn empty_input_is_truncated_for_decode_and_empty_for_decode_all() {
        assert_eq!(decode(&[]), Err(Amf0Error::Truncated));
        assert_eq!(decode_all(&[]), Ok(vec![]));
    }

    #[test]
    fn clip_never_splits_a_character() {
        let text = "aé"; // 'é' is two bytes: 1..3
        assert_eq!(clip_to_char_boundary(text, 2), "a");
        assert_eq!(clip_to_char_boundary(text, 3), "aé");
        assert_eq!(clip_to_char_boundary(text, 0), "");
    }

    #[test]
    fn overlong_property_name_is_clipped_not_corrupted() {
        let name = "é".repeat(40_000); // 80000 bytes
        let value = Amf0Value::object([(name.clone(), Amf0Value::Null)]);
        let mut out = Vec::new();
        value.encode(&mut out);
        let (decoded, used) = decode(&out).unwrap();
        assert_eq!(used, out.len());
        let expected_name = clip_to_char_boundary(&name, 65535);
        assert_eq!(expected_name.len(), 65534);
        assert_eq!(
            decoded,
            Amf0Value::object([(expected_name, Amf0Value::Null)])
        );
    }
}
