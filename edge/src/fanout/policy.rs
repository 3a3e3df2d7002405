//! The fan-out's policy, as decisions over a player's queue: which frame a player too slow for
//! its stream still gets (the drop policy) and which audio may wait for the next video frame
//! (the audio hold). The [outbox](super::outbox) keeps the books and applies them; the rules
//! and their reasons are here.

use crate::media::{Frame, FrameKind};

/// Most audio messages queued in a row without waking the writer (see the module docs): AAC
/// frames come every 21-23 ms and video frames every 33-40 ms, so normally at most two audio
/// messages fall between two video frames.
pub(crate) const MAX_HELD_AUDIO: u8 = 2;

/// Whether `frame` goes into a queue with `pending` unwritten bytes under the bound `max`, for a
/// player that is `skipping` (dropping until the next keyframe) or not.
pub(super) fn accepts(frame: &Frame, pending: usize, max: usize, skipping: bool) -> bool {
    let len = frame.wire_len();
    let fits = pending + len <= max;
    if frame.essential {
        // Tiny and needed to decode anything after them; bounded by the hard cap below.
        pending + len <= max.saturating_mul(2)
    } else if skipping {
        // Resume at a keyframe that fits (or any keyframe once the queue has drained).
        frame.keyframe && (fits || pending == 0)
    } else {
        fits || pending == 0
    }
}

/// Whether `frame` may wait for the next video frame instead of being due now: audio of a
/// player that has been offered video, at most [`MAX_HELD_AUDIO`] in a row. Players buffer far
/// more than a frame of audio, and the wait halves the writes per player.
pub(super) fn holds(frame: &Frame, hold_audio: bool, has_video: bool, held: u8) -> bool {
    frame.kind == FrameKind::Audio && !frame.essential && hold_audio && has_video && held < MAX_HELD_AUDIO
}

/// Whether `frame` is the kind whose arrival lets this player's audio wait from now on.
pub(super) fn starts_video(frame: &Frame) -> bool {
    frame.kind == FrameKind::Video && !frame.essential
}
