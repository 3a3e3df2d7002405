//! Decoding the AMF0 commands a server sends a client (`_result`, `_error`, `onStatus`) into what
//! the load tool acts on, keeping the server's own words (code and description) as the reason
//! when something is refused.

use bytes::Bytes;
use rml_rtmp::messages::{MessagePayload, RtmpMessage};
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::time::RtmpTimestamp;

/// A server command relevant to a client.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerCommand {
    /// `_result` for transaction `tx`; `args` are the values after the command object.
    Result { tx: u32, args: Vec<Amf0Value> },
    /// `_error` for transaction `tx`, with the server's code and description when given.
    Error { tx: u32, status: Status },
    /// `onStatus` (`NetStream.Play.Start`, `NetStream.Publish.BadName`, ...).
    OnStatus(Status),
    /// Anything else (`onBWDone`, `|RtmpSampleAccess`, ...), by name.
    Other(String),
}

/// The `code`/`level`/`description` triple of a status object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub code: String,
    pub level: String,
    pub description: String,
}

impl Status {
    /// True when the server signals a failure (level `error`, or a code known to refuse).
    pub fn is_error(&self) -> bool {
        self.level == "error"
            || [".Failed", ".BadName", ".StreamNotFound", ".Rejected", ".Unauthorized"]
                .iter()
                .any(|s| self.code.ends_with(s))
    }

    /// `code: description` (or just the code), as shown in failure reasons.
    pub fn reason(&self) -> String {
        if self.description.is_empty() { self.code.clone() } else { format!("{}: {}", self.code, self.description) }
    }
}

/// Decodes an AMF0 command message body.
pub fn decode(body: &[u8]) -> Result<ServerCommand, String> {
    let payload = MessagePayload {
        timestamp: RtmpTimestamp::new(0),
        type_id: 20,
        message_stream_id: 0,
        data: Bytes::copy_from_slice(body),
    };
    let RtmpMessage::Amf0Command { command_name, transaction_id, command_object, additional_arguments } =
        payload.to_rtmp_message().map_err(|e| format!("bad AMF0 command: {e}"))?
    else {
        return Err("not an AMF0 command".into());
    };
    // Transaction ids are small integers sent as AMF0 numbers.
    let tx = transaction_id as u32;
    Ok(match command_name.as_str() {
        "_result" => ServerCommand::Result { tx, args: additional_arguments },
        "_error" => {
            let mut status = additional_arguments.first().or(Some(&command_object)).map(status_of).unwrap_or_default();
            // `_error` is a refusal whatever level the server wrote (rml_rtmp writes "_error").
            status.level = "error".into();
            ServerCommand::Error { tx, status }
        }
        "onStatus" => ServerCommand::OnStatus(
            additional_arguments.first().map(status_of).unwrap_or_else(|| status_of(&command_object)),
        ),
        _ => ServerCommand::Other(command_name),
    })
}

fn status_of(v: &Amf0Value) -> Status {
    let Amf0Value::Object(props) = v else { return Status::default() };
    let text = |k: &str| match props.get(k) {
        Some(Amf0Value::Utf8String(s)) => s.clone(),
        _ => String::new(),
    };
    Status { code: text("code"), level: text("level"), description: text("description") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn encode(name: &str, tx: f64, object: Amf0Value, args: Vec<Amf0Value>) -> Vec<u8> {
        let msg = RtmpMessage::Amf0Command {
            command_name: name.into(),
            transaction_id: tx,
            command_object: object,
            additional_arguments: args,
        };
        msg.into_message_payload(RtmpTimestamp::new(0), 0).unwrap().data.to_vec()
    }

    fn status(code: &str, level: &str, description: &str) -> Amf0Value {
        let mut m = HashMap::new();
        m.insert("code".to_string(), Amf0Value::Utf8String(code.into()));
        m.insert("level".to_string(), Amf0Value::Utf8String(level.into()));
        m.insert("description".to_string(), Amf0Value::Utf8String(description.into()));
        Amf0Value::Object(m)
    }

    #[test]
    fn keeps_the_servers_reason_for_a_refused_publish() {
        let body = encode(
            "onStatus",
            0.0,
            Amf0Value::Null,
            vec![status("NetStream.Publish.BadName", "error", "Already publishing")],
        );
        let ServerCommand::OnStatus(s) = decode(&body).unwrap() else { panic!() };
        assert!(s.is_error());
        assert_eq!(s.reason(), "NetStream.Publish.BadName: Already publishing");
    }

    #[test]
    fn decodes_results_and_errors_with_their_transaction() {
        let body = encode("_result", 2.0, Amf0Value::Null, vec![Amf0Value::Number(1.0)]);
        assert_eq!(decode(&body).unwrap(), ServerCommand::Result { tx: 2, args: vec![Amf0Value::Number(1.0)] });
        let body = encode("_error", 1.0, Amf0Value::Null, vec![status("NetConnection.Connect.Rejected", "error", "")]);
        let ServerCommand::Error { tx: 1, status } = decode(&body).unwrap() else { panic!() };
        assert_eq!(status.reason(), "NetConnection.Connect.Rejected");
        let ok = Status { code: "NetStream.Play.Start".into(), level: "status".into(), description: String::new() };
        assert!(!ok.is_error());
        assert!(decode(&[0xff, 0x00]).is_err());
    }
}
