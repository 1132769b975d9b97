//! Validation of RLE Lossless fragments before they reach dicom-rs.
//!
//! dicom-rs 0.10.1's RLE decoder indexes past the end of a segment that
//! decodes to fewer than Rows × Columns bytes, and unwraps PackBits read
//! errors: a corrupt file panics. This check walks each segment's PackBits
//! stream (counting output bytes, not decoding) so such files get a typed
//! error instead.

/// RLE Lossless transfer syntax UID.
pub(crate) const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// Bytes one PackBits segment expands to (counting stops once `need` bytes
/// are produced: segments are padded to an even length), or `None` if the
/// stream is cut inside a run before that.
fn packbits_len(seg: &[u8], need: usize) -> Option<usize> {
    let (mut i, mut out) = (0usize, 0usize);
    while i < seg.len() && out < need {
        let n = seg[i] as i8;
        i += 1;
        if n >= 0 {
            let run = n as usize + 1;
            if i + run > seg.len() {
                return None;
            }
            i += run;
            out += run;
        } else if n != -128 {
            if i >= seg.len() {
                return None;
            }
            i += 1;
            out += 1 + n.unsigned_abs() as usize;
        }
    }
    Some(out)
}

/// Checks one RLE fragment (one frame): a 64-byte header with the number
/// of segments and their offsets, each segment inside the fragment and
/// expanding to at least `pixels` bytes.
pub(crate) fn check_fragment(frag: &[u8], segments: usize, pixels: usize) -> Result<(), String> {
    let word = |n: usize| -> Option<usize> {
        frag.get(4 * n..4 * n + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = word(0).ok_or("fragment shorter than the 64-byte RLE header")?;
    if count < segments || count > 15 {
        return Err(format!("{count} RLE segments, {segments} needed"));
    }
    let mut offsets: Vec<usize> = (1..=count).map(|n| word(n).unwrap_or(usize::MAX)).collect();
    offsets.push(frag.len());
    for s in 0..count {
        let (a, b) = (offsets[s], offsets[s + 1]);
        if a < 64 || a > b || b > frag.len() {
            return Err(format!(
                "RLE segment {s} has invalid offsets {a}..{b} in a {}-byte fragment",
                frag.len()
            ));
        }
        match packbits_len(&frag[a..b], pixels) {
            Some(n) if n >= pixels => {}
            Some(n) => return Err(format!("RLE segment {s} expands to {n} bytes, {pixels} needed")),
            None => return Err(format!("RLE segment {s} is cut inside a run")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packbits_lengths() {
        assert_eq!(packbits_len(&[2, 1, 2, 3], 9), Some(3));
        assert_eq!(packbits_len(&[0xFE, 7], 9), Some(3)); // -2: repeat 3 times
        assert_eq!(packbits_len(&[0x80], 9), Some(0)); // -128: no-op
        assert_eq!(packbits_len(&[3, 1, 2], 9), None);
        assert_eq!(packbits_len(&[0xFE], 9), None);
        assert_eq!(packbits_len(&[0xFE, 7, 0], 3), Some(3)); // even-length padding
    }
}
