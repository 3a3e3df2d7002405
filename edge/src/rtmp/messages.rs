//! Messages the edge writes itself, outside `rml_rtmp`'s session serializer: status
//! notifications (rejections, drops, publisher changes), acknowledgements and ping responses.
//! All go out on the edge's own chunk streams with full headers (see [`super::chunk_writer`]).

use std::collections::HashMap;

use bytes::Bytes;
use rml_amf0::Amf0Value;

use super::{OUT_CHUNK_SIZE, chunk_writer::serialize_message, csid, msg_type};

/// Severity of an `onStatus` notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Status,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Status => "status",
            Level::Error => "error",
        }
    }
}

fn status_object(level: Level, code: &str, description: &str) -> Amf0Value {
    let mut info = HashMap::new();
    info.insert("level".to_string(), Amf0Value::Utf8String(level.as_str().to_string()));
    info.insert("code".to_string(), Amf0Value::Utf8String(code.to_string()));
    info.insert("description".to_string(), Amf0Value::Utf8String(description.to_string()));
    Amf0Value::Object(info)
}

/// The AMF0 body of `onStatus(null, {level, code, description})`.
pub fn on_status_payload(level: Level, code: &str, description: &str) -> Bytes {
    let values = vec![
        Amf0Value::Utf8String("onStatus".to_string()),
        Amf0Value::Number(0.0),
        Amf0Value::Null,
        status_object(level, code, description),
    ];
    // Serializing strings, numbers and a flat object cannot fail; an empty body would only make
    // the client ignore the notification.
    rml_amf0::serialize(&values).map(Bytes::from).unwrap_or_default()
}

/// `_error(transaction_id, null, {level: "error", code, description})` on message stream 0: the
/// answer to a command that failed, matched by clients to the command they sent (GStreamer's
/// `rtmp2` reads a refused `connect` only from this).
pub fn command_error(transaction_id: f64, code: &str, description: &str) -> Bytes {
    let values = vec![
        Amf0Value::Utf8String("_error".to_string()),
        Amf0Value::Number(transaction_id),
        Amf0Value::Null,
        status_object(Level::Error, code, description),
    ];
    let payload = rml_amf0::serialize(&values).map(Bytes::from).unwrap_or_default();
    serialize_message(csid::CONTROL, msg_type::AMF0_COMMAND, 0, 0, &payload, OUT_CHUNK_SIZE as usize)
}

/// An `onStatus` command on message stream `stream_id`, ready to write.
pub fn on_status(stream_id: u32, level: Level, code: &str, description: &str) -> Bytes {
    let payload = on_status_payload(level, code, description);
    serialize_message(csid::CONTROL, msg_type::AMF0_COMMAND, stream_id, 0, &payload, OUT_CHUNK_SIZE as usize)
}

/// `|RtmpSampleAccess(false, false)` at timestamp 0 on a player's stream (what Flash-era
/// players expect after `Play.Start`; FFmpeg ignores script data at timestamp 0).
pub fn sample_access(stream_id: u32) -> Bytes {
    let values = vec![
        Amf0Value::Utf8String("|RtmpSampleAccess".to_string()),
        Amf0Value::Boolean(false),
        Amf0Value::Boolean(false),
    ];
    let payload = rml_amf0::serialize(&values).unwrap_or_default();
    serialize_message(csid::DATA, msg_type::AMF0_DATA, stream_id, 0, &payload, OUT_CHUNK_SIZE as usize)
}

/// `Acknowledgement(sequence_number)`: the bytes received so far (mod 2^32).
pub fn acknowledgement(sequence_number: u32) -> Bytes {
    serialize_message(
        csid::CONTROL,
        msg_type::ACKNOWLEDGEMENT,
        0,
        0,
        &sequence_number.to_be_bytes(),
        OUT_CHUNK_SIZE as usize,
    )
}

/// User control `PingResponse` echoing the peer's timestamp.
pub fn ping_response(timestamp: u32) -> Bytes {
    let mut body = [0u8; 6];
    body[..2].copy_from_slice(&7u16.to_be_bytes());
    body[2..].copy_from_slice(&timestamp.to_be_bytes());
    serialize_message(csid::CONTROL, msg_type::USER_CONTROL, 0, 0, &body, OUT_CHUNK_SIZE as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::{chunk_io::ChunkDeserializer, messages::RtmpMessage};

    #[test]
    fn on_status_parses_as_an_amf0_command() {
        let bytes = on_status(1, Level::Error, "NetStream.Publish.BadName", "no such key");
        let mut d = ChunkDeserializer::new();
        d.set_max_chunk_size(OUT_CHUNK_SIZE as usize).unwrap();
        let payload = d.get_next_message(&bytes).unwrap().unwrap();
        assert_eq!(payload.message_stream_id, 1);
        match payload.to_rtmp_message().unwrap() {
            RtmpMessage::Amf0Command { command_name, additional_arguments, .. } => {
                assert_eq!(command_name, "onStatus");
                let Amf0Value::Object(o) = &additional_arguments[0] else { panic!("not an object") };
                assert_eq!(o["code"], Amf0Value::Utf8String("NetStream.Publish.BadName".into()));
                assert_eq!(o["level"], Amf0Value::Utf8String("error".into()));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
