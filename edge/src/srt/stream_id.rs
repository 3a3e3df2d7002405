//! The SRT stream ID a caller sends in its handshake, read as what it asks for: publish with a
//! key, or play a name. Forms accepted (docs/edge.md, "SRT"):
//!
//! - the SRT Access Control form `#!::r=<key or name>,m=publish|request` (other keys such as
//!   `u`, `s`, `t` are ignored; `m` defaults to `request`, as the guideline says);
//! - the short forms `publish:<key>` and `read:<name>` (MediaMTX's);
//! - a bare ID, which publishes with that key (what encoders with a single "stream ID" box send).
//!
//! A leading `live/` on the resource (SRS's `r=live/<name>`) is dropped, so URLs written for
//! the RTMP application path keep working.

/// What a caller asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    Publish { key: String },
    Play { name: String },
}

/// Why a stream ID was refused (the listener answers with SRT's "bad request" or "bad mode").
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StreamIdError {
    Empty,
    /// `m=` names a mode the edge does not serve (`bidirectional`, anything unknown).
    BadMode,
    /// The Access Control form without an `r=`, or a key/value without `=`.
    Malformed,
}

/// Longest stream ID SRT carries (512 bytes in libsrt); anything longer is malformed.
pub(crate) const MAX_STREAM_ID: usize = 512;

pub(crate) fn parse(id: &str) -> Result<Request, StreamIdError> {
    if id.len() > MAX_STREAM_ID {
        return Err(StreamIdError::Malformed);
    }
    if let Some(rest) = id.strip_prefix("#!::") {
        return parse_access_control(rest);
    }
    if let Some(key) = id.strip_prefix("publish:") {
        return publish(key);
    }
    if let Some(name) = id.strip_prefix("read:") {
        return play(name);
    }
    publish(id)
}

fn parse_access_control(rest: &str) -> Result<Request, StreamIdError> {
    let (mut resource, mut mode) = (None, None);
    for pair in rest.split(',') {
        let (k, v) = pair.split_once('=').ok_or(StreamIdError::Malformed)?;
        match k {
            "r" => resource = Some(v),
            "m" => mode = Some(v),
            _ => {}
        }
    }
    let resource = resource.ok_or(StreamIdError::Malformed)?;
    match mode.unwrap_or("request") {
        "publish" => publish(resource),
        "request" => play(resource),
        _ => Err(StreamIdError::BadMode),
    }
}

fn strip_app(s: &str) -> &str {
    s.strip_prefix("live/").unwrap_or(s)
}

fn publish(key: &str) -> Result<Request, StreamIdError> {
    let key = strip_app(key);
    if key.is_empty() { Err(StreamIdError::Empty) } else { Ok(Request::Publish { key: key.to_string() }) }
}

fn play(name: &str) -> Result<Request, StreamIdError> {
    let name = strip_app(name);
    if name.is_empty() { Err(StreamIdError::Empty) } else { Ok(Request::Play { name: name.to_string() }) }
}

/// For the fuzz tests: parses any bytes as a stream ID would arrive (lossy UTF-8), checking
/// that what comes out was in the input.
pub fn fuzz_parse(input: &[u8]) -> bool {
    let id = String::from_utf8_lossy(input);
    match parse(&id) {
        Ok(Request::Publish { key }) => !key.is_empty() && id.contains(key.as_str()),
        Ok(Request::Play { name }) => !name.is_empty() && id.contains(name.as_str()),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(k: &str) -> Result<Request, StreamIdError> {
        Ok(Request::Publish { key: k.into() })
    }
    fn play(n: &str) -> Result<Request, StreamIdError> {
        Ok(Request::Play { name: n.into() })
    }

    #[test]
    fn every_documented_form_is_read() {
        assert_eq!(parse("#!::r=demo-publish-key,m=publish"), publish("demo-publish-key"));
        assert_eq!(parse("#!::m=publish,r=k,u=alice,s=x"), publish("k"));
        assert_eq!(parse("#!::r=demo,m=request"), play("demo"));
        assert_eq!(parse("#!::r=demo"), play("demo"), "the guideline's default mode is request");
        assert_eq!(parse("#!::r=live/demo,m=request"), play("demo"), "SRS's app prefix");
        assert_eq!(parse("publish:k"), publish("k"));
        assert_eq!(parse("read:demo"), play("demo"));
        assert_eq!(parse("bare-key"), publish("bare-key"));
        // A key may itself contain ':' or '=' in the short and bare forms.
        assert_eq!(parse("publish:a:b=c"), publish("a:b=c"));
    }

    #[test]
    fn malformed_ids_are_refused() {
        assert_eq!(parse(""), Err(StreamIdError::Empty));
        assert_eq!(parse("publish:"), Err(StreamIdError::Empty));
        assert_eq!(parse("read:live/"), Err(StreamIdError::Empty));
        assert_eq!(parse("#!::m=publish"), Err(StreamIdError::Malformed));
        assert_eq!(parse("#!::r=k,m=bidirectional"), Err(StreamIdError::BadMode));
        assert_eq!(parse("#!::r=k,garbage"), Err(StreamIdError::Malformed));
        assert_eq!(parse("#!::"), Err(StreamIdError::Malformed));
        assert_eq!(parse(&"k".repeat(MAX_STREAM_ID + 1)), Err(StreamIdError::Malformed));
    }
}
