//! PES packets to the edge's media model: FLV-style video and audio payloads with RTMP
//! millisecond timestamps, exactly what an RTMP encoder would have sent for the same frames.
//!
//! - H.264: Annex B (start codes) → 4-byte length-prefixed NAL units; SPS/PPS become an
//!   `AVCDecoderConfigurationRecord` sent as a sequence header whenever they change; access
//!   unit delimiters and in-band parameter sets are left out of frames.
//! - H.265: the same, as Enhanced RTMP `hvc1` (what ffmpeg 6.1+ and OBS 29.1+ send over RTMP):
//!   a `SequenceStart` with an HEVCDecoderConfigurationRecord from VPS/SPS/PPS, `CodedFrames`.
//! - AAC: each ADTS frame → the raw frame, after an `AudioSpecificConfig` sequence header.
//! - Time: DTS is the timestamp, PTS − DTS the composition offset. 90 kHz timestamps are
//!   unwrapped across the 33-bit wrap (26.5 hours) on one clock shared by both tracks, and a jump
//!   of more than [`MAX_JUMP`] (a discontinuity: encoder restart, splice) continues the timeline
//!   where it was instead of jumping.

use bytes::{BufMut, Bytes, BytesMut};

use super::demux::{Codec, Pes};
use crate::media::{
    Media, MediaKind,
    bits::{Bits, unescape},
};

const WRAP: i64 = 1 << 33;
/// A timestamp step larger than this (either way) is a discontinuity, not time passing.
const MAX_JUMP: i64 = 10 * 90_000;

/// One shared 90 kHz clock: raw 33-bit values in, monotonic-ish milliseconds out.
#[derive(Debug, Default)]
struct Clock {
    last_raw: Option<i64>,
    /// Unwrapped 90 kHz time of `last_raw` on the output timeline.
    now: i64,
}

impl Clock {
    /// The unwrapped time of `raw` (90 kHz) relative to the first timestamp seen.
    fn unwrap(&mut self, raw: u64, discontinuity: bool) -> i64 {
        let raw = raw as i64 & (WRAP - 1);
        let Some(last) = self.last_raw else {
            self.last_raw = Some(raw);
            return self.now;
        };
        // The step, as the shortest way round the 33-bit circle.
        let mut delta = (raw - last).rem_euclid(WRAP);
        if delta >= WRAP / 2 {
            delta -= WRAP;
        }
        if discontinuity || delta.abs() > MAX_JUMP {
            delta = 0;
        }
        self.last_raw = Some(raw);
        self.now += delta;
        self.now
    }
}

/// 90 kHz → RTMP milliseconds (32 bits, as RTMP timestamps wrap too); early frames before the
/// first one clamp to 0.
fn to_ms(t90: i64) -> u32 {
    (t90.max(0) / 90) as u32
}

/// Why a feed's media could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MediaError {
    #[error("malformed ADTS header")]
    Adts,
}

/// Converts one feed's PES packets; keeps what the sequence headers need.
#[derive(Default)]
pub(crate) struct ToMedia {
    clock: Clock,
    avc_config: Option<Bytes>,
    aac_config: Option<[u8; 2]>,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    hevc_config: Option<Bytes>,
    vps: Option<Bytes>,
    hevc_sps: Option<Bytes>,
    hevc_pps: Option<Bytes>,
}

impl ToMedia {
    pub(crate) fn new() -> ToMedia {
        ToMedia::default()
    }

    pub(crate) fn convert(&mut self, pes: Pes, out: &mut Vec<Media>) -> Result<(), MediaError> {
        let dts = self.clock.unwrap(pes.dts, pes.discontinuity);
        let mut cts = (pes.pts as i64 - pes.dts as i64).rem_euclid(WRAP);
        if cts >= WRAP / 2 {
            cts -= WRAP;
        }
        let cts_ms = (cts / 90).clamp(0, 0x7F_FFFF) as u32;
        match pes.codec {
            Codec::H264 => {
                self.h264(&pes.data, to_ms(dts), cts_ms, out);
                Ok(())
            }
            Codec::Aac => self.aac(&pes.data, dts, out),
            Codec::H265 => {
                self.h265(&pes.data, to_ms(dts), cts_ms, out);
                Ok(())
            }
        }
    }

    fn h264(&mut self, data: &[u8], ts: u32, cts: u32, out: &mut Vec<Media>) {
        let mut nals: Vec<&[u8]> = Vec::new();
        let mut keyframe = false;
        let mut params_changed = false;
        for nal in annex_b(data) {
            match nal[0] & 0x1F {
                7 => params_changed |= replace(&mut self.sps, nal),
                8 => params_changed |= replace(&mut self.pps, nal),
                9 => {}
                t => {
                    keyframe |= t == 5;
                    nals.push(nal);
                }
            }
        }
        if (params_changed || self.avc_config.is_none())
            && let (Some(sps), Some(pps)) = (&self.sps, &self.pps)
            && sps.len() >= 4
        {
            let mut rec = BytesMut::with_capacity(16 + sps.len() + pps.len());
            rec.put_slice(&[0x17, 0, 0, 0, 0]);
            rec.put_slice(&[1, sps[1], sps[2], sps[3], 0xFF, 0xE1]);
            rec.put_u16(sps.len() as u16);
            rec.put_slice(sps);
            rec.put_u8(1);
            rec.put_u16(pps.len() as u16);
            rec.put_slice(pps);
            let rec = rec.freeze();
            if self.avc_config.as_ref() != Some(&rec) {
                self.avc_config = Some(rec.clone());
                out.push(Media { kind: MediaKind::Video, timestamp: ts, payload: rec });
            }
        }
        // Frames before the decoder configuration could not be decoded by anyone.
        if self.avc_config.is_none() || nals.is_empty() {
            return;
        }
        let size: usize = nals.iter().map(|n| 4 + n.len()).sum();
        let mut tag = BytesMut::with_capacity(5 + size);
        tag.put_u8(if keyframe { 0x17 } else { 0x27 });
        tag.put_u8(1);
        tag.put_slice(&cts.to_be_bytes()[1..]);
        for n in nals {
            tag.put_u32(n.len() as u32);
            tag.put_slice(n);
        }
        out.push(Media { kind: MediaKind::Video, timestamp: ts, payload: tag.freeze() });
    }

    /// H.265 as Enhanced RTMP `hvc1`: a `SequenceStart` with an HEVCDecoderConfigurationRecord
    /// from VPS/SPS/PPS, then `CodedFrames` with the composition offset.
    fn h265(&mut self, data: &[u8], ts: u32, cts: u32, out: &mut Vec<Media>) {
        let mut nals: Vec<&[u8]> = Vec::new();
        let mut keyframe = false;
        let mut params_changed = false;
        for nal in annex_b(data) {
            if nal.len() < 2 {
                continue;
            }
            match (nal[0] >> 1) & 0x3F {
                32 => params_changed |= replace(&mut self.vps, nal),
                33 => params_changed |= replace(&mut self.hevc_sps, nal),
                34 => params_changed |= replace(&mut self.hevc_pps, nal),
                35 => {}
                t => {
                    // IRAP pictures (BLA, IDR, CRA) start a decodable sequence.
                    keyframe |= (16..=21).contains(&t);
                    nals.push(nal);
                }
            }
        }
        if (params_changed || self.hevc_config.is_none())
            && let (Some(vps), Some(sps), Some(pps)) = (&self.vps, &self.hevc_sps, &self.hevc_pps)
            && let Some(record) = hevc_record(vps, sps, pps)
        {
            let mut tag = BytesMut::with_capacity(5 + record.len());
            tag.put_u8(0x80 | (1 << 4));
            tag.put_slice(b"hvc1");
            tag.put_slice(&record);
            let tag = tag.freeze();
            if self.hevc_config.as_ref() != Some(&tag) {
                self.hevc_config = Some(tag.clone());
                out.push(Media { kind: MediaKind::Video, timestamp: ts, payload: tag });
            }
        }
        if self.hevc_config.is_none() || nals.is_empty() {
            return;
        }
        let size: usize = nals.iter().map(|n| 4 + n.len()).sum();
        let mut tag = BytesMut::with_capacity(8 + size);
        tag.put_u8(0x80 | if keyframe { 1 << 4 } else { 2 << 4 } | 1);
        tag.put_slice(b"hvc1");
        tag.put_slice(&cts.to_be_bytes()[1..]);
        for n in nals {
            tag.put_u32(n.len() as u32);
            tag.put_slice(n);
        }
        out.push(Media { kind: MediaKind::Video, timestamp: ts, payload: tag.freeze() });
    }

    fn aac(&mut self, mut data: &[u8], dts: i64, out: &mut Vec<Media>) -> Result<(), MediaError> {
        let mut index: i64 = 0;
        while !data.is_empty() {
            if data.len() < 7 || data[0] != 0xFF || data[1] & 0xF0 != 0xF0 {
                return Err(MediaError::Adts);
            }
            let protection_absent = data[1] & 1 == 1;
            let profile = data[2] >> 6;
            let sfi = (data[2] >> 2) & 0x0F;
            let channels = ((data[2] & 1) << 2) | (data[3] >> 6);
            let len = (((data[3] & 0x03) as usize) << 11) | ((data[4] as usize) << 3) | ((data[5] as usize) >> 5);
            let header = if protection_absent { 7 } else { 9 };
            let rate = sample_rate(sfi).ok_or(MediaError::Adts)?;
            if len < header || len > data.len() {
                return Err(MediaError::Adts);
            }
            let object = profile + 1;
            let asc = [(object << 3) | (sfi >> 1), ((sfi & 1) << 7) | (channels << 3)];
            // One ADTS frame is 1024 samples; frames after the first in a PES follow at that pace.
            let ts = to_ms(dts + index * 1024 * 90_000 / rate as i64);
            if self.aac_config != Some(asc) {
                self.aac_config = Some(asc);
                out.push(Media {
                    kind: MediaKind::Audio,
                    timestamp: ts,
                    payload: Bytes::copy_from_slice(&[0xAF, 0, asc[0], asc[1]]),
                });
            }
            let mut tag = BytesMut::with_capacity(2 + len - header);
            tag.put_slice(&[0xAF, 1]);
            tag.put_slice(&data[header..len]);
            out.push(Media { kind: MediaKind::Audio, timestamp: ts, payload: tag.freeze() });
            data = &data[len..];
            index += 1;
        }
        Ok(())
    }
}

/// An HEVCDecoderConfigurationRecord (ISO/IEC 14496-15) with one VPS, SPS and PPS. Profile,
/// tier and level come from the SPS's profile_tier_level, chroma format and bit depths from the
/// SPS itself (defaults 4:2:0, 8 bits when the SPS has sub-layers: decoders read the parameter
/// sets anyway). None for an SPS too short to hold a profile_tier_level.
fn hevc_record(vps: &[u8], sps: &[u8], pps: &[u8]) -> Option<Vec<u8>> {
    let rbsp = unescape(sps.get(2..)?);
    let max_sub_layers_minus1 = (rbsp.first()? >> 1) & 0x07;
    let nested = rbsp.first()? & 1;
    let ptl = rbsp.get(1..13)?;
    let (mut chroma, mut luma8, mut chroma8) = (1u32, 0u32, 0u32);
    if max_sub_layers_minus1 == 0
        && let Some(rest) = rbsp.get(13..)
    {
        let mut bits = Bits::new(rest);
        let parsed = (|| {
            bits.ue()?; // sps_seq_parameter_set_id
            let c = bits.ue()?;
            if c == 3 {
                bits.bit()?;
            }
            bits.ue()?;
            bits.ue()?; // width, height
            if bits.bit()? == 1 {
                for _ in 0..4 {
                    bits.ue()?;
                }
            }
            Some((c, bits.ue()?, bits.ue()?))
        })();
        if let Some((c, l, ch)) = parsed {
            (chroma, luma8, chroma8) = (c.min(3), l.min(7), ch.min(7));
        }
    }
    let mut r = Vec::with_capacity(40 + vps.len() + sps.len() + pps.len());
    r.push(1);
    r.extend_from_slice(ptl);
    r.extend_from_slice(&[0xF0, 0x00, 0xFC, 0xFC | chroma as u8, 0xF8 | luma8 as u8, 0xF8 | chroma8 as u8, 0, 0]);
    r.push(((max_sub_layers_minus1 + 1) << 3) | (nested << 2) | 3);
    r.push(3);
    for (nal_type, nal) in [(32u8, vps), (33, sps), (34, pps)] {
        r.push(0x80 | nal_type);
        r.extend_from_slice(&1u16.to_be_bytes());
        r.extend_from_slice(&(nal.len() as u16).to_be_bytes());
        r.extend_from_slice(nal);
    }
    Some(r)
}

fn replace(slot: &mut Option<Bytes>, nal: &[u8]) -> bool {
    if slot.as_deref() == Some(nal) {
        return false;
    }
    *slot = Some(Bytes::copy_from_slice(nal));
    true
}

fn sample_rate(sfi: u8) -> Option<u32> {
    const RATES: [u32; 13] = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];
    RATES.get(sfi as usize).copied()
}

/// The NAL units of an Annex B byte stream (start codes of 3 or 4 bytes; empty units skipped).
pub(crate) fn annex_b(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        loop {
            let start = find_start_code(rest)?;
            let body = &rest[start..];
            let end = find_start_code_at(body).unwrap_or(body.len());
            // Trailing zero bytes belong to the next start code (4-byte form).
            let mut nal = &body[..end];
            while let [head @ .., 0] = nal {
                nal = head;
            }
            rest = &body[end..];
            if !nal.is_empty() {
                return Some(nal);
            }
            if rest.is_empty() {
                return None;
            }
        }
    })
}

/// The offset just past the first start code.
fn find_start_code(data: &[u8]) -> Option<usize> {
    data.windows(3).position(|w| w == [0, 0, 1]).map(|p| p + 3)
}

/// Where the next start code begins (its first zero).
fn find_start_code_at(data: &[u8]) -> Option<usize> {
    data.windows(3).position(|w| w == [0, 0, 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pes(codec: Codec, pts: u64, dts: u64, data: &[u8]) -> Pes {
        Pes { codec, pts, dts, data: Bytes::copy_from_slice(data), discontinuity: false }
    }

    const SPS: &[u8] = &[0x67, 0x64, 0x00, 0x1F, 0xAC];
    const PPS: &[u8] = &[0x68, 0xEE, 0x3C];

    #[test]
    fn h264_annex_b_becomes_a_sequence_header_and_length_prefixed_frames() {
        let mut c = ToMedia::new();
        let mut out = Vec::new();
        let au =
            [&[0, 0, 0, 1, 0x09, 0xF0][..], &[0, 0, 0, 1], SPS, &[0, 0, 1], PPS, &[0, 0, 1, 0x65, 1, 2, 3]].concat();
        c.convert(pes(Codec::H264, 93_000, 90_000, &au), &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(
            &out[0].payload[..],
            &[&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1F, 0xFF, 0xE1, 0, 5][..], SPS, &[1, 0, 3], PPS].concat()[..]
        );
        // cts 3000/90 = 33 ms; one NAL with a 4-byte length; AUD, SPS and PPS left out.
        assert_eq!(&out[1].payload[..], &[0x17, 1, 0, 0, 33, 0, 0, 0, 4, 0x65, 1, 2, 3]);
        assert_eq!((out[0].timestamp, out[1].timestamp), (0, 0));
        out.clear();
        // Unchanged parameter sets: no new sequence header; an inter frame 40 ms later.
        let p = [&[0, 0, 1], SPS, &[0, 0, 1], PPS, &[0, 0, 1, 0x41, 9]].concat();
        c.convert(pes(Codec::H264, 93_600, 93_600, &p), &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0].payload[..], &[0x27, 1, 0, 0, 0, 0, 0, 0, 2, 0x41, 9]);
        assert_eq!(out[0].timestamp, 40);
    }

    #[test]
    fn frames_before_the_parameter_sets_are_not_sent() {
        let mut c = ToMedia::new();
        let mut out = Vec::new();
        c.convert(pes(Codec::H264, 0, 0, &[0, 0, 1, 0x41, 1]), &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn adts_frames_become_raw_aac_after_one_audio_specific_config() {
        let mut c = ToMedia::new();
        let mut out = Vec::new();
        // AAC LC (profile 1), 48 kHz (index 3), stereo; two frames of 3 payload bytes.
        let frame = |b: u8| {
            let len = 10u16;
            vec![
                0xFF,
                0xF1,
                0x4C,
                0x80 | (len >> 11) as u8,
                (len >> 3) as u8,
                ((len & 7) << 5) as u8 | 0x1F,
                0xFC,
                b,
                b,
                b,
            ]
        };
        let data = [frame(1), frame(2)].concat();
        c.convert(pes(Codec::Aac, 90_000, 90_000, &data), &mut out).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(&out[0].payload[..], &[0xAF, 0, 0x11, 0x90], "AAC LC, 48 kHz, 2 channels");
        assert_eq!(&out[1].payload[..], &[0xAF, 1, 1, 1, 1]);
        assert_eq!(&out[2].payload[..], &[0xAF, 1, 2, 2, 2]);
        assert_eq!((out[1].timestamp, out[2].timestamp), (0, 21), "1024 samples at 48 kHz");
        assert_eq!(c.convert(pes(Codec::Aac, 0, 0, &[0xFF, 0xF1, 0, 0]), &mut out), Err(MediaError::Adts));
    }

    #[test]
    fn the_clock_unwraps_33_bits_and_bridges_discontinuities() {
        let mut clock = Clock::default();
        let near_wrap = (1u64 << 33) - 90_000;
        assert_eq!(clock.unwrap(near_wrap, false), 0);
        assert_eq!(clock.unwrap(45_000, false), 135_000, "1.5 s later, across the wrap");
        assert_eq!(clock.unwrap(36_000, false), 126_000, "a B-frame's slightly earlier DTS stays near");
        assert_eq!(clock.unwrap(500_000_000, false), 126_000, "a jump of hours continues the timeline");
        assert_eq!(clock.unwrap(500_090_000, false), 216_000);
        assert_eq!(clock.unwrap(7, true), 216_000, "a flagged discontinuity too");
        assert_eq!(to_ms(216_000), 2400);
        assert_eq!(to_ms(-5), 0);
    }

    #[test]
    fn hevc_parameter_sets_become_an_hvcc_record_in_an_hvc1_sequence_start() {
        // Parameter sets in the shape x265 writes for Main 4:2:0 8-bit, level 2.0 (hand-made: the
        // record's fields must come from the SPS's profile_tier_level).
        let vps = [
            0x40, 0x01, 0x0C, 0x01, 0xFF, 0xFF, 0x01, 0x60, 0, 0, 3, 0, 0x90, 0, 0, 3, 0, 0, 3, 0, 0x3C, 0x95, 0x94,
            0x09,
        ];
        let sps = [
            0x42, 0x01, 0x01, 0x01, 0x60, 0, 0, 3, 0, 0x90, 0, 0, 3, 0, 0, 3, 0, 0x3C, 0xA0, 0x0A, 0x08, 0x0F, 0x16,
            0x59, 0x59, 0x52, 0x93, 0x0B, 0xC0, 0x5A, 0x02, 0, 0, 3, 0, 2, 0, 0, 3, 0, 0x32, 0x10,
        ];
        let pps = [0x44, 0x01, 0xC1, 0x72, 0xB4, 0x62, 0x40];
        let au = [&[0, 0, 0, 1][..], &vps, &[0, 0, 0, 1], &sps, &[0, 0, 0, 1], &pps, &[0, 0, 0, 1, 0x26, 0x01, 0xAF]]
            .concat();
        let mut c = ToMedia::new();
        let mut out = Vec::new();
        c.convert(pes(Codec::H265, 0, 0, &au), &mut out).unwrap();
        assert_eq!(out.len(), 2);
        let start = &out[0].payload;
        assert_eq!(&start[..5], &[0x90, b'h', b'v', b'c', b'1'], "keyframe, SequenceStart, hvc1");
        let rec = &start[5..];
        assert_eq!(rec[0], 1);
        assert_eq!(rec[1], 0x01, "general profile space 0, main tier, profile 1 (Main)");
        assert_eq!(rec[12], 0x3C, "level 60 (2.0)");
        assert_eq!(&rec[16..19], &[0xFC | 1, 0xF8, 0xF8], "4:2:0, 8-bit luma and chroma");
        assert_eq!(rec[21] & 3, 3, "4-byte NAL lengths");
        assert_eq!(rec[22], 3, "VPS, SPS, PPS arrays");
        let frame = &out[1].payload;
        assert_eq!(&frame[..8], &[0x91, b'h', b'v', b'c', b'1', 0, 0, 0], "keyframe CodedFrames, cts 0");
        assert_eq!(&frame[8..], &[0, 0, 0, 3, 0x26, 0x01, 0xAF]);
    }

    #[test]
    fn annex_b_splits_on_both_start_code_lengths() {
        let data = [0, 0, 0, 1, 0x67, 1, 0, 0, 1, 0x68, 2, 0, 0, 0, 1, 0x65, 3, 0];
        let nals: Vec<&[u8]> = annex_b(&data).collect();
        assert_eq!(nals, vec![&[0x67, 1][..], &[0x68, 2], &[0x65, 3]]);
        assert_eq!(annex_b(&[1, 2, 3]).count(), 0);
    }
}
