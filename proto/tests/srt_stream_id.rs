//! SRT stream ids in every form SRS accepts, every rejection, and a property test that parsing
//! never panics and what parses is well-formed.

use proptest::prelude::*;
use sluice_proto::srt::{MAX_STREAM_ID_LEN, SrtMode, SrtStreamId, StreamIdError};

fn parse(s: &str) -> Result<SrtStreamId, StreamIdError> {
    SrtStreamId::parse(s, "live")
}

fn params(id: &SrtStreamId) -> Vec<(&str, &str)> {
    id.params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[test]
fn resource_and_mode() {
    let id = parse("#!::r=live/livestream,m=publish").unwrap();
    assert_eq!(id.vhost, None);
    assert_eq!(
        (id.app.as_str(), id.stream.as_str()),
        ("live", "livestream")
    );
    assert_eq!(id.mode, SrtMode::Publish);
    assert!(id.params.is_empty());
    assert_eq!(id.param(), "");
    assert_eq!(id.path(), "live/livestream");

    // m=request is play, and play is the default; the mode is case-insensitive.
    assert_eq!(parse("#!::r=live/s,m=request").unwrap().mode, SrtMode::Play);
    assert_eq!(parse("#!::r=live/s").unwrap().mode, SrtMode::Play);
    assert_eq!(
        parse("#!::m=PUBLISH,r=live/s").unwrap().mode,
        SrtMode::Publish
    );
    assert_eq!(parse("#!::r=live/s,m=Request").unwrap().mode, SrtMode::Play);
}

#[test]
fn vhost_and_extra_keys_in_order() {
    let id = parse("#!::h=srs.example.com,r=app/stream,m=publish,u=alice,s=abc,t=stream,key=value")
        .unwrap();
    assert_eq!(id.vhost.as_deref(), Some("srs.example.com"));
    assert_eq!((id.app.as_str(), id.stream.as_str()), ("app", "stream"));
    assert_eq!(
        params(&id),
        [
            ("u", "alice"),
            ("s", "abc"),
            ("t", "stream"),
            ("key", "value")
        ]
    );
    // SRS puts the vhost first in the param it passes to callbacks.
    assert_eq!(
        id.param(),
        "vhost=srs.example.com&u=alice&s=abc&t=stream&key=value"
    );
    let id = parse("#!::r=live/s,secret=x,token=y").unwrap();
    assert_eq!(id.param(), "secret=x&token=y");
}

#[test]
fn other_separators_empty_items_and_repeats() {
    let id = parse("#!::r=live/s&m=publish;k=v,").unwrap();
    assert_eq!(id.mode, SrtMode::Publish);
    assert_eq!(params(&id), [("k", "v")]);
    // A repeated key keeps its place and takes the last value; the last r and m win.
    let id = parse("#!::a=1,b=2,a=3,r=x/y,r=live/s,m=publish,m=request").unwrap();
    assert_eq!(params(&id), [("a", "3"), ("b", "2")]);
    assert_eq!(id.path(), "live/s");
    assert_eq!(id.mode, SrtMode::Play);
    // Values keep everything after the first '=' (base64 padding), and may be empty.
    let id = parse("#!::r=live/s,secret=YWJj==,empty=").unwrap();
    assert_eq!(params(&id), [("secret", "YWJj=="), ("empty", "")]);
}

#[test]
fn multi_level_app_keeps_the_last_segment_as_stream() {
    let id = parse("#!::r=live/sub/stream,m=publish").unwrap();
    assert_eq!(
        (id.app.as_str(), id.stream.as_str()),
        ("live/sub", "stream")
    );
    let id = parse("a/b/c/d").unwrap();
    assert_eq!((id.app.as_str(), id.stream.as_str()), ("a/b/c", "d"));
}

#[test]
fn legacy_h_resource() {
    // h with one slash is the resource.
    let id = parse("#!::h=live/livestream,m=publish").unwrap();
    assert_eq!(id.vhost, None);
    assert_eq!(id.path(), "live/livestream");
    assert_eq!(id.mode, SrtMode::Publish);
    // h with two or more slashes: vhost first.
    let id = parse("#!::h=srs.srt.com.cn/live/livestream,m=request").unwrap();
    assert_eq!(id.vhost.as_deref(), Some("srs.srt.com.cn"));
    assert_eq!(id.path(), "live/livestream");
    assert_eq!(id.param(), "vhost=srs.srt.com.cn");
    // The older query style: '?' separates too.
    let id = parse("#!::h=live/livestream?secret=xxx,m=publish").unwrap();
    assert_eq!(id.path(), "live/livestream");
    assert_eq!(id.mode, SrtMode::Publish);
    assert_eq!(params(&id), [("secret", "xxx")]);
    // An r wins over a legacy resource in h.
    let id = parse("#!::h=old/one,r=new/two").unwrap();
    assert_eq!(id.path(), "new/two");
}

#[test]
fn bare_resource_uses_default_app() {
    let id = parse("#!::r=livestream,m=publish").unwrap();
    assert_eq!(id.path(), "live/livestream");
    let id = SrtStreamId::parse("cam1", "ingest").unwrap();
    assert_eq!(id.path(), "ingest/cam1");
    assert_eq!(id.mode, SrtMode::Play);
}

#[test]
fn plain_path_and_query() {
    let id = parse("live/livestream").unwrap();
    assert_eq!(id.path(), "live/livestream");
    assert_eq!((id.mode, id.vhost.clone()), (SrtMode::Play, None));
    let id = parse("live/livestream?m=publish&secret=abc&u=bob").unwrap();
    assert_eq!(id.mode, SrtMode::Publish);
    assert_eq!(params(&id), [("secret", "abc"), ("u", "bob")]);
    assert_eq!(id.param(), "secret=abc&u=bob");
    let id = parse("livestream?k=v").unwrap();
    assert_eq!(id.path(), "live/livestream");
    assert_eq!(id.param(), "k=v");
}

#[test]
fn rejections() {
    use StreamIdError::*;
    assert_eq!(parse(""), Err(Empty));
    let long = format!("#!::r=live/{}", "s".repeat(MAX_STREAM_ID_LEN));
    assert_eq!(parse(&long), Err(TooLong(long.len())));
    let exactly = format!("live/{}", "s".repeat(MAX_STREAM_ID_LEN - 5));
    assert!(parse(&exactly).is_ok());
    assert_eq!(parse("#!::r=live/s\n"), Err(ControlCharacter));
    assert_eq!(parse("live/\u{0}s"), Err(ControlCharacter));
    assert_eq!(parse("#!::m=publish"), Err(MissingResource));
    assert_eq!(parse("#!::r=,m=publish"), Err(MissingResource));
    assert_eq!(parse("#!::"), Err(MissingResource));
    assert_eq!(parse("#!::h=vhost.only,m=publish"), Err(MissingResource));
    assert_eq!(parse("?m=publish"), Err(MissingResource));
    assert_eq!(parse("#!::r=/stream"), Err(EmptyApp("/stream".into())));
    assert_eq!(parse("#!::r=a//stream"), Err(EmptyApp("a//stream".into())));
    assert_eq!(parse("#!::r=live/"), Err(EmptyStream("live/".into())));
    assert_eq!(parse("#!::h=live/"), Err(EmptyStream("live/".into())));
    assert_eq!(parse("live/"), Err(EmptyStream("live/".into())));
    assert_eq!(
        SrtStreamId::parse("stream", ""),
        Err(EmptyApp("stream".into()))
    );
    assert_eq!(parse("#!::r=../etc/s"), Err(DotDot("../etc/s".into())));
    assert_eq!(parse("live/.."), Err(DotDot("live/..".into())));
    assert_eq!(
        parse("#!::r=live/s,m=play"),
        Err(UnknownMode("play".into()))
    );
    assert_eq!(parse("#!::r=live/s,m="), Err(UnknownMode(String::new())));
    assert_eq!(parse("live/s?m=push"), Err(UnknownMode("push".into())));
    assert_eq!(
        parse("#!::r=live/s,publish"),
        Err(MalformedItem("publish".into()))
    );
    assert_eq!(parse("#!::=v,r=live/s"), Err(MalformedItem("=v".into())));
    assert_eq!(parse("live/s?flag"), Err(MalformedItem("flag".into())));
}

#[test]
fn errors_read_as_log_lines() {
    let error = parse("#!::r=live/s,m=play").unwrap_err();
    assert_eq!(
        error.to_string(),
        "SRT stream id mode m=\"play\" is neither publish nor request"
    );
    assert_eq!(
        parse("#!::m=publish").unwrap_err().to_string(),
        "SRT stream id names no stream: expected r=app/stream"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn never_panics_on_any_text(s in ".{0,600}") {
        check(&s);
    }

    #[test]
    fn never_panics_on_plausible_ids(
        prefix in prop_oneof![Just("#!::"), Just(""), Just("#!:")],
        items in prop::collection::vec((arb_key(), "[a-z/.?=&,;]{0,12}"), 0..6),
        separator in prop_oneof![Just(","), Just("&"), Just(";"), Just("?")],
    ) {
        let body: Vec<String> = items.iter().map(|(k, v)| format!("{k}={v}")).collect();
        check(&format!("{prefix}{}", body.join(separator)));
    }
}

fn arb_key() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["r", "h", "m", "u", "s", "k", ""])
}

/// Whatever parses names a sane stream and round-trips its params.
fn check(s: &str) {
    let Ok(id) = SrtStreamId::parse(s, "live") else {
        return;
    };
    assert!(s.len() <= MAX_STREAM_ID_LEN);
    assert!(!id.app.is_empty() && !id.stream.is_empty());
    assert!(!id.stream.contains('/'));
    assert!(!id.app.split('/').any(|seg| seg.is_empty() || seg == ".."));
    assert!(id.vhost.as_deref() != Some(""));
    assert!(id.params.iter().all(|(k, _)| !k.is_empty()));
    // param() lists each parameter once: no key or value can hold the '&' that joins them.
    let param = id.param();
    let expected = id.params.len() + usize::from(id.vhost.is_some());
    if expected == 0 {
        assert!(param.is_empty());
    } else {
        assert_eq!(param.split('&').count(), expected, "{param}");
    }
}
