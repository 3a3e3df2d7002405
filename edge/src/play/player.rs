//! The player loop: what a connection that plays a stream does once its play is accepted and
//! it is among the stream's players, until it ends. Shared by the two kinds of player: a
//! viewer on this edge and another edge's relay pull, which differ only in what a publisher
//! change means to them (see [`Watcher`]).

use std::sync::Arc;

use tokio::time::{Instant, sleep_until};

use crate::{
    app::{context::Context, shutdown},
    connection::{
        Event,
        session::{Ended, Session},
    },
    fanout::CloseReason,
    rtmp::messages::Level,
    streams::{LiveState, Stream},
};

pub(crate) const NOT_FOUND: &str = "NetStream.Play.StreamNotFound";
const STOP: &str = "NetStream.Play.Stop";

/// Who is playing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watcher {
    /// A viewer: stays through a publisher change and waits up to `--play-wait-timeout` for a
    /// republish.
    Viewer,
    /// Another edge's relay pull: ends when the stream is no longer published by an encoder on
    /// this edge, so the pulling edge looks up the stream's new owner at once.
    RelayPull,
}

/// Serves the player's control input, follows publisher changes and ends on close, drain,
/// `until` (the play duration the client asked for) or (for a viewer) a stream not
/// republished in time.
pub(crate) async fn watch(
    ctx: &Arc<Context>,
    io: &mut Session,
    stream: &Arc<Stream>,
    who: Watcher,
    until: Option<Instant>,
) -> Ended {
    let wait = ctx.settings.play_wait_timeout;
    let mut live = stream.watch_live();
    let mut offline_deadline = (who == Watcher::Viewer && !stream.is_live()).then(|| Instant::now() + wait);
    let mut shutdown = ctx.shutdown.clone();
    let outbox = io.outbox.clone();
    loop {
        tokio::select! {
            ev = io.next_event() => match ev {
                Ok(Event::PlayFinished) => return Ended::Closed(match who {
                    Watcher::Viewer => "player stopped".into(),
                    Watcher::RelayPull => "relay pull stopped".into(),
                }),
                Ok(_) => {}
                Err(e) => return e,
            },
            reason = outbox.wait_closed() => {
                if reason == CloseReason::SlowPlayer {
                    ctx.metrics.slow_player_disconnects.inc();
                    if who == Watcher::Viewer {
                        tracing::info!("disconnecting slow player");
                    }
                }
                return Ended::Outbox(reason);
            }
            changed = live.changed() => match who {
                Watcher::Viewer => {
                    if changed.is_err() {
                        return Ended::Closed("stream ended".into());
                    }
                    let is_live = matches!(*live.borrow_and_update(), LiveState::Live { .. });
                    offline_deadline = if is_live { None } else { Some(Instant::now() + wait) };
                }
                Watcher::RelayPull => {
                    let offline = changed.is_err() || matches!(*live.borrow_and_update(), LiveState::Offline);
                    // A takeover by another local publisher keeps the pull; anything else ends
                    // it so the pulling edge follows the publisher to its next edge.
                    if offline || !stream.has_local_publisher() {
                        return io.close_with(Level::Status, STOP, "the publisher left this edge", "publisher left; relay pull ended");
                    }
                }
            },
            _ = sleep_until(offline_deadline.unwrap_or_else(far_future)), if offline_deadline.is_some() => {
                return io.close_with(Level::Error, NOT_FOUND, "the stream is no longer live", "stream not republished in time");
            }
            // Play.Stop is what librtmp (rtmpdump --stop) ends a download on.
            _ = sleep_until(until.unwrap_or_else(far_future)), if until.is_some() => {
                return io.close_with(Level::Status, STOP, "the requested play duration is over", "play duration reached");
            }
            _ = shutdown::draining(&mut shutdown) => {
                let description = match who {
                    Watcher::Viewer => "edge is shutting down; reconnect to continue",
                    Watcher::RelayPull => "edge is shutting down",
                };
                return io.close_with(Level::Status, STOP, description, "edge is shutting down");
            }
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + std::time::Duration::from_secs(86_400)
}
