//! The memory the edge's allocator keeps (docs/edge.md, "Memory"): freed memory stays ten
//! seconds unless `MIMALLOC_PURGE_DELAY` says otherwise, and what a stream held goes back to the
//! OS after that delay even when nothing else happens on the edge.

mod common;

use std::time::Duration;

use common::{Edge, RawClient};
use streamfleet_testkit::{rtmp_client::fake_avc, wait::wait_until};

/// The line `main` logs with the allocator's purge delay in effect.
const PURGE_DELAY_LINE: &str = "allocator: memory freed in bulk goes back to the OS after this delay purge_delay_ms=";

#[tokio::test]
async fn freed_memory_is_kept_ten_seconds_by_default() {
    let edge = Edge::start(&[]).await;
    edge.wait_log(&format!("{PURGE_DELAY_LINE}10000"), Duration::from_secs(5)).await;
}

#[tokio::test]
async fn mimalloc_purge_delay_in_the_environment_wins() {
    // Also the check that the option index the edge passes to mimalloc is its purge delay: the
    // value read back through that index is the one mimalloc parsed from this variable.
    let edge = Edge::start_with_env(&["MIMALLOC_PURGE_DELAY=2500"], &[]).await;
    edge.wait_log(&format!("{PURGE_DELAY_LINE}2500"), Duration::from_secs(5)).await;
    assert_eq!(edge.log_count("purge_delay_ms=10000"), 0, "{}", edge.logs());
}

/// mimalloc hands memory back only from inside its own calls; the edge asks it every two
/// seconds, so a quiet edge does not keep a finished stream's GOP at its peak.
#[tokio::test]
async fn a_finished_stream_s_memory_goes_back_to_the_os_while_the_edge_is_quiet() {
    let edge = Edge::start_with_env(&["MIMALLOC_PURGE_DELAY=300"], &[]).await;
    let mut publisher = RawClient::connect(edge.rtmp).await;
    publisher.publish("demo-publish-key").await.unwrap();
    let before = edge.rss_kib();
    // One GOP of 24 MiB, all of it in the stream's GOP cache: a keyframe and 95 more pictures
    // of 256 KiB.
    for i in 0..96u32 {
        publisher.send_video(fake_avc(i == 0, 256 * 1024), i * 33).await;
    }
    let cached = 96.0 * 256.0 * 1024.0;
    wait_until("the GOP cached", Duration::from_secs(10), || async {
        (edge.metric("streamfleet_edge_gop_cache_bytes").await >= cached).then_some(())
    })
    .await;
    let grown = edge.rss_kib().saturating_sub(before);
    assert!(grown >= 20 * 1024, "the cached GOP is resident: RSS grew {grown} KiB");

    drop(publisher);
    wait_until("the GOP cache emptied", Duration::from_secs(10), || async {
        (edge.metric("streamfleet_edge_gop_cache_bytes").await == 0.0).then_some(())
    })
    .await;
    // Nothing allocates on the edge from here on; the memory goes back after the 300 ms delay,
    // at the next hand-back (every 2 s).
    wait_until("most of the GOP's memory back with the OS", Duration::from_secs(8), || async {
        let over = edge.rss_kib().saturating_sub(before);
        (over < grown / 4).then_some(())
    })
    .await;
}
