//! MPEG-TS packets to PES packets of the program's first video and first audio stream. Only
//! what an SRT contribution feed needs: the PAT, the first program's PMT, and PES reassembly
//! with PTS/DTS. Every length is checked before use and every buffer is bounded, so a hostile
//! or broken feed ends in a [`TsError`] (its own connection closes), never a panic or an
//! unbounded allocation.

use bytes::{Bytes, BytesMut};

pub(crate) const PACKET: usize = 188;
const SYNC: u8 = 0x47;
const PID_PAT: u16 = 0;
/// Bytes of garbage tolerated while looking for sync before the feed counts as not MPEG-TS.
const MAX_RESYNC: usize = 4 * PACKET;

/// Elementary stream codecs this demuxer hands on (from the PMT's `stream_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    H264,
    H265,
    /// AAC in ADTS frames.
    Aac,
}

impl Codec {
    fn from_stream_type(t: u8) -> Option<Codec> {
        match t {
            0x1B => Some(Codec::H264),
            0x24 => Some(Codec::H265),
            0x0F => Some(Codec::Aac),
            _ => None,
        }
    }

    pub(crate) fn is_video(self) -> bool {
        matches!(self, Codec::H264 | Codec::H265)
    }
}

/// One reassembled PES packet: 90 kHz timestamps as carried (33 bits, not yet unwrapped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pes {
    pub(crate) codec: Codec,
    pub(crate) pts: u64,
    pub(crate) dts: u64,
    pub(crate) data: Bytes,
    /// The sender flagged a discontinuity (adaptation field) at this PES, or packets of it
    /// were lost before it: timestamps may jump.
    pub(crate) discontinuity: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TsError {
    #[error("not MPEG-TS: no sync byte in {0} bytes")]
    NoSync(usize),
    #[error("PES packet larger than {0} bytes")]
    PesTooLarge(usize),
}

struct Assembly {
    codec: Codec,
    pid: u16,
    buf: BytesMut,
    pts: u64,
    dts: u64,
    /// Bytes the PES header announced (0: until the next unit start).
    expected: usize,
    started: bool,
    continuity: Option<u8>,
    /// Packets were lost inside this PES: it is dropped when complete.
    damaged: bool,
    discontinuity: bool,
}

impl Assembly {
    fn new(codec: Codec, pid: u16) -> Assembly {
        Assembly {
            codec,
            pid,
            buf: BytesMut::new(),
            pts: 0,
            dts: 0,
            expected: 0,
            started: false,
            continuity: None,
            damaged: false,
            discontinuity: false,
        }
    }
}

/// The demuxer of one feed.
pub(crate) struct Demuxer {
    /// A partial packet left over from the last input.
    partial: Vec<u8>,
    pmt_pid: Option<u16>,
    video: Option<Assembly>,
    audio: Option<Assembly>,
    max_pes: usize,
    /// PES packets dropped because packets of them were lost (continuity counter gaps).
    pub(crate) damaged_pes: u64,
}

impl Demuxer {
    /// `max_pes` bounds one PES packet (a video frame): the only buffer that grows with input.
    pub(crate) fn new(max_pes: usize) -> Demuxer {
        Demuxer {
            partial: Vec::with_capacity(PACKET),
            pmt_pid: None,
            video: None,
            audio: None,
            max_pes,
            damaged_pes: 0,
        }
    }

    /// Feeds bytes (any split); complete PES packets are appended to `out`.
    pub(crate) fn push(&mut self, mut input: &[u8], out: &mut Vec<Pes>) -> Result<(), TsError> {
        if !self.partial.is_empty() {
            let need = PACKET - self.partial.len();
            let take = need.min(input.len());
            self.partial.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.partial.len() < PACKET {
                return Ok(());
            }
            let packet: [u8; PACKET] = self.partial[..].try_into().unwrap_or([0; PACKET]);
            self.partial.clear();
            self.packet(&packet, out)?;
        }
        let mut skipped = 0;
        while !input.is_empty() {
            if input[0] != SYNC {
                let next = input.iter().position(|&b| b == SYNC).unwrap_or(input.len());
                skipped += next;
                if skipped > MAX_RESYNC {
                    return Err(TsError::NoSync(skipped));
                }
                input = &input[next..];
                continue;
            }
            if input.len() < PACKET {
                self.partial.extend_from_slice(input);
                break;
            }
            let (packet, rest) = input.split_at(PACKET);
            self.packet(packet, out)?;
            input = rest;
        }
        Ok(())
    }

    /// What is still being assembled, handed on at the end of the feed.
    pub(crate) fn flush(&mut self, out: &mut Vec<Pes>) {
        for a in [self.video.as_mut(), self.audio.as_mut()].into_iter().flatten() {
            finish(a, out, &mut self.damaged_pes);
        }
    }

    fn packet(&mut self, p: &[u8], out: &mut Vec<Pes>) -> Result<(), TsError> {
        let unit_start = p[1] & 0x40 != 0;
        let pid = u16::from_be_bytes([p[1] & 0x1F, p[2]]);
        let afc = (p[3] >> 4) & 0x3;
        let cc = p[3] & 0x0F;
        let mut payload_at = 4;
        let mut discontinuity = false;
        if afc & 0x2 != 0 {
            let len = p[4] as usize;
            if len > 0 && 5 + len <= PACKET {
                discontinuity = p[5] & 0x80 != 0;
            }
            payload_at = 5 + len;
        }
        if afc & 0x1 == 0 || payload_at >= PACKET {
            return Ok(());
        }
        let payload = &p[payload_at..];
        if pid == PID_PAT {
            if unit_start {
                self.read_pat(payload);
            }
            return Ok(());
        }
        if Some(pid) == self.pmt_pid {
            if unit_start {
                self.read_pmt(payload);
            }
            return Ok(());
        }
        let max_pes = self.max_pes;
        let damaged_pes = &mut self.damaged_pes;
        let Some(a) = [self.video.as_mut(), self.audio.as_mut()].into_iter().flatten().find(|a| a.pid == pid) else {
            return Ok(());
        };
        let lost = a.continuity.is_some_and(|prev| (prev + 1) & 0x0F != cc);
        a.continuity = Some(cc);
        if unit_start {
            finish(a, out, damaged_pes);
            start(a, payload, discontinuity || lost);
        } else if a.started {
            if lost {
                a.damaged = true;
            }
            a.buf.extend_from_slice(payload);
        }
        if a.started && a.buf.len() > max_pes {
            return Err(TsError::PesTooLarge(max_pes));
        }
        if a.started && a.expected > 0 && a.buf.len() >= a.expected {
            a.buf.truncate(a.expected);
            finish(a, out, damaged_pes);
        }
        Ok(())
    }

    fn read_pat(&mut self, payload: &[u8]) {
        let Some(section) = section(payload, 0x00) else { return };
        // Program loop: 4 bytes each; program 0 is the network PID.
        for entry in section.chunks_exact(4) {
            let program = u16::from_be_bytes([entry[0], entry[1]]);
            if program != 0 {
                self.pmt_pid = Some(u16::from_be_bytes([entry[2] & 0x1F, entry[3]]));
                return;
            }
        }
    }

    fn read_pmt(&mut self, payload: &[u8]) {
        let Some(section) = section(payload, 0x02) else { return };
        if section.len() < 4 {
            return;
        }
        let info_len = (u16::from_be_bytes([section[2] & 0x0F, section[3]])) as usize;
        let Some(mut es) = section.get(4 + info_len..) else { return };
        while es.len() >= 5 {
            let stream_type = es[0];
            let pid = u16::from_be_bytes([es[1] & 0x1F, es[2]]);
            let es_info = u16::from_be_bytes([es[3] & 0x0F, es[4]]) as usize;
            if let Some(codec) = Codec::from_stream_type(stream_type) {
                let slot = if codec.is_video() { &mut self.video } else { &mut self.audio };
                // A repeated PMT keeps its assembly; a changed one starts over.
                if slot.as_ref().is_none_or(|a| a.pid != pid || a.codec != codec) {
                    *slot = Some(Assembly::new(codec, pid));
                }
            }
            es = es.get(5 + es_info..).unwrap_or(&[]);
        }
    }
}

/// The body of a PSI section of `table_id` in a unit-start payload (without CRC), if sane.
fn section(payload: &[u8], table_id: u8) -> Option<&[u8]> {
    let pointer = *payload.first()? as usize;
    let s = payload.get(1 + pointer..)?;
    if *s.first()? != table_id || s.len() < 3 {
        return None;
    }
    let len = (u16::from_be_bytes([s[1] & 0x0F, s[2]])) as usize;
    // After the 3-byte header: 5 bytes of table header, the body, 4 bytes of CRC.
    if len < 9 {
        return None;
    }
    s.get(8..3 + len - 4)
}

fn start(a: &mut Assembly, payload: &[u8], discontinuity: bool) {
    a.buf.clear();
    a.started = false;
    a.damaged = false;
    a.discontinuity = discontinuity;
    // PES header: start code, stream id, length, two flag bytes, header length.
    if payload.len() < 9 || payload[..3] != [0, 0, 1] {
        return;
    }
    let pes_len = u16::from_be_bytes([payload[4], payload[5]]) as usize;
    let flags = payload[7];
    let header_len = payload[8] as usize;
    let Some(data) = payload.get(9 + header_len..) else { return };
    let Some(pts) = (flags & 0x80 != 0).then(|| timestamp(payload.get(9..14)?)).flatten() else { return };
    let dts = if flags & 0x40 != 0 { payload.get(14..19).and_then(timestamp).unwrap_or(pts) } else { pts };
    a.pts = pts;
    a.dts = dts;
    a.expected = pes_len.saturating_sub(3 + header_len);
    if pes_len == 0 {
        a.expected = 0;
    }
    a.started = true;
    a.buf.extend_from_slice(data);
}

fn finish(a: &mut Assembly, out: &mut Vec<Pes>, damaged_pes: &mut u64) {
    if !a.started {
        return;
    }
    a.started = false;
    if a.damaged {
        *damaged_pes += 1;
        a.buf.clear();
        // The next PES follows a loss: its timing is to be trusted only relative to what follows.
        return;
    }
    out.push(Pes {
        codec: a.codec,
        pts: a.pts,
        dts: a.dts,
        data: a.buf.split().freeze(),
        discontinuity: a.discontinuity,
    });
}

/// A 33-bit PES timestamp from its 5 bytes (marker bits not checked: encoders get them wrong).
fn timestamp(b: &[u8]) -> Option<u64> {
    let b: &[u8; 5] = b.try_into().ok()?;
    Some(
        ((b[0] as u64 >> 1) & 0x07) << 30
            | (b[1] as u64) << 22
            | ((b[2] as u64) >> 1) << 15
            | (b[3] as u64) << 7
            | (b[4] as u64) >> 1,
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A PES timestamp's 5 bytes (`prefix` is 0x2 for PTS only, 0x3/0x1 for PTS/DTS).
    pub(crate) fn ts_bytes(prefix: u8, t: u64) -> [u8; 5] {
        [
            prefix << 4 | (((t >> 30) & 0x07) as u8) << 1 | 1,
            (t >> 22) as u8,
            ((((t >> 15) & 0x7F) as u8) << 1) | 1,
            (t >> 7) as u8,
            (((t & 0x7F) as u8) << 1) | 1,
        ]
    }

    fn psi(pid: u16, table_id: u8, body: &[u8]) -> Vec<u8> {
        let mut s = vec![table_id];
        let len = 5 + body.len() + 4;
        s.extend_from_slice(&[0xB0 | (len >> 8) as u8, len as u8, 0, 1, 0xC1, 0, 0]);
        s.extend_from_slice(body);
        s.extend_from_slice(&[0, 0, 0, 0]); // CRC (not checked)
        let mut p = vec![SYNC, 0x40 | (pid >> 8) as u8, pid as u8, 0x10, 0];
        p.extend_from_slice(&s);
        p.resize(PACKET, 0xFF);
        p
    }

    /// PAT and PMT of one program: H.264 on 0x100, AAC on 0x101.
    pub(crate) fn tables() -> Vec<u8> {
        let mut v = psi(0, 0, &[0, 1, 0xF0, 0x00]);
        v.extend(psi(0x1000, 2, &[0xE1, 0x00, 0xF0, 0x00, 0x1B, 0xE1, 0x00, 0xF0, 0x00, 0x0F, 0xE1, 0x01, 0xF0, 0x00]));
        v
    }

    /// `data` as one PES on `pid`, split into packets (stuffed with an adaptation field).
    pub(crate) fn pes(pid: u16, cc: &mut u8, pts: u64, dts: Option<u64>, data: &[u8], bounded: bool) -> Vec<u8> {
        let mut pes = vec![0, 0, 1, if pid == 0x100 { 0xE0 } else { 0xC0 }, 0, 0, 0x80];
        let header: Vec<u8> = match dts {
            Some(d) => [ts_bytes(3, pts), ts_bytes(1, d)].concat(),
            None => ts_bytes(2, pts).to_vec(),
        };
        pes.push(if dts.is_some() { 0xC0 } else { 0x80 });
        pes.push(header.len() as u8);
        pes.extend_from_slice(&header);
        pes.extend_from_slice(data);
        if bounded {
            let len = (pes.len() - 6) as u16;
            pes[4..6].copy_from_slice(&len.to_be_bytes());
        }
        let mut out = Vec::new();
        let mut first = true;
        for chunk in pes.chunks(184) {
            let mut p = vec![SYNC, (if first { 0x40 } else { 0 }) | (pid >> 8) as u8, pid as u8];
            if chunk.len() < 184 {
                p.push(0x30 | *cc);
                let stuffing = 184 - chunk.len() - 1;
                p.push(stuffing as u8);
                if stuffing > 0 {
                    p.push(0);
                    p.resize(5 + stuffing, 0xFF);
                }
            } else {
                p.push(0x10 | *cc);
            }
            p.extend_from_slice(chunk);
            assert_eq!(p.len(), PACKET);
            out.extend(p);
            *cc = (*cc + 1) & 0x0F;
            first = false;
        }
        out
    }

    #[test]
    fn tables_then_pes_packets_come_out_with_their_timestamps() {
        let (mut vcc, mut acc) = (0, 0);
        let mut feed = tables();
        let frame: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        feed.extend(pes(0x100, &mut vcc, 9000, Some(6000), &frame, false));
        feed.extend(pes(0x101, &mut acc, 7000, None, &[1, 2, 3], true));
        feed.extend(pes(0x100, &mut vcc, 12000, Some(9000), &[9; 10], false));
        let mut d = Demuxer::new(1 << 20);
        let mut out = Vec::new();
        // Any split of the input gives the same result.
        for chunk in feed.chunks(100) {
            d.push(chunk, &mut out).unwrap();
        }
        d.flush(&mut out);
        assert_eq!(out.len(), 3, "{out:?}");
        assert_eq!(
            (out[0].codec, out[0].pts, out[0].dts),
            (Codec::Aac, 7000, 7000),
            "bounded audio PES is out at once"
        );
        assert_eq!(&out[0].data[..], &[1, 2, 3]);
        assert_eq!((out[1].codec, out[1].pts, out[1].dts), (Codec::H264, 9000, 6000));
        assert_eq!(&out[1].data[..], &frame[..]);
        assert_eq!((out[2].pts, out[2].dts, out[2].data.len()), (12000, 9000, 10));
    }

    #[test]
    fn a_lost_packet_drops_only_its_pes_and_garbage_is_refused() {
        let mut vcc = 0;
        let mut feed = tables();
        let big = pes(0x100, &mut vcc, 0, None, &[7; 600], false);
        feed.extend(&big[..PACKET]);
        feed.extend(&big[2 * PACKET..]); // second packet lost
        feed.extend(pes(0x100, &mut vcc, 3000, None, &[8; 5], false));
        let mut d = Demuxer::new(1 << 20);
        let mut out = Vec::new();
        d.push(&feed, &mut out).unwrap();
        d.flush(&mut out);
        assert_eq!(d.damaged_pes, 1);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].pts, 3000);

        let mut d = Demuxer::new(1 << 20);
        assert_eq!(d.push(&[0u8; 2000], &mut out), Err(TsError::NoSync(2000)));
        let mut d = Demuxer::new(1000);
        let mut feed = tables();
        feed.extend(pes(0x100, &mut vcc, 0, None, &[1; 5000], false));
        assert_eq!(d.push(&feed, &mut out), Err(TsError::PesTooLarge(1000)));
    }

    #[test]
    fn timestamps_round_trip_all_33_bits() {
        for t in [0, 1, 90_000, (1 << 33) - 1, 0x1_2345_6789 & ((1 << 33) - 1)] {
            assert_eq!(timestamp(&ts_bytes(2, t)), Some(t));
        }
    }
}
