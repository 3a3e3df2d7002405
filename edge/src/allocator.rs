//! How long the allocator keeps memory the edge frees, and handing it back once it has waited.
//!
//! The binary allocates with mimalloc (`main.rs`): frames of every size are allocated per
//! message and a GOP's worth freed at each keyframe, which glibc's malloc paid for in bin
//! searches (14 % more CPU per ingested GB; see the dependency's note in Cargo.toml).
//!
//! The edge changes one of mimalloc's settings: how long memory freed in bulk stays with the
//! process before it goes back to the OS (mimalloc's *purge delay*). mimalloc's default, one
//! second, is shorter than a GOP: the pages a GOP cache frees at a keyframe went back to the
//! kernel before the next GOP grew into them, and each was faulted in and zeroed again, about
//! 2,600 page faults a second at 50 publishers of 3 Mbit/s (docs/benchmarks.md, issue 23,
//! thirteenth round). Ten seconds outlasts the GOPs encoders send (OBS's automatic keyframe
//! interval is about 8 s).
//!
//! mimalloc only hands memory back from inside its own calls, so an edge that goes quiet after a
//! busy spell would keep it until something allocates again; [`hand_back_freed_memory`] asks
//! it every two seconds instead, so a stream's memory goes back within about twelve seconds of
//! its publisher leaving.
//!
//! This file holds the calls into mimalloc's C API, the only `unsafe` outside the read and
//! write paths. Its rule: options are set before any thread but the main one exists, as
//! mimalloc's option functions require; `mi_collect` may be called on any thread at any time.

use std::{
    ffi::c_long,
    sync::atomic::{AtomicBool, Ordering::Relaxed},
    time::Duration,
};

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_t` (the Rust bindings name only some of
/// the options). `edge/tests/edge_memory.rs` checks the index against `MIMALLOC_PURGE_DELAY`,
/// so a dependency update that moves it fails there.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The purge delay the edge sets unless the environment sets one.
const PURGE_DELAY_MS: c_long = 10_000;

/// How often a quiet edge asks mimalloc to hand back memory whose delay has passed.
const HAND_BACK_EVERY: Duration = Duration::from_secs(2);

/// Set by [`configure`]: mimalloc is the global allocator (not so in the library's tests).
static CONFIGURED: AtomicBool = AtomicBool::new(false);

/// Sets the edge's allocator defaults, for a binary whose global allocator is mimalloc. An
/// `MIMALLOC_PURGE_DELAY` in the environment wins (mimalloc reads it at start-up, and
/// `mi_option_set_default` leaves an option it read alone). Returns the purge delay in effect,
/// in milliseconds (-1: never, 0: at once).
///
/// Call once, first thing in `main`, while the process has one thread.
// `c_long` is `i64` here but 32 bits on other targets, where the conversion is not useless.
#[allow(clippy::useless_conversion)]
pub fn configure() -> i64 {
    // SAFETY: mimalloc's option table is plain global data without locking; nothing else reads
    // or writes it concurrently, because no other thread exists yet (the rule above).
    let delay = unsafe {
        libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
        i64::from(libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY))
    };
    CONFIGURED.store(true, Relaxed);
    delay
}

/// Every [`HAND_BACK_EVERY`], lets mimalloc return the memory whose purge delay has passed
/// (its arenas are process-wide, so one thread's call covers what every thread freed). Does
/// nothing unless [`configure`] ran; ends when the runtime does.
pub(crate) async fn hand_back_freed_memory() {
    if !CONFIGURED.load(Relaxed) {
        return;
    }
    let mut tick = tokio::time::interval(HAND_BACK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // SAFETY: `mi_collect` works on the calling thread's own heap and mimalloc's
        // process-wide arenas, which it locks itself: safe from any thread at any time.
        unsafe { libmimalloc_sys::mi_collect(false) };
    }
}
