//! Partition between one edge and Redis: every edge reaches Redis through its own TCP proxy,
//! and the test black-holes one of them (`TcpProxy::cut`: sockets stay open, no byte moves).
//! The cut-off edge cannot renew its publisher's lease, so it must drop the publisher *before*
//! the lease can expire in Redis; a publisher waiting on another edge must be admitted only
//! *after* that. Both instants are taken from the clients (the dropped publisher's `onStatus`,
//! the newcomer's `NetStream.Publish.Start`); the test repeats with each edge as the victim.

use std::time::Duration;

use streamfleet_testkit::{
    rtmp_client::{Ending, RtmpClient, publish_until_admitted},
    wait::{ms, wait_until},
};
use streamfleet_tests::{
    fleet::{Fleet, FleetConfig},
    manifest::StreamSpec,
};
use tokio::time::Instant;

const TTL: Duration = Duration::from_secs(3);
const ROUNDS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_edge_drops_its_publisher_before_another_edge_admits_a_new_one() {
    let streams: Vec<StreamSpec> = (0..ROUNDS).map(|i| StreamSpec::new(&format!("cut{i}"))).collect();
    let fleet = Fleet::start(FleetConfig { lease_ttl: TTL, proxied: true, ..FleetConfig::default() }, &streams).await;
    let n = fleet.edges.len();
    let mut figures = Vec::new();

    for round in 0..ROUNDS {
        let (victim, other) = (&fleet.edges[round % n], &fleet.edges[(round + 1) % n]);
        let name = format!("cut{round}");
        let key = fleet.key(&name);

        let mut client = RtmpClient::connect(victim.rtmp).await.expect("publisher connects");
        client.publish(&key).await.unwrap_or_else(|r| panic!("round {round}: publisher refused: {r:?}"));
        let publisher = client.into_publisher();
        victim.wait_live(&name, 10, Duration::from_secs(10)).await;
        wait_until("the victim's lease in the registry", Duration::from_secs(5), || async {
            (fleet.holder_edge(&name).await.as_deref() == Some(victim.id.as_str())).then_some(())
        })
        .await;
        let losses_before = victim.metric("streamfleet_edge_lease_losses_total{reason=\"expired\"}").await;

        let cut_at = Instant::now();
        fleet.proxies[round % n].cut();
        // A reconnecting encoder on another edge keeps trying from the moment of the cut.
        let challenger = tokio::spawn({
            let addr = other.rtmp;
            let key = key.clone();
            async move { publish_until_admitted(addr, &key, Duration::from_millis(20), TTL * 4).await }
        });

        let dropped = publisher
            .wait_ended(TTL * 2)
            .await
            .unwrap_or_else(|| panic!("round {round}: the partitioned edge kept its publisher for {:?}", TTL * 2));
        assert_eq!(
            dropped.how,
            Ending::Status("NetStream.Publish.BadName".into()),
            "round {round}: the publisher is told why it was dropped"
        );
        let admission = challenger
            .await
            .expect("challenger task")
            .unwrap_or_else(|refusals| panic!("round {round}: never admitted on {}: {refusals:?}", other.id));

        let drop_after_cut = dropped.at.duration_since(cut_at);
        let admit_after_cut = admission.at.duration_since(cut_at);
        eprintln!(
            "partition round {round} ({} cut off, challenger on {}): publisher dropped {} after the cut, new publisher admitted {} after the cut; margin {}",
            victim.id,
            other.id,
            ms(drop_after_cut),
            ms(admit_after_cut),
            ms(admission.at.saturating_duration_since(dropped.at)),
        );
        assert!(
            dropped.at < admission.at,
            "round {round}: new publisher admitted {} after the cut, before the old one was dropped ({})",
            ms(admit_after_cut),
            ms(drop_after_cut)
        );
        // The stop deadline is at most TTL − TTL/3 after the last renew, itself before the cut.
        assert!(drop_after_cut <= TTL - TTL / 3 + Duration::from_millis(500), "round {round}: dropped late");
        assert!(admit_after_cut <= TTL + Duration::from_secs(1), "round {round}: admitted late");
        assert!(
            admission.refusals.iter().all(|r| r.code() == "NetStream.Publish.BadName"),
            "round {round}: refusals while the lease was held: {:?}",
            admission.refusals
        );
        assert_eq!(
            victim.metric("streamfleet_edge_lease_losses_total{reason=\"expired\"}").await,
            losses_before + 1.0,
            "round {round}: the victim counts an expired lease"
        );
        assert_eq!(victim.readyz().await, Some(503), "round {round}: a partitioned edge is not ready");
        figures.push((drop_after_cut, admit_after_cut));

        // Heal: the edge becomes ready again without a restart; held bytes (its stale renews and
        // release) reach Redis late and must not disturb the new holder.
        fleet.proxies[round % n].heal();
        victim.wait_readyz(200, Duration::from_secs(10)).await;
        assert_eq!(fleet.holder_edge(&name).await.as_deref(), Some(other.id.as_str()), "round {round}: holder");
        assert!(admission.publisher.ended().is_none(), "round {round}: the new publisher is undisturbed");
        admission.publisher.close().await;
    }

    let min_margin = figures.iter().map(|(d, a)| a.saturating_sub(*d)).min().unwrap_or_default();
    eprintln!(
        "partition: smallest margin between the drop and the next admission over {ROUNDS} rounds: {}",
        ms(min_margin)
    );
}
