//! Arbitrary bytes through the demuxer and the conversion, as the fuzz targets and tests drive them.

use super::{demux::Demuxer, to_media::ToMedia};

/// Feeds arbitrary bytes through the demuxer and the conversion, as an SRT publisher's
/// input would go (for the fuzz tests): must never panic, whatever the input.
pub fn feed(input: &[u8]) -> usize {
    let mut demux = Demuxer::new(1 << 20);
    let mut media = ToMedia::new();
    let (mut pes, mut out) = (Vec::new(), Vec::new());
    // Split where SRT would: 1316-byte messages, then byte 0 chooses an odd split too.
    let step = 1 + input.first().copied().unwrap_or(0) as usize * 7;
    for chunk in input.chunks(step) {
        if demux.push(chunk, &mut pes).is_err() {
            break;
        }
        for p in pes.drain(..) {
            if media.convert(p, &mut out).is_err() {
                return out.len();
            }
        }
    }
    demux.flush(&mut pes);
    for p in pes.drain(..) {
        let _ = media.convert(p, &mut out);
    }
    out.len()
}
