//! sluice-proto: wire formats and protocol state machines, sans-IO.
//!
//! Nothing in this crate touches a socket, a clock, a thread or `unsafe`: time comes in as an
//! argument, bytes come in and go out as buffers. Every parser is total — malformed input is an
//! error value, never a panic, and every allocation is bounded by a limit or by the input length.

#![forbid(unsafe_code)]

pub mod amf0;
pub mod codec;
pub mod flv;
pub mod fmp4;
pub mod http;
pub mod rtmp;
pub mod srt;
pub mod ts;
