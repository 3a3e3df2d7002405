//! A media plan: the codec headers and metadata sent once after `Publish.Start`, then the frames
//! a publisher sends in a loop, each loop's timestamps shifted by the loop length so the stream
//! looks continuous to a server.

use bytes::Bytes;

use super::flv::{self, FlvTag, TagKind};

/// One audio or video frame of the loop.
#[derive(Debug, Clone)]
pub struct PlanFrame {
    pub kind: TagKind,
    /// Milliseconds from the loop's first frame.
    pub offset_ms: u32,
    pub data: Bytes,
    pub keyframe: bool,
}

/// What a publisher sends.
#[derive(Debug, Clone)]
pub struct MediaPlan {
    /// FLV script body (`onMetaData`, ...), sent as `@setDataFrame`.
    pub metadata: Option<Bytes>,
    pub video_header: Bytes,
    pub audio_header: Option<Bytes>,
    /// Starts with a video keyframe.
    pub frames: Vec<PlanFrame>,
    /// Length of one loop in milliseconds (last offset plus one frame interval).
    pub loop_ms: u32,
    /// Distance between keyframes in milliseconds (the first two; 0 if there is only one).
    pub gop_ms: u32,
    /// Video frames per second, from the video frame spacing.
    pub fps: f64,
}

impl MediaPlan {
    /// Builds a plan from FLV tags: H.264 video with 4-byte NAL lengths is required (the marker
    /// is an H.264 NAL unit), audio is optional. Frames before the first keyframe are dropped so
    /// every loop starts with a keyframe.
    pub fn from_tags(tags: &[FlvTag]) -> Result<Self, String> {
        let metadata = tags.iter().find(|t| t.kind == TagKind::Script).map(|t| t.data.clone());
        let video_header = tags
            .iter()
            .find(|t| t.kind == TagKind::Video && flv::is_avc_sequence_header(&t.data))
            .map(|t| t.data.clone())
            .ok_or("no H.264 (AVC) sequence header: the file must contain H.264 video")?;
        // avcC starts at byte 5 of the body; its byte 4 holds lengthSizeMinusOne.
        match video_header.get(9) {
            Some(b) if b & 3 == 3 => {}
            Some(b) => return Err(format!("H.264 NAL length size {} is not supported (need 4)", (b & 3) + 1)),
            None => return Err("AVC sequence header is too short".into()),
        }
        let audio_header = tags
            .iter()
            .find(|t| t.kind == TagKind::Audio && flv::is_aac_sequence_header(&t.data))
            .map(|t| t.data.clone());
        let first_key = tags
            .iter()
            .position(|t| {
                t.kind == TagKind::Video && !flv::is_avc_sequence_header(&t.data) && flv::is_video_keyframe(&t.data)
            })
            .ok_or("no H.264 keyframe")?;
        let base = tags[first_key].timestamp_ms;
        let frames: Vec<PlanFrame> = tags[first_key..]
            .iter()
            .filter(|t| match t.kind {
                TagKind::Video => !flv::is_avc_sequence_header(&t.data) && t.data.len() > 5 && t.data[1] == 1,
                TagKind::Audio => !flv::is_aac_sequence_header(&t.data),
                TagKind::Script => false,
            })
            .filter(|t| t.timestamp_ms >= base)
            .map(|t| PlanFrame {
                kind: t.kind,
                offset_ms: t.timestamp_ms - base,
                data: t.data.clone(),
                keyframe: t.kind == TagKind::Video && flv::is_video_keyframe(&t.data),
            })
            .collect();
        Self::from_frames(metadata, video_header, audio_header, frames)
    }

    /// Assembles a plan from frames already relative to the loop start.
    pub fn from_frames(
        metadata: Option<Bytes>,
        video_header: Bytes,
        audio_header: Option<Bytes>,
        frames: Vec<PlanFrame>,
    ) -> Result<Self, String> {
        let video: Vec<&PlanFrame> = frames.iter().filter(|f| f.kind == TagKind::Video).collect();
        if video.len() < 2 {
            return Err("fewer than two video frames".into());
        }
        let mut deltas: Vec<u32> =
            video.windows(2).map(|w| w[1].offset_ms.saturating_sub(w[0].offset_ms)).filter(|d| *d > 0).collect();
        deltas.sort_unstable();
        let interval = deltas.get(deltas.len() / 2).copied().unwrap_or(33).max(1);
        let last = frames.iter().map(|f| f.offset_ms).max().unwrap_or(0);
        let keys: Vec<u32> = video.iter().filter(|f| f.keyframe).map(|f| f.offset_ms).collect();
        let gop_ms = if keys.len() >= 2 { keys[1] - keys[0] } else { 0 };
        let fps = video.len() as f64 * 1000.0 / f64::from(last + interval);
        Ok(MediaPlan { metadata, video_header, audio_header, frames, loop_ms: last + interval, gop_ms, fps })
    }

    /// Average bitrate of the loop's audio and video payloads, in bits per second.
    pub fn bitrate_bps(&self) -> f64 {
        let bytes: usize = self.frames.iter().map(|f| f.data.len()).sum();
        bytes as f64 * 8.0 * 1000.0 / f64::from(self.loop_ms.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(kind: TagKind, ts: u32, data: &[u8]) -> FlvTag {
        FlvTag { kind, timestamp_ms: ts, data: Bytes::copy_from_slice(data) }
    }

    #[test]
    fn builds_a_loop_starting_at_the_first_keyframe() {
        let avcc = [0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff, 0xe1];
        let tags = vec![
            t(TagKind::Script, 0, b"meta"),
            t(TagKind::Video, 0, &avcc),
            t(TagKind::Audio, 0, &[0xaf, 0, 0x11]),
            t(TagKind::Video, 0, &[0x27, 1, 0, 0, 0, 9]), // before the first keyframe: dropped
            t(TagKind::Video, 40, &[0x17, 1, 0, 0, 0, 9]),
            t(TagKind::Audio, 41, &[0xaf, 1, 1]),
            t(TagKind::Video, 80, &[0x27, 1, 0, 0, 0, 9]),
            t(TagKind::Video, 120, &[0x17, 1, 0, 0, 0, 9]),
        ];
        let plan = MediaPlan::from_tags(&tags).unwrap();
        assert_eq!(plan.metadata.as_deref(), Some(&b"meta"[..]));
        assert_eq!(plan.audio_header.as_deref(), Some(&[0xaf, 0, 0x11][..]));
        let offsets: Vec<_> = plan.frames.iter().map(|f| (f.kind, f.offset_ms, f.keyframe)).collect();
        assert_eq!(
            offsets,
            [
                (TagKind::Video, 0, true),
                (TagKind::Audio, 1, false),
                (TagKind::Video, 40, false),
                (TagKind::Video, 80, true)
            ]
        );
        assert_eq!(plan.loop_ms, 120);
        assert_eq!(plan.gop_ms, 80);
        assert!((plan.fps - 25.0).abs() < 1e-9);
    }

    #[test]
    fn refuses_media_without_h264_or_with_short_nal_lengths() {
        let err = MediaPlan::from_tags(&[t(TagKind::Audio, 0, &[0xaf, 0])]).unwrap_err();
        assert!(err.contains("H.264"), "{err}");
        let two_byte_lengths = [0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xfd];
        let err = MediaPlan::from_tags(&[t(TagKind::Video, 0, &two_byte_lengths)]).unwrap_err();
        assert!(err.contains("NAL length size 2"), "{err}");
    }
}
