//! The per-frame marker that lets a player recognise a frame by its content, whatever a server
//! does to RTMP timestamps: the publisher inserts one H.264 SEI NAL unit ("user data
//! unregistered", ignored by decoders) in front of each coded frame's NAL units, carrying the
//! stream index, a frame sequence number and the send time on the process clock.
//!
//! The marker sits at a fixed offset from the start of the FLV video body, so a player only needs
//! the first [`PREFIX_LEN`] bytes of a message. Every marker byte has its top bit set (7 bits per
//! byte), so the NAL never contains the `00 00 0x` patterns H.264 would need to escape.

use bytes::{BufMut, Bytes, BytesMut};

/// Identifies our SEI payload (16 bytes, as the SEI syntax requires).
pub const UUID: [u8; 16] = *b"streamfleetbench";

/// FLV AVC video body header: frame type/codec, AVCPacketType, composition time.
const AVC_HEADER: usize = 5;
const MARK_DATA: usize = 10 + 10 + 5;
/// SEI NAL: header, payload type 5, payload size, UUID, data, rbsp trailing bits.
const NAL_LEN: usize = 1 + 1 + 1 + UUID.len() + MARK_DATA + 1;
const UUID_AT: usize = AVC_HEADER + 4 + 3;
const DATA_AT: usize = UUID_AT + UUID.len();

/// Bytes of a video message a player must keep to read its marker.
pub const PREFIX_LEN: usize = AVC_HEADER + 4 + NAL_LEN;

/// What the marker says about a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// Which publisher (stream) sent the frame.
    pub stream: u32,
    /// Video frame number on that stream, from 0, without gaps as sent.
    pub seq: u64,
    /// Send time, nanoseconds on [`crate::clock`].
    pub sent_ns: u64,
}

/// Returns the video body with the marker inserted before its first NAL unit. `body` must be an
/// AVC NALU body (AVCPacketType 1) whose NAL units use 4-byte lengths; other bodies (sequence
/// headers) are returned unchanged, and the caller keeps them unmarked.
pub fn stamp(body: &[u8], marker: &Marker) -> Bytes {
    if body.len() < AVC_HEADER || body[0] & 0x0f != 7 || body[1] != 1 {
        return Bytes::copy_from_slice(body);
    }
    let mut out = BytesMut::with_capacity(body.len() + 4 + NAL_LEN);
    out.put_slice(&body[..AVC_HEADER]);
    out.put_u32(NAL_LEN as u32);
    out.put_u8(0x06); // nal_unit_type 6: SEI
    out.put_u8(0x05); // payload type 5: user_data_unregistered
    out.put_u8((UUID.len() + MARK_DATA) as u8);
    out.put_slice(&UUID);
    put_7bit(&mut out, marker.seq, 10);
    put_7bit(&mut out, marker.sent_ns, 10);
    put_7bit(&mut out, u64::from(marker.stream), 5);
    out.put_u8(0x80); // rbsp_stop_one_bit + alignment
    out.put_slice(&body[AVC_HEADER..]);
    out.freeze()
}

/// Reads the marker from the first bytes of a video message, or `None` when the message is not a
/// marked frame (a sequence header, or media from another publisher).
pub fn read(prefix: &[u8]) -> Option<Marker> {
    if prefix.len() < PREFIX_LEN || prefix[UUID_AT..DATA_AT] != UUID {
        return None;
    }
    let data = &prefix[DATA_AT..DATA_AT + MARK_DATA];
    let seq = get_7bit(&data[0..10])?;
    let sent_ns = get_7bit(&data[10..20])?;
    let stream = u32::try_from(get_7bit(&data[20..25])?).ok()?;
    Some(Marker { stream, seq, sent_ns })
}

fn put_7bit(out: &mut BytesMut, mut v: u64, n: usize) {
    let mut buf = [0u8; 10];
    for b in buf[..n].iter_mut().rev() {
        *b = 0x80 | (v & 0x7f) as u8;
        v >>= 7;
    }
    out.put_slice(&buf[..n]);
}

fn get_7bit(bytes: &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    for &b in bytes {
        if b & 0x80 == 0 {
            return None;
        }
        v = v.checked_mul(128)? | u64::from(b & 0x7f);
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(key: bool, nal: &[u8]) -> Vec<u8> {
        let mut v = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
        v.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        v.extend_from_slice(nal);
        v
    }

    #[test]
    fn marker_round_trips_through_a_prefix() {
        let m = Marker { stream: 199, seq: 123_456_789, sent_ns: u64::MAX / 3 };
        let stamped = stamp(&frame(true, &[0x65, 1, 2, 3]), &m);
        assert_eq!(read(&stamped[..PREFIX_LEN]), Some(m));
        // The original NAL units follow the marker untouched, and the frame type is kept.
        assert_eq!(&stamped[PREFIX_LEN..], &[0, 0, 0, 4, 0x65, 1, 2, 3]);
        assert_eq!(stamped[0], 0x17);
    }

    #[test]
    fn marker_bytes_never_need_h264_emulation_prevention() {
        let m = Marker { stream: 0, seq: 0, sent_ns: 0 };
        let stamped = stamp(&frame(false, &[0x41]), &m);
        let nal = &stamped[AVC_HEADER + 4..AVC_HEADER + 4 + NAL_LEN];
        assert!(nal.windows(2).all(|w| w != [0, 0]), "{nal:?}");
    }

    #[test]
    fn unmarked_bodies_are_not_matched() {
        let seq_header = [0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff];
        assert_eq!(&stamp(&seq_header, &Marker { stream: 1, seq: 1, sent_ns: 1 })[..], &seq_header);
        assert_eq!(read(&seq_header), None);
        assert_eq!(read(&frame(true, &[0x65; 80])), None);
        // A prefix that is one byte short cannot be trusted.
        let stamped = stamp(&frame(true, &[0x65]), &Marker { stream: 1, seq: 2, sent_ns: 3 });
        assert_eq!(read(&stamped[..PREFIX_LEN - 1]), None);
    }

    #[test]
    fn distinct_frames_get_distinct_markers() {
        let body = frame(false, &[0x41, 9]);
        let a = stamp(&body, &Marker { stream: 0, seq: 1, sent_ns: 10 });
        let b = stamp(&body, &Marker { stream: 0, seq: 2, sent_ns: 10 });
        assert_ne!(a, b);
        assert_eq!(read(&a).map(|m| m.seq), Some(1));
        assert_eq!(read(&b).map(|m| m.seq), Some(2));
    }
}
