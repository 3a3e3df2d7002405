//! The fuzz entry point over a connection's whole input path (handshake, chunk stream,
//! commands, media), shared by the `cargo fuzz` target (`edge/fuzz`) and the test that replays
//! the committed corpus, so CI exercises every input the fuzzer ever kept.
//!
//! Input layout: the first byte picks the mode; the rest is what the peer sends.
//! - bit 0 set: a canned valid handshake is fed first, so the fuzzer spends its effort on chunks
//!   and commands instead of rediscovering 3073 bytes of handshake;
//! - bits 1..=3: how the input is split into reads (1 byte, 7, 64, 500, 4096 or all at once),
//!   which exercises every partial-parse path.
//!
//! Pending publish/play decisions are accepted or refused depending on the last byte of the
//! read that raised them. Besides "no panic, no hang", the harness checks the edge never answers
//! with more than a bounded multiple of what it received (no amplification).

use super::{
    config::ProtocolConfig,
    events::{Event, Output},
    protocol::Connection,
};
use crate::rtmp::chunk_reader::ReaderLimits;

/// Bytes of a canned RTMP handshake (C0, C1, C2); the server accepts any C1/C2 content.
pub fn canned_handshake() -> Vec<u8> {
    let mut v = vec![3u8];
    v.resize(1 + 1536 + 1536, 0);
    v
}

/// What one run did (the corpus replay test checks the seeds still reach deep states).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub handshake_done: bool,
    pub connected: bool,
    pub publish_requests: usize,
    pub play_requests: usize,
    pub media_messages: usize,
    pub bytes_sent: usize,
    /// Why the connection ended early, if it did (error or deliberate close).
    pub ended: Option<String>,
}

const SPLITS: [usize; 6] = [1, 7, 64, 500, 4096, usize::MAX];

/// Runs one input through a fresh [`Connection`].
pub fn drive(data: &[u8]) -> RunSummary {
    let mut summary = RunSummary::default();
    let Some((&mode, input)) = data.split_first() else { return summary };
    let config = ProtocolConfig {
        app: "live".into(),
        // Small limits so the fuzzer reaches them with small inputs.
        limits: ReaderLimits {
            max_chunk_size: 65_536,
            max_message_size: 256 * 1024,
            max_message_size_unadmitted: 16 * 1024,
            max_chunk_streams: 16,
            max_command_size: 4096,
        },
        max_pending_input: 16 * 1024,
        max_command_values: 128,
        budget: crate::rtmp::chunk_reader::InputBudget::new(1 << 20),
    };
    let mut conn = Connection::new(config);
    if mode & 1 == 1 && !step(&mut conn, &canned_handshake(), &mut summary) {
        return summary;
    }
    let split = SPLITS[usize::from(mode >> 1) % SPLITS.len()];
    for piece in input.chunks(split.min(input.len().max(1))) {
        if !step(&mut conn, piece, &mut summary) {
            break;
        }
        if conn.pending().is_some() {
            let outs = if piece.last().is_some_and(|b| b & 1 == 0) {
                match conn.accept() {
                    Ok(outs) => outs,
                    Err(e) => {
                        summary.ended = Some(e.to_string());
                        break;
                    }
                }
            } else {
                conn.reject("NetStream.Publish.BadName", "fuzz")
            };
            if !account(outs, &mut summary) {
                break;
            }
        }
    }
    summary.handshake_done = conn.handshake_done();
    // Amplification bound: the session's greeting and responses are small and only come in
    // answer to input.
    let bound = 64 * 1024 + 32 * data.len();
    assert!(summary.bytes_sent <= bound, "sent {} bytes for {} bytes of input", summary.bytes_sent, data.len());
    summary
}

fn step(conn: &mut Connection, piece: &[u8], summary: &mut RunSummary) -> bool {
    match conn.feed(piece) {
        Ok(outs) => account(outs, summary),
        Err(e) => {
            summary.ended = Some(e.to_string());
            false
        }
    }
}

/// Tallies outputs; `false` once the connection asked to close.
fn account(outs: Vec<Output>, summary: &mut RunSummary) -> bool {
    let mut open = true;
    for o in outs {
        match o {
            Output::Send(b) => {
                assert!(!b.is_empty(), "empty send");
                summary.bytes_sent += b.len();
            }
            Output::Event(Event::Connected { .. }) => summary.connected = true,
            Output::Event(Event::PublishRequested { .. }) => summary.publish_requests += 1,
            Output::Event(Event::PlayRequested { .. }) => summary.play_requests += 1,
            Output::Event(Event::Media(_)) => summary.media_messages += 1,
            Output::Event(_) => {}
            Output::Close(why) => {
                summary.ended = Some(why);
                open = false;
            }
        }
    }
    open
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_tiny_inputs_are_harmless() {
        assert_eq!(drive(&[]), RunSummary::default());
        let s = drive(&[1]);
        assert!(s.handshake_done);
        assert!(s.bytes_sent > 3000, "handshake answered");
        let s = drive(&[0, 7]);
        assert!(s.ended.is_some(), "bad RTMP version is an error");
    }
}
