//! The edge's media back to MPEG-TS, for players over SRT: FLV-style H.264, H.265 and AAC payloads
//! (what every stream carries, whatever its publisher's protocol) become PES packets in 188-byte
//! transport packets with PAT/PMT (repeated before every keyframe, so a player can start there),
//! PCR on the video PID, and per-PID continuity counters.
//!
//! H.264 length-prefixed NAL units become Annex B with an access unit delimiter, and SPS/PPS from
//! the last AVC sequence header before every keyframe (H.265 from Enhanced RTMP `hvc1` the same
//! way, with VPS/SPS/PPS from its HEVCDecoderConfigurationRecord); raw AAC gets an ADTS header from the last
//! AudioSpecificConfig. Timestamps: RTMP milliseconds × 90 plus a fixed offset, so PTS stays
//! above the PCR. Other codecs are left out (counted in `skipped`).

use bytes::{BufMut, Bytes, BytesMut};

use super::demux::PACKET;
use crate::media::{Media, MediaKind};

pub(crate) const PID_PMT: u16 = 0x1000;
pub(crate) const PID_VIDEO: u16 = 0x100;
pub(crate) const PID_AUDIO: u16 = 0x101;
/// Added to every timestamp (90 kHz): room below the first PTS for the PCR and decoders' delay.
const OFFSET_90K: u64 = 90_000;

#[derive(Default)]
pub(crate) struct Muxer {
    cc: [u8; 4],
    /// Parameter sets of the last video sequence header (AVC: SPS, PPS; HEVC: VPS, SPS, PPS),
    /// its NAL length size, and whether it is HEVC.
    avc: Option<(Vec<Bytes>, usize)>,
    hevc: bool,
    /// ADTS header fields from the last AudioSpecificConfig: (profile, sampling index, channels).
    aac: Option<(u8, u8, u8)>,
    tables_sent: bool,
    /// Messages that could not be muxed (other codecs, malformed payloads).
    pub(crate) skipped: u64,
}

impl Muxer {
    pub(crate) fn new() -> Muxer {
        Muxer::default()
    }

    /// Appends the transport packets of one message to `out` (nothing for configuration
    /// messages, which only update what later frames carry).
    pub(crate) fn push(&mut self, media: &Media, out: &mut BytesMut) {
        let p = &media.payload[..];
        match media.kind {
            MediaKind::Video => self.video(media.timestamp, p, out),
            MediaKind::Audio => self.audio(media.timestamp, p, out),
            MediaKind::Metadata | MediaKind::Data => {}
        }
    }

    fn video(&mut self, ts: u32, p: &[u8], out: &mut BytesMut) {
        // Enhanced RTMP HEVC (`hvc1`): SequenceStart, CodedFrames (with cts), CodedFramesX.
        if p.len() >= 5 && p[0] & 0x80 != 0 && &p[1..5] == b"hvc1" {
            let keyframe = (p[0] >> 4) & 0x07 == 1;
            match p[0] & 0x0F {
                0 => match parse_hvcc(&p[5..]) {
                    Some(c) => {
                        self.avc = Some(c);
                        self.hevc = true;
                        self.tables_sent = false;
                    }
                    None => self.skipped += 1,
                },
                1 if p.len() >= 8 => self.frame(ts, keyframe, si24(&p[5..8]), &p[8..], out),
                3 => self.frame(ts, keyframe, 0, &p[5..], out),
                _ => {}
            }
            return;
        }
        // Legacy FLV AVC: codec id 7, packet type 0 (sequence header) or 1 (NAL units).
        if p.len() < 5 || p[0] & 0x0F != 7 {
            self.skipped += 1;
            return;
        }
        if p[1] == 0 {
            match parse_avc_config(&p[5..]) {
                Some(c) => {
                    self.avc = Some(c);
                    self.hevc = false;
                    self.tables_sent = false;
                }
                None => self.skipped += 1,
            }
            return;
        }
        if p[1] == 1 {
            self.frame(ts, p[0] >> 4 == 1, si24(&p[2..5]), &p[5..], out);
        }
    }

    /// One video frame of length-prefixed NAL units as a PES packet in Annex B.
    fn frame(&mut self, ts: u32, keyframe: bool, cts: i32, nals: &[u8], out: &mut BytesMut) {
        let Some((params, len_size)) = &self.avc else { return };
        let mut es = BytesMut::with_capacity(nals.len() + 64);
        // Access unit delimiter (H.265: type 35; H.264: type 9).
        es.put_slice(if self.hevc { &[0, 0, 0, 1, 0x46, 0x01, 0x50] } else { &[0, 0, 0, 1, 0x09, 0xF0] });
        if keyframe {
            for nal in params {
                es.put_slice(&[0, 0, 0, 1]);
                es.put_slice(nal);
            }
        }
        let mut rest = nals;
        while rest.len() >= *len_size {
            let n = rest[..*len_size].iter().fold(0usize, |a, &b| a << 8 | b as usize);
            let Some(nal) = rest.get(*len_size..*len_size + n) else {
                self.skipped += 1;
                return;
            };
            es.put_slice(&[0, 0, 0, 1]);
            es.put_slice(nal);
            rest = &rest[*len_size + n..];
        }
        if keyframe || !self.tables_sent {
            self.tables(out);
        }
        let dts = ts as u64 * 90 + OFFSET_90K;
        let pts = (dts as i64 + cts as i64 * 90).max(0) as u64;
        self.pes(PID_VIDEO, 0xE0, pts, Some(dts), &es, Some(dts.saturating_sub(OFFSET_90K / 2) * 300), out);
    }

    fn audio(&mut self, ts: u32, p: &[u8], out: &mut BytesMut) {
        // AAC only: sound format 10.
        if p.len() < 2 || p[0] >> 4 != 10 {
            self.skipped += 1;
            return;
        }
        if p[1] == 0 {
            if p.len() < 4 {
                self.skipped += 1;
                return;
            }
            let object = p[2] >> 3;
            let sfi = ((p[2] & 0x07) << 1) | (p[3] >> 7);
            let channels = (p[3] >> 3) & 0x0F;
            self.aac = Some((object.saturating_sub(1).min(3), sfi, channels));
            self.tables_sent = false;
            return;
        }
        let Some((profile, sfi, channels)) = self.aac else { return };
        let raw = &p[2..];
        let len = raw.len() + 7;
        if len > 0x1FFF {
            self.skipped += 1;
            return;
        }
        if !self.tables_sent {
            self.tables(out);
        }
        let mut es = BytesMut::with_capacity(len);
        es.put_slice(&[
            0xFF,
            0xF1,
            (profile << 6) | (sfi << 2) | ((channels >> 2) & 1),
            ((channels & 3) << 6) | (len >> 11) as u8,
            (len >> 3) as u8,
            ((len & 7) << 5) as u8 | 0x1F,
            0xFC,
        ]);
        es.put_slice(raw);
        let pts = ts as u64 * 90 + OFFSET_90K;
        self.pes(PID_AUDIO, 0xC0, pts, None, &es, None, out);
    }

    fn next_cc(&mut self, pid: u16) -> u8 {
        let i = match pid {
            0 => 0,
            PID_PMT => 1,
            PID_VIDEO => 2,
            _ => 3,
        };
        let cc = self.cc[i];
        self.cc[i] = (cc + 1) & 0x0F;
        cc
    }

    fn tables(&mut self, out: &mut BytesMut) {
        let pat = [0x00, 0x01, 0xE0 | (PID_PMT >> 8) as u8, PID_PMT as u8];
        self.section(0, 0x00, &pat, out);
        let mut pmt = vec![0xE0 | (PID_VIDEO >> 8) as u8, PID_VIDEO as u8, 0xF0, 0x00];
        if self.avc.is_some() {
            let stream_type = if self.hevc { 0x24 } else { 0x1B };
            pmt.extend_from_slice(&[stream_type, 0xE0 | (PID_VIDEO >> 8) as u8, PID_VIDEO as u8, 0xF0, 0x00]);
        }
        if self.aac.is_some() {
            pmt.extend_from_slice(&[0x0F, 0xE0 | (PID_AUDIO >> 8) as u8, PID_AUDIO as u8, 0xF0, 0x00]);
        }
        self.section(PID_PMT, 0x02, &pmt, out);
        self.tables_sent = true;
    }

    /// One PSI section (program 1, version 0) in one packet.
    fn section(&mut self, pid: u16, table_id: u8, body: &[u8], out: &mut BytesMut) {
        let mut s = Vec::with_capacity(12 + body.len());
        let len = 5 + body.len() + 4;
        // Transport stream id (PAT) and program number (PMT) are both 1.
        s.extend_from_slice(&[table_id, 0xB0 | (len >> 8) as u8, len as u8, 0, 1, 0xC1, 0, 0]);
        s.extend_from_slice(body);
        let crc = crc32(&s);
        s.extend_from_slice(&crc.to_be_bytes());
        let cc = self.next_cc(pid);
        let start = out.len();
        out.put_slice(&[0x47, 0x40 | (pid >> 8) as u8, pid as u8, 0x10 | cc, 0]);
        out.put_slice(&s);
        out.resize(start + PACKET, 0xFF);
    }

    #[allow(clippy::too_many_arguments)]
    fn pes(
        &mut self,
        pid: u16,
        stream_id: u8,
        pts: u64,
        dts: Option<u64>,
        es: &[u8],
        pcr: Option<u64>,
        out: &mut BytesMut,
    ) {
        let mut header = BytesMut::with_capacity(19);
        let header_len = if dts.is_some() { 10 } else { 5 };
        let pes_len = if stream_id == 0xE0 { 0 } else { (3 + header_len + es.len()).min(0xFFFF) };
        header.put_slice(&[0, 0, 1, stream_id]);
        header.put_u16(pes_len as u16);
        header.put_u8(0x80);
        header.put_u8(if dts.is_some() { 0xC0 } else { 0x80 });
        header.put_u8(header_len as u8);
        header.put_slice(&timestamp(if dts.is_some() { 3 } else { 2 }, pts));
        if let Some(dts) = dts {
            header.put_slice(&timestamp(1, dts));
        }
        let total = header.len() + es.len();
        let mut written = 0;
        let mut first = true;
        while written < total {
            let cc = self.next_cc(pid);
            let start = out.len();
            out.put_slice(&[0x47, (if first { 0x40 } else { 0 }) | (pid >> 8) as u8, pid as u8]);
            let pcr_here = if first { pcr } else { None };
            let adaptation_min = if pcr_here.is_some() { 8 } else { 0 };
            let room = PACKET - 4 - adaptation_min;
            let left = total - written;
            if adaptation_min > 0 || left < room + adaptation_min.min(1) && left < PACKET - 4 {
                // Adaptation field: PCR and/or stuffing so the payload ends the packet.
                let payload = left.min(PACKET - 4 - adaptation_min.max(1));
                let af_len = PACKET - 4 - payload - 1;
                out.put_u8(0x30 | cc);
                out.put_u8(af_len as u8);
                if af_len > 0 {
                    out.put_u8(if pcr_here.is_some() { 0x10 } else { 0x00 });
                    let mut used = 1;
                    if let Some(pcr) = pcr_here {
                        let base = pcr / 300;
                        let ext = pcr % 300;
                        out.put_slice(&[
                            (base >> 25) as u8,
                            (base >> 17) as u8,
                            (base >> 9) as u8,
                            (base >> 1) as u8,
                            ((base & 1) << 7) as u8 | 0x7E | (ext >> 8) as u8,
                            ext as u8,
                        ]);
                        used += 6;
                    }
                    out.resize(out.len() + af_len - used, 0xFF);
                }
                put_range(out, &header, es, written, payload);
                written += payload;
            } else {
                out.put_u8(0x10 | cc);
                let payload = left.min(PACKET - 4);
                put_range(out, &header, es, written, payload);
                written += payload;
            }
            debug_assert_eq!(out.len() - start, PACKET);
            first = false;
        }
    }
}

/// Bytes `from..from + n` of `header` followed by `es`.
fn put_range(out: &mut BytesMut, header: &[u8], es: &[u8], from: usize, n: usize) {
    let end = from + n;
    if from < header.len() {
        out.put_slice(&header[from..end.min(header.len())]);
    }
    if end > header.len() {
        out.put_slice(&es[from.saturating_sub(header.len())..end - header.len()]);
    }
}

/// A signed 24-bit composition time.
fn si24(b: &[u8]) -> i32 {
    (((b[0] as i32) << 16 | (b[1] as i32) << 8 | b[2] as i32) << 8) >> 8
}

/// The parameter sets (VPS, SPS, PPS, in the record's order) of an
/// HEVCDecoderConfigurationRecord, and its NAL length size.
fn parse_hvcc(r: &[u8]) -> Option<(Vec<Bytes>, usize)> {
    let len_size = (*r.get(21)? & 0x03) as usize + 1;
    let arrays = *r.get(22)? as usize;
    let mut at = 23;
    let mut params = Vec::new();
    for _ in 0..arrays {
        let count = u16::from_be_bytes([*r.get(at + 1)?, *r.get(at + 2)?]) as usize;
        at += 3;
        for _ in 0..count {
            let n = u16::from_be_bytes([*r.get(at)?, *r.get(at + 1)?]) as usize;
            params.push(Bytes::copy_from_slice(r.get(at + 2..at + 2 + n)?));
            at += 2 + n;
        }
    }
    Some((params, len_size))
}

/// SPS and PPS of an AVCDecoderConfigurationRecord, and its NAL length size.
fn parse_avc_config(r: &[u8]) -> Option<(Vec<Bytes>, usize)> {
    let len_size = (*r.get(4)? & 0x03) as usize + 1;
    let mut params = Vec::new();
    let mut at = 5;
    for count_mask in [0x1F, 0xFF] {
        let count = (*r.get(at)? & count_mask) as usize;
        at += 1;
        for _ in 0..count {
            let n = u16::from_be_bytes([*r.get(at)?, *r.get(at + 1)?]) as usize;
            params.push(Bytes::copy_from_slice(r.get(at + 2..at + 2 + n)?));
            at += 2 + n;
        }
    }
    Some((params, len_size))
}

fn timestamp(prefix: u8, t: u64) -> [u8; 5] {
    let t = t & ((1 << 33) - 1);
    [
        prefix << 4 | (((t >> 30) & 0x07) as u8) << 1 | 1,
        (t >> 22) as u8,
        ((((t >> 15) & 0x7F) as u8) << 1) | 1,
        (t >> 7) as u8,
        (((t & 0x7F) as u8) << 1) | 1,
    ]
}

/// CRC-32/MPEG-2 of a PSI section.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= (b as u32) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 { (crc << 1) ^ 0x04C1_1DB7 } else { crc << 1 };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpegts::{demux::Demuxer, to_media::ToMedia};

    fn media(kind: MediaKind, timestamp: u32, payload: &[u8]) -> Media {
        Media { kind, timestamp, payload: Bytes::copy_from_slice(payload) }
    }

    #[test]
    fn muxed_media_demuxes_back_to_the_same_media() {
        let sps = [0x67, 0x64, 0x00, 0x1F, 0xAC, 0xD9];
        let pps = [0x68, 0xEE, 0x3C, 0x80];
        let config = [&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1F, 0xFF, 0xE1, 0, 6][..], &sps, &[1, 0, 4], &pps].concat();
        let big: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8 + 1).collect();
        let key = [&[0x17, 1, 0, 0, 40, 0, 0, 0x13, 0x88, 0x65][..], &big[1..]].concat();
        let inter = [0x27, 1, 0, 0, 0, 0, 0, 0, 3, 0x41, 7, 8];
        let asc = [0xAF, 0, 0x11, 0x90];
        let aac = [0xAF, 1, 9, 9, 9, 9];
        let input = vec![
            media(MediaKind::Video, 0, &config),
            media(MediaKind::Audio, 0, &asc),
            media(MediaKind::Video, 1000, &key),
            media(MediaKind::Audio, 1010, &aac),
            media(MediaKind::Video, 1040, &inter),
        ];
        let mut mux = Muxer::new();
        let mut ts = BytesMut::new();
        for m in &input {
            mux.push(m, &mut ts);
        }
        assert_eq!(ts.len() % PACKET, 0);
        assert_eq!(mux.skipped, 0);
        let mut demux = Demuxer::new(1 << 20);
        let mut pes = Vec::new();
        demux.push(&ts, &mut pes).unwrap();
        demux.flush(&mut pes);
        let mut conv = ToMedia::new();
        let mut out = Vec::new();
        for p in pes {
            conv.convert(p, &mut out).unwrap();
        }
        let of = |kind| -> Vec<(u32, &[u8])> {
            out.iter().filter(|m| m.kind == kind).map(|m| (m.timestamp, &m.payload[..])).collect()
        };
        // Sequence headers come back as they went in, rebuilt from the in-band parameter sets
        // and the ADTS headers. (The audio PES has a length, so it is out before the video PES
        // before it: the timeline starts at the audio's 1010 ms.)
        let video = of(MediaKind::Video);
        let audio = of(MediaKind::Audio);
        assert_eq!(video.iter().map(|v| v.1).collect::<Vec<_>>(), vec![&config[..], &key[..], &inter[..]]);
        assert_eq!(audio, vec![(0, &asc[..]), (0, &aac[..])]);
        assert_eq!(video[2].0, 30, "the inter frame 30 ms after the audio");
        assert_eq!(out.len(), 5);
    }

    #[test]
    fn crc_matches_a_known_pat() {
        // A PAT as ffmpeg writes it (program 1 on PID 0x1000); its CRC is 0x2AB104B2.
        let pat = [0x00, 0xB0, 0x0D, 0x00, 0x01, 0xC1, 0x00, 0x00, 0x00, 0x01, 0xF0, 0x00];
        assert_eq!(crc32(&pat), 0x2AB1_04B2);
    }

    #[test]
    fn other_codecs_are_skipped_not_muxed() {
        let mut mux = Muxer::new();
        let mut ts = BytesMut::new();
        mux.push(&media(MediaKind::Video, 0, &[0x1C, 0, 0, 0, 0]), &mut ts);
        mux.push(&media(MediaKind::Audio, 0, &[0x2F, 1, 2]), &mut ts);
        assert!(ts.is_empty());
        assert_eq!(mux.skipped, 2);
    }
}
