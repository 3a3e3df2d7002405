//! Fuzz target: the PROXY protocol header reader (v1 and v2, over `ppp`) as the edge drives it;
//! see `streamfleet_edge::fuzz_proxy_header`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    streamfleet_edge::fuzz_proxy_header(data);
});
