//! What a publisher sends, independent of the protocol it arrived over, and the form players
//! share it in:
//!
//! - [`message`]: one media message as a protocol hands it on ([`Media`]);
//! - [`codec`]: FLV tag inspection (keyframes, decoder configuration slots, Enhanced RTMP
//!   FourCC and multitrack);
//! - [`describe`]: what configuration packets and `onMetaData` say (resolution, profile, sample
//!   rate, channels, announced frame rate and bitrates);
//! - [`frame`]: a message with its RTMP chunk headers, shared by every player.
//!
//! A new ingest protocol produces [`Media`]; everything from here up is unchanged.

pub(crate) mod bits;
pub(crate) mod codec;
pub(crate) mod describe;
pub(crate) use codec::ConfigSlot;
mod frame;
mod message;

pub(crate) use frame::{DEFAULT_STREAM_ID, Frame, FrameKind, Pieces};
pub use message::{Media, MediaKind};
