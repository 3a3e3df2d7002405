//! Fuzz target: the edge's whole connection input path (handshake, chunks, commands, media)
//! through the sans-IO `Connection`; see `streamfleet_edge::connection::fuzz_harness`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    streamfleet_edge::connection::fuzz_harness::drive(data);
});
