//! The change feed: the lease and viewer scripts `PUBLISH` a stream's id on `P:changes` when its
//! live state changes (prelude.lua `signal`), and the operator subscribes here. Pub/sub rather
//! than keyspace notifications: those need `notify-keyspace-events` set on the server (often
//! locked on managed Redis), would fire on every renew, and still say nothing about viewers.
//!
//! Delivery is at most once: messages published while no subscription is open are lost. The
//! feed therefore yields [`LiveChange::Resync`] after every reconnect, and the operator keeps
//! polling as a safety net.

use std::{sync::Arc, time::Duration};

use futures::{StreamExt, stream::BoxStream};

use super::target::Target;
use crate::{LiveChange, record::StreamId};

/// First and last delay before a lost subscription is dialled again.
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The messages on `channel`, re-subscribing after any failure, until dropped.
pub(super) fn feed(target: Arc<Target>, channel: String, connect_timeout: Duration) -> BoxStream<'static, LiveChange> {
    let subscriptions = futures::stream::unfold((0u32, false), move |(failures, subscribed_before)| {
        let (target, channel) = (target.clone(), channel.clone());
        async move {
            if failures > 0 {
                let delay = RETRY_MIN.saturating_mul(2u32.saturating_pow(failures.min(8) - 1)).min(RETRY_MAX);
                tokio::time::sleep(delay).await;
            }
            match tokio::time::timeout(connect_timeout, subscribe(&target, &channel)).await {
                Ok(Ok(messages)) => {
                    tracing::debug!(channel, "subscribed to the registry's change feed");
                    // A first subscription has missed nothing its reader could have known about.
                    let head = futures::stream::iter(subscribed_before.then_some(LiveChange::Resync));
                    Some((head.chain(messages).boxed(), (0, true)))
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot subscribe to the registry's change feed; status falls back to polling");
                    Some((futures::stream::empty().boxed(), (failures.saturating_add(1), subscribed_before)))
                }
                Err(_) => {
                    tracing::warn!("subscribing to the registry's change feed timed out; retrying");
                    Some((futures::stream::empty().boxed(), (failures.saturating_add(1), subscribed_before)))
                }
            }
        }
    });
    subscriptions.flatten().boxed()
}

async fn subscribe(target: &Target, channel: &str) -> redis::RedisResult<BoxStream<'static, LiveChange>> {
    let mut pubsub = target.dial_pubsub().await?;
    pubsub.subscribe(channel).await?;
    let messages = pubsub.into_on_message().filter_map(|msg| async move {
        let text = msg.get_payload::<String>().ok()?;
        let (viewers, id) = match text.strip_prefix("v:") {
            Some(id) => (true, id),
            None => (false, text.as_str()),
        };
        match StreamId::parse(id) {
            Some(id) if viewers => Some(LiveChange::Viewers(id)),
            Some(id) => Some(LiveChange::Stream(id)),
            None => {
                tracing::debug!(signal = text, "ignoring a malformed change signal");
                None
            }
        }
    });
    Ok(messages.boxed())
}
