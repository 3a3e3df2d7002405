//! Replays the committed fuzz corpus (`edge/fuzz/corpus/connection`) and every input the fuzzer
//! ever crashed on (`edge/fuzz/regressions`) through the same harness the `cargo fuzz` target
//! uses, so CI covers them without nightly or libFuzzer.
//!
//! `cargo test -p streamfleet-edge --test fuzz_corpus -- --ignored` regenerates the hand-made
//! seeds (real client sessions recorded in memory).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use rml_amf0::Amf0Value;
use rml_rtmp::{
    handshake::{Handshake, HandshakeProcessResult, PeerType},
    sessions::{ClientSession, ClientSessionConfig, ClientSessionResult, PublishRequestType, StreamMetadata},
    time::RtmpTimestamp,
};
use streamfleet_edge::connection::{
    Connection, Output, ProtocolConfig,
    fuzz_harness::{self, RunSummary},
};

fn dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(sub)
}

fn inputs(sub: &str) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir(sub)) else { return Vec::new() };
    let mut v: Vec<_> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).expect("read corpus file")))
        .collect();
    v.sort();
    v
}

#[test]
fn corpus_and_regressions_replay_cleanly() {
    let corpus = inputs("corpus/connection");
    assert!(corpus.len() >= 4, "corpus missing: {:?}", dir("corpus/connection"));
    let mut total = RunSummary::default();
    for (name, data) in corpus.iter().chain(inputs("regressions").iter()) {
        let s = std::panic::catch_unwind(|| fuzz_harness::drive(data))
            .unwrap_or_else(|_| panic!("corpus input {name} panics"));
        total.publish_requests += s.publish_requests;
        total.play_requests += s.play_requests;
        total.media_messages += s.media_messages;
    }
    // The seeds still reach publishing, playing and media handling.
    assert!(total.publish_requests > 0 && total.play_requests > 0 && total.media_messages > 0, "{total:?}");
}

/// A stable-Rust stand-in for the fuzzer in CI: seeded mutations (bit flips, byte overwrites,
/// truncation, splices, inserted runs) of the corpus through the same harness.
#[test]
fn mutated_corpus_inputs_are_handled() {
    let corpus: Vec<Vec<u8>> = inputs("corpus/connection").into_iter().map(|(_, d)| d).collect();
    assert!(!corpus.is_empty());
    let mut state: u64 = 0x5EED_F00D;
    let mut next = move || {
        // xorshift64*: deterministic, so a failure reproduces.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    for _ in 0..3000 {
        let mut data = corpus[(next() as usize) % corpus.len()].clone();
        for _ in 0..1 + next() % 8 {
            let len = data.len().max(1);
            let at = (next() as usize) % len;
            match next() % 5 {
                0 if !data.is_empty() => data[at] ^= 1 << (next() % 8),
                1 if !data.is_empty() => data[at] = next() as u8,
                2 => data.truncate(at),
                3 => {
                    let other = &corpus[(next() as usize) % corpus.len()];
                    let from = (next() as usize) % other.len().max(1);
                    data.splice(at.min(data.len())..at.min(data.len()), other[from..].iter().take(512).copied());
                }
                _ => {
                    let run = vec![next() as u8; (next() % 64) as usize];
                    data.splice(at.min(data.len())..at.min(data.len()), run);
                }
            }
        }
        let copy = data.clone();
        if std::panic::catch_unwind(|| fuzz_harness::drive(&copy)).is_err() {
            let path = std::env::temp_dir().join("streamfleet-edge-mutation-crash");
            let _ = std::fs::write(&path, &data);
            panic!("mutated input panics; saved to {}", path.display());
        }
    }
}

/// Records what a real rml_rtmp client sends to the edge's protocol state machine after the
/// canned handshake, answering it with the edge's responses.
fn record(script: impl FnOnce(&mut Recorder)) -> Vec<u8> {
    let mut server = Connection::new(ProtocolConfig::default());
    let mut greeting = Vec::new();
    for o in server.feed(&fuzz_harness::canned_handshake()).unwrap() {
        if let Output::Send(b) = o {
            greeting.extend_from_slice(&b);
        }
    }
    let (mut client, initial) = ClientSession::new(ClientSessionConfig::new()).unwrap();
    // S0+S1+S2 are for the handshake; what follows is the session's greeting (chunk size, ...).
    let greeting = client.handle_input(&greeting[1 + 2 * 1536..]).unwrap();
    let mut r = Recorder { server, client, sent: Vec::new() };
    r.results(initial);
    r.results(greeting);
    script(&mut r);
    r.sent
}

struct Recorder {
    server: Connection,
    client: ClientSession,
    sent: Vec<u8>,
}

impl Recorder {
    fn deliver_to_server(&mut self, bytes: &[u8]) {
        self.sent.extend_from_slice(bytes);
        let mut outs = self.server.feed(bytes).unwrap();
        if self.server.pending().is_some() {
            outs.extend(self.server.accept().unwrap());
        }
        let mut back = Vec::new();
        for o in outs {
            if let Output::Send(b) = o {
                back.extend_from_slice(&b);
            }
        }
        if !back.is_empty() {
            let results = self.client.handle_input(&back).unwrap();
            self.results(results);
        }
    }

    fn results(&mut self, results: Vec<ClientSessionResult>) {
        for r in results {
            if let ClientSessionResult::OutboundResponse(p) = r {
                self.deliver_to_server(&p.bytes);
            }
        }
    }

    fn one(&mut self, r: Result<ClientSessionResult, rml_rtmp::sessions::ClientSessionError>) {
        self.results(vec![r.unwrap()]);
    }
}

fn write_seed(name: &str, mode: u8, body: &[u8]) {
    let mut data = vec![mode];
    data.extend_from_slice(body);
    // An even last byte: the harness accepts pending requests when the read ends on one.
    data.push(0);
    std::fs::create_dir_all(dir("corpus/connection")).unwrap();
    std::fs::write(dir("corpus/connection").join(name), data).unwrap();
}

#[test]
#[ignore = "regenerates the committed seeds"]
fn regenerate_seeds() {
    // Mode bits: 1 = canned handshake; (5 << 1) = feed everything at once; (0 << 1) = byte by byte.
    let publish = record(|r| {
        let x = r.client.request_connection("live".into());
        r.one(x);
        let x = r.client.request_publishing("demo-publish-key".into(), PublishRequestType::Live);
        r.one(x);
        let meta = StreamMetadata { video_width: Some(320), video_height: Some(180), ..StreamMetadata::new() };
        let x = r.client.publish_metadata(&meta);
        r.one(x);
        for (i, payload) in [&[0x17u8, 0, 0, 0, 0, 1, 0x64][..], &[0xAF, 0, 0x12, 0x10], &[0x17, 1, 0, 0, 0, 9, 9, 9]]
            .into_iter()
            .enumerate()
        {
            let data = Bytes::copy_from_slice(payload);
            let x = if payload[0] == 0xAF {
                r.client.publish_audio_data(data, RtmpTimestamp::new(i as u32), false)
            } else {
                r.client.publish_video_data(data, RtmpTimestamp::new(i as u32), false)
            };
            r.one(x);
        }
        let big = Bytes::from(vec![0x27u8; 9000]);
        let x = r.client.publish_video_data(big, RtmpTimestamp::new(40), false);
        r.one(x);
        let x = r.client.stop_publishing().unwrap();
        r.results(x);
    });
    write_seed("seed-publish-all", 1 | (5 << 1), &publish);
    write_seed("seed-publish-bytewise", 1, &publish);

    let play = record(|r| {
        let x = r.client.request_connection("live".into());
        r.one(x);
        let x = r.client.request_playback("demo".into());
        r.one(x);
        let (ping, _) = r.client.send_ping_request().unwrap();
        r.deliver_to_server(&ping.bytes);
        let x = r.client.stop_playback().unwrap();
        r.results(x);
    });
    write_seed("seed-play-all", 1 | (5 << 1), &play);
    write_seed("seed-play-64", 1 | (2 << 1), &play);

    // A real (FP9 digest) client handshake followed by connect, without the canned handshake.
    let mut server = Connection::new(ProtocolConfig::default());
    let mut hs = Handshake::new(PeerType::Client);
    let mut wire = hs.generate_outbound_p0_and_p1().unwrap();
    let mut back = Vec::new();
    for o in server.feed(&wire).unwrap() {
        if let Output::Send(b) = o {
            back.extend_from_slice(&b);
        }
    }
    let HandshakeProcessResult::Completed { response_bytes, .. } = hs.process_bytes(&back).unwrap() else {
        panic!("client handshake incomplete")
    };
    wire.extend_from_slice(&response_bytes);
    let connect = rml_amf0::serialize(&vec![
        Amf0Value::Utf8String("connect".into()),
        Amf0Value::Number(1.0),
        Amf0Value::Object([("app".to_string(), Amf0Value::Utf8String("live".into()))].into_iter().collect()),
    ])
    .unwrap();
    let mut chunk = vec![0x03, 0, 0, 0, 0, 0, connect.len() as u8, 20, 0, 0, 0, 0];
    chunk.extend_from_slice(&connect);
    wire.extend_from_slice(&chunk);
    write_seed("seed-fp9-handshake-connect", 5 << 1, &wire);

    // Chunk-level corners: a larger chunk size, an interleaved multi-chunk message, an abort,
    // an acknowledgement window and a ping.
    let mut c = Vec::new();
    c.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0x10, 0]); // SetChunkSize 4096
    c.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 4, 5, 0, 0, 0, 0, 0, 0, 0x10, 0]); // WindowAck 4096
    c.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 6, 4, 0, 0, 0, 0, 0, 6, 0, 0, 0, 42]); // PingRequest
    let mut big = vec![0x06, 0, 0, 1, 0, 0x20, 0, 9, 1, 0, 0, 0]; // 8192-byte video on csid 6
    big.extend(std::iter::repeat_n(0x17u8, 4096));
    c.extend_from_slice(&big);
    c.extend_from_slice(&[0x04, 0, 0, 2, 0, 0, 2, 8, 1, 0, 0, 0, 0xAF, 1]); // audio on csid 4
    c.push(0xC6);
    c.extend(std::iter::repeat_n(0x27u8, 4096));
    c.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 4, 2, 0, 0, 0, 0, 0, 0, 0, 6]); // Abort csid 6
    write_seed("seed-chunk-corners", 1 | (3 << 1), &c);
}

/// The PROXY header corpus (`edge/fuzz/corpus/proxy_header`, the `proxy_header` fuzz target's
/// seeds: v1 and v2 headers, a LOCAL command, a TLS ClientHello where a header should be)
/// through the target's body, whole and truncated at every length.
#[test]
fn proxy_header_corpus_replays_cleanly() {
    let corpus = inputs("corpus/proxy_header");
    assert!(corpus.len() >= 5, "corpus missing: {:?}", dir("corpus/proxy_header"));
    for (name, data) in &corpus {
        for len in 0..=data.len() {
            std::panic::catch_unwind(|| streamfleet_edge::fuzz_proxy_header(&data[..len]))
                .unwrap_or_else(|_| panic!("proxy_header input {name} (first {len} bytes) panics"));
        }
    }
}
