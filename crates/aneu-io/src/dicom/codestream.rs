//! Checks the frame size that a compressed codestream declares against the
//! DICOM Rows × Columns, before a codec allocates for it.
//!
//! JPEG, JPEG-LS and JPEG 2000 codecs allocate from the dimensions in their
//! own headers. A corrupt header (65535 × 65535, say) would make them
//! allocate gigabytes for a 1 kB file, so each fragment that starts a
//! codestream is checked first.

/// Frame size (rows, columns) declared by a JPEG or JPEG-LS codestream's
/// start-of-frame marker.
fn jpeg_dims(b: &[u8]) -> Option<(usize, usize)> {
    if b.get(0..2) != Some(&[0xFF, 0xD8]) {
        return None;
    }
    let mut i = 2;
    while i + 4 <= b.len() {
        if b[i] != 0xFF {
            return None;
        }
        let m = b[i + 1];
        if m == 0xFF {
            i += 1; // fill byte
            continue;
        }
        let len = usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]]));
        let is_sof = matches!(m, 0xC0..=0xCF) && !matches!(m, 0xC4 | 0xC8 | 0xCC) || m == 0xF7;
        if is_sof {
            let s = b.get(i + 4..i + 9)?;
            return Some((
                usize::from(u16::from_be_bytes([s[1], s[2]])),
                usize::from(u16::from_be_bytes([s[3], s[4]])),
            ));
        }
        if m == 0xDA {
            return None; // start of scan without a frame header
        }
        i += 2 + len;
    }
    None
}

/// Frame size (rows, columns) declared by a JPEG 2000 codestream's SIZ
/// marker (raw codestream or inside a JP2 file).
fn j2k_dims(b: &[u8]) -> Option<(usize, usize)> {
    let head = &b[..b.len().min(4096)];
    let at = head.windows(4).position(|w| w == [0xFF, 0x4F, 0xFF, 0x51])?;
    let s = b.get(at + 4..at + 24)?;
    let u = |o: usize| u32::from_be_bytes([s[o], s[o + 1], s[o + 2], s[o + 3]]) as usize;
    let (xsiz, ysiz, xo, yo) = (u(4), u(8), u(12), u(16));
    Some((ysiz.saturating_sub(yo), xsiz.saturating_sub(xo)))
}

/// Checks every fragment that opens a JPEG-family or JPEG 2000 codestream.
pub(crate) fn check_fragments(frags: &[Vec<u8>], rows: usize, cols: usize) -> Result<(), String> {
    for (n, f) in frags.iter().enumerate() {
        let dims = jpeg_dims(f).or_else(|| j2k_dims(f));
        if let Some((r, c)) = dims
            && (r > rows || c > cols || r == 0 || c == 0)
        {
            return Err(format!(
                "fragment {n} declares a {r} x {c} frame, but the image is {rows} x {cols}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sof_and_siz() {
        // SOI, APP0 (len 4), SOF0: len 11, precision 8, 3 rows, 5 cols, 1 component
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 0, 0, 0xFF, 0xC0, 0, 11, 8, 0, 3, 0, 5, 1, 1, 0x11, 0,
        ];
        assert_eq!(jpeg_dims(&jpeg), Some((3, 5)));
        let mut j2k = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 41, 0, 0];
        for v in [7u32, 9, 1, 2] {
            j2k.extend(v.to_be_bytes());
        }
        j2k.extend([0; 20]);
        assert_eq!(j2k_dims(&j2k), Some((7, 6)));
        assert!(check_fragments(&[jpeg.to_vec()], 3, 5).is_ok());
        assert!(check_fragments(&[jpeg.to_vec()], 2, 5).is_err());
    }
}
