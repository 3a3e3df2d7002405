//! MPEG-TS, the payload of SRT: [`demux`] reads transport packets into PES packets (PAT, PMT,
//! PES reassembly, PTS/DTS; bounded), [`to_media`] turns them into the edge's
//! [`Media`](crate::media::Media) (FLV-style payloads with sequence headers, RTMP timestamps
//! with composition offsets, 33-bit wrap and discontinuities). Sans-IO: bytes in, media out.
//! Ours rather than a crate's: the conversion to FLV payloads is most of the work, and a demuxer
//! this small is easy to bound and to fuzz (`edge/tests/fuzz_corpus.rs`).

pub(crate) mod demux;
pub(crate) mod mux;
pub(crate) mod to_media;

mod fuzz;

pub use fuzz::feed as fuzz_feed;
