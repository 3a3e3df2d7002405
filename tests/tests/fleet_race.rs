//! Race: many encoders publish the same stream at the same moment through three edges that
//! share one Redis. Exactly one is admitted, cluster-wide; every other one is told
//! `NetStream.Publish.BadName` ("already being published"), and the edges' rejection metrics
//! account for each of them.

use std::time::Duration;

use futures::future::join_all;
use streamfleet_testkit::{
    rtmp_client::{Refusal, RtmpClient},
    wait::ms,
};
use streamfleet_tests::{
    ffmpeg,
    fleet::{Fleet, FleetConfig},
    manifest::StreamSpec,
};
use tokio::time::Instant;

/// Light RTMP clients, spread round-robin over the edges.
const RAW_ATTEMPTS: usize = 120;
/// Real encoders, one per edge, started in the same instant.
const FFMPEG_PER_EDGE: usize = 1;
const REJECTED: &str = "streamfleet_edge_publish_rejections_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishes_of_one_stream_across_three_edges_admit_exactly_one() {
    // takeoverPolicy Reject: a live publisher is never replaced, so "exactly one" is exact.
    let fleet = Fleet::start(FleetConfig::default(), &[StreamSpec::new("race").policy("Reject")]).await;
    let key = fleet.key("race");
    let n_edges = fleet.edges.len();

    // Handshake and `connect` first, so that the publish requests go out together.
    let connected = join_all((0..RAW_ATTEMPTS).map(|i| RtmpClient::connect(fleet.edges[i % n_edges].rtmp))).await;
    let clients: Vec<RtmpClient> =
        connected.into_iter().map(|c| c.unwrap_or_else(|e| panic!("RTMP connect: {e}"))).collect();

    let t0 = Instant::now();
    let mut encoders: Vec<(usize, tokio::process::Child)> = Vec::new();
    for (e, edge) in fleet.edges.iter().enumerate() {
        for _ in 0..FFMPEG_PER_EDGE {
            encoders.push((e, ffmpeg::publish(&edge.url(&key), 4)));
        }
    }
    let attempts = clients.into_iter().enumerate().map(|(i, mut c)| {
        let key = key.clone();
        tokio::spawn(async move {
            let outcome = c.publish(&key).await;
            // The winner keeps its connection (and so its lease) until the race is judged.
            (i % n_edges, outcome.map(|()| c))
        })
    });
    let outcomes: Vec<(usize, Result<RtmpClient, Refusal>)> =
        join_all(attempts).await.into_iter().map(|r| r.unwrap_or_else(|e| panic!("publish task: {e}"))).collect();
    let raw_decided = t0.elapsed();

    let mut admitted_per_edge = vec![0usize; n_edges];
    let mut attempts_per_edge = vec![0usize; n_edges];
    let mut winners = Vec::new();
    for (edge, outcome) in outcomes {
        attempts_per_edge[edge] += 1;
        match outcome {
            Ok(client) => {
                admitted_per_edge[edge] += 1;
                winners.push(client);
            }
            Err(Refusal::Status(code)) => assert_eq!(code, "NetStream.Publish.BadName", "a loser's status"),
            Err(other) => panic!("a losing publisher must be told with an onStatus, got {other:?}"),
        }
    }
    let raw_admitted = winners.len();
    // While a light client holds the stream, the registry names its edge.
    if raw_admitted == 1 {
        let holder = fleet.holder_edge("race").await.expect("the winner's lease is in the registry");
        let winner_edge = admitted_per_edge.iter().position(|n| *n == 1).expect("winner edge");
        assert_eq!(holder, fleet.edges[winner_edge].id);
    }

    // Each encoder either streams its 4 s and exits 0 (admitted) or is refused and exits 1.
    let mut ffmpeg_admitted = 0;
    for (edge, child) in encoders {
        attempts_per_edge[edge] += 1;
        let exit = ffmpeg::wait_exit(child, Duration::from_secs(30)).await.expect("ffmpeg finishes");
        if exit.success {
            ffmpeg_admitted += 1;
            admitted_per_edge[edge] += 1;
        } else {
            assert!(
                exit.stderr.contains("already being published"),
                "ffmpeg refused for another reason: {}",
                exit.stderr
            );
        }
    }
    let total = RAW_ATTEMPTS + n_edges * FFMPEG_PER_EDGE;
    eprintln!(
        "race: {total} publish attempts over {n_edges} edges; light clients decided in {}; admitted: {raw_admitted} light client(s), {ffmpeg_admitted} ffmpeg",
        ms(raw_decided)
    );
    assert_eq!(raw_admitted + ffmpeg_admitted, 1, "exactly one publisher admitted cluster-wide");

    // The edges' own accounting agrees, edge by edge, and names one reason only.
    for (e, edge) in fleet.edges.iter().enumerate() {
        let metrics = edge.metrics().await;
        let series = streamfleet_testkit::http::metric_series(&metrics, REJECTED);
        let already =
            streamfleet_testkit::http::metric_value(&metrics, &format!("{REJECTED}{{reason=\"already_active\"}}"));
        let all: f64 = series.iter().map(|(_, v)| v).sum();
        let expected = (attempts_per_edge[e] - admitted_per_edge[e]) as f64;
        assert_eq!(already, expected, "{}: already_active rejections ({series:?})", edge.id);
        assert_eq!(all, expected, "{}: no other rejection reason ({series:?})", edge.id);
    }
    assert_eq!(fleet.metric_sum(&format!("{REJECTED}{{reason=\"already_active\"}}")).await, (total - 1) as f64);
    let active: f64 = fleet.publishers_active().await.iter().sum();
    assert_eq!(active, raw_admitted as f64, "publishers active across the fleet (ffmpeg ones have finished)");
    drop(winners);
}
