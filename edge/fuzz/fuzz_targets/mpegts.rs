//! Fuzz target: an SRT publisher's MPEG-TS through the demuxer and the conversion to media;
//! see `streamfleet_edge::fuzz::mpegts_feed`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    streamfleet_edge::fuzz::mpegts_feed(data);
});
