//! The SRT publisher's input paths under seeded mutation, on stable Rust in CI (the `mpegts`
//! and `srt_stream_id` targets of `edge/fuzz` run the same functions under libFuzzer): the
//! MPEG-TS demuxer and its conversion to media, from a real ffmpeg recording
//! (`edge/fuzz/corpus/mpegts`), and the stream-ID parser.

use std::path::Path;

use streamfleet_edge::fuzz::{mpegts_feed, srt_stream_id};

/// xorshift64*: deterministic, so a failure reproduces.
fn rng(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn mutate(data: &mut Vec<u8>, next: &mut impl FnMut() -> u64) {
    for _ in 0..1 + next() % 8 {
        let len = data.len().max(1);
        let at = (next() as usize) % len;
        match next() % 5 {
            0 if !data.is_empty() => data[at] ^= 1 << (next() % 8),
            1 if !data.is_empty() => data[at] = next() as u8,
            2 => data.truncate(at),
            3 if data.len() > 188 => {
                // Drop a run (lost packets), keeping alignment some of the time.
                let n = if next().is_multiple_of(2) { 188 } else { (next() % 400) as usize };
                let end = (at + n).min(data.len());
                data.drain(at..end);
            }
            _ => {
                let run = vec![next() as u8; (next() % 64) as usize];
                data.splice(at.min(data.len())..at.min(data.len()), run);
            }
        }
    }
}

fn seed() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/mpegts/seed-ffmpeg-h264-aac.ts");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_ffmpeg_seed_demuxes_into_media() {
    // 1 s of 10 fps video and 16 kHz AAC: sequence headers, 10 frames, ~16 audio frames.
    let n = mpegts_feed(&seed());
    assert!(n >= 20, "only {n} media messages from the seed");
}

#[test]
fn mutated_mpegts_is_handled() {
    let seed = seed();
    let mut next = rng(0x5EED_7555);
    for i in 0..2000 {
        let mut data = seed.clone();
        mutate(&mut data, &mut next);
        let copy = data.clone();
        if std::panic::catch_unwind(|| mpegts_feed(&copy)).is_err() {
            let path = std::env::temp_dir().join("streamfleet-edge-mpegts-crash");
            let _ = std::fs::write(&path, &data);
            panic!("mutation {i} panics; saved to {}", path.display());
        }
    }
}

#[test]
fn mutated_stream_ids_parse_to_what_they_contain() {
    let seeds: [&[u8]; 6] = [
        b"#!::r=demo-publish-key,m=publish",
        b"#!::m=request,r=live/demo,u=alice",
        b"publish:k",
        b"read:demo",
        b"bare-key",
        b"#!::r=a=b,,m=",
    ];
    let mut next = rng(0x5EED_1D1D);
    for seed in seeds {
        assert!(srt_stream_id(seed));
    }
    for i in 0..5000 {
        let mut data = seeds[(next() as usize) % seeds.len()].to_vec();
        mutate(&mut data, &mut next);
        assert!(srt_stream_id(&data), "mutation {i}: {:?}", String::from_utf8_lossy(&data));
    }
}

/// An SRT conclusion handshake as libsrt 1.5 sends it (HSv5: HSREQ, stream ID, and optionally
/// a congestion-control extension), assembled by hand from the protocol's layout.
fn conclusion(stream_id: &str, congestion: bool) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&0x8000_0000u32.to_be_bytes()); // control, handshake
    p.extend_from_slice(&0u32.to_be_bytes());
    p.extend_from_slice(&1234u32.to_be_bytes()); // timestamp
    p.extend_from_slice(&0u32.to_be_bytes()); // destination socket
    p.extend_from_slice(&5u32.to_be_bytes()); // version 5
    let ext: u16 = 0x1 | 0x4; // HSREQ, CONFIG
    p.extend_from_slice(&[0, 0]); // no encryption
    p.extend_from_slice(&ext.to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes()); // initial sequence number
    p.extend_from_slice(&1500u32.to_be_bytes());
    p.extend_from_slice(&8192u32.to_be_bytes());
    p.extend_from_slice(&0xFFFF_FFFFu32.to_be_bytes()); // conclusion
    p.extend_from_slice(&0x0BAD_CAFEu32.to_be_bytes()); // caller's socket id
    p.extend_from_slice(&0x1111_2222u32.to_be_bytes()); // SYN cookie
    p.extend_from_slice(&[127, 0, 0, 1]);
    p.extend_from_slice(&[0; 12]);
    // HSREQ: version 1.5.1, flags, TSBPD delays.
    p.extend_from_slice(&[0, 1, 0, 3, 0x00, 0x01, 0x05, 0x01, 0, 0, 0, 0xBF, 0, 120, 0, 120]);
    let words = |kind: u16, text: &str, p: &mut Vec<u8>| {
        let mut b = text.as_bytes().to_vec();
        b.resize(b.len().div_ceil(4) * 4, 0);
        p.extend_from_slice(&kind.to_be_bytes());
        p.extend_from_slice(&((b.len() / 4) as u16).to_be_bytes());
        // SRT carries strings as little-endian 32-bit words.
        for w in b.chunks(4) {
            p.extend(w.iter().rev());
        }
    };
    words(5, stream_id, &mut p);
    if congestion {
        words(6, "live", &mut p);
    }
    p
}

#[test]
fn srt_handshakes_parse_and_mutated_ones_never_panic_the_protocol_crate() {
    use srt_protocol::packet::Packet;
    let seeds = [conclusion("publish:demo-publish-key", false), conclusion("#!::r=demo,m=request", true)];
    for seed in &seeds {
        let parsed = Packet::parse(&mut std::io::Cursor::new(&seed[..]), false);
        // The congestion extension used to panic the parser (`unimplemented!`): it is ignored now.
        assert!(parsed.is_ok(), "{parsed:?}");
    }
    let mut next = rng(0x5EED_0519);
    for i in 0..20_000 {
        let mut data = seeds[(next() as usize) % seeds.len()].clone();
        mutate(&mut data, &mut next);
        let copy = data.clone();
        if std::panic::catch_unwind(|| Packet::parse(&mut std::io::Cursor::new(&copy[..]), false)).is_err() {
            panic!("mutation {i} panics the SRT packet parser: {data:02x?}");
        }
    }
}
