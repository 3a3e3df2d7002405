//! Where the published media comes from. A [`plan::MediaPlan`] is what a publisher loops over; it
//! is built from an FLV file (given with `--flv`, or generated once with ffmpeg and cached) or from
//! synthetic frames (tests). Each coded video frame gets a content [`marker`] at send time.

pub mod flv;
pub mod generate;
pub mod marker;
pub mod plan;
pub mod synthetic;
