//! Fuzz target: the SRT stream-ID parser; what it returns must come from its input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    assert!(streamfleet_edge::fuzz::srt_stream_id(data));
});
