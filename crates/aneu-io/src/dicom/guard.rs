//! A structural pre-scan that bounds every element length by the bytes
//! that are actually there, before dicom-rs parses the file.
//!
//! dicom-rs allocates (and zero-fills) an element's declared length before
//! it reads the value. A 1 kB file that declares a 4 GB element would make
//! it allocate 4 GB. This scan walks the element headers (with dicom-rs's
//! own lazy token reader, which skips values without buffering them) and
//! rejects any defined length that exceeds what remains of the file, so the
//! parse that follows allocates at most the file size.
//!
//! It also bounds the nesting depth of sequences. dicom-rs's in-memory
//! parser recurses once per sequence level, so a file of a few tens of kB
//! nested 1,500 levels deep overflows the stack and aborts the whole
//! process. The lazy
//! token reader used here does not recurse (it keeps its open sequences
//! and items in a `Vec` and returns a flat stream of start and end tokens),
//! so counting those tokens measures the depth in constant stack, before
//! the recursive parse runs. The deflated transfer syntaxes are inflated
//! and scanned the same way.

use std::io::Read;
use std::path::Path;

use dicom::core::header::{HasLength, Header};
use dicom::encoding::TransferSyntaxIndex;
use dicom::parser::dataset::LazyDataToken;
use dicom::parser::dataset::lazy_read::LazyDataSetReader;
use dicom::transfer_syntax::TransferSyntaxRegistry;

use crate::{Error, Limits, Result};

/// Transfer syntaxes whose whole data set is deflated (explicit VR little
/// endian inside): Deflated Explicit VR Little Endian, JPIP Referenced
/// Deflate, JPIP HTJ2K Referenced Deflate. dicom-rs inflates and parses
/// all three.
const DEFLATED: [&str; 3] = [
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.4.95",
    "1.2.840.10008.1.2.4.205",
];
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

/// VRs whose explicit-VR header has a 4-byte length.
fn long_vr(vr: &[u8]) -> bool {
    matches!(
        vr,
        b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"SQ" | b"SV" | b"UC" | b"UN" | b"UR" | b"UT" | b"UV"
    )
}

fn malformed(path: &Path, reason: String) -> Error {
    Error::Malformed {
        path: path.to_path_buf(),
        reason,
    }
}

/// Whether `vr` is one of the VRs of PS3.5 Table 6.2-1.
fn known_vr(vr: &[u8]) -> bool {
    long_vr(vr)
        || matches!(
            vr,
            b"AE"
                | b"AS"
                | b"AT"
                | b"CS"
                | b"DA"
                | b"DS"
                | b"DT"
                | b"FL"
                | b"FD"
                | b"IS"
                | b"LO"
                | b"LT"
                | b"PN"
                | b"SH"
                | b"SL"
                | b"SS"
                | b"ST"
                | b"TM"
                | b"UI"
                | b"UL"
                | b"US"
        )
}

/// Whether `bytes` start with a DICOM Part 10 preamble.
pub(crate) fn has_magic(bytes: &[u8]) -> bool {
    bytes.get(128..132) == Some(b"DICM")
}

/// Checks the file meta group and the data set of a Part 10 file.
/// Returns the transfer syntax UID.
pub(crate) fn check(path: &Path, bytes: &[u8], limits: &Limits) -> Result<String> {
    if !has_magic(bytes) {
        return Err(Error::NotDicom {
            path: path.to_path_buf(),
        });
    }
    // File meta group: always explicit VR little endian, group 0002.
    let mut pos = 132usize;
    let mut ts_uid = None;
    while bytes.len() >= pos + 8 && bytes[pos..pos + 2] == [0x02, 0x00] {
        let elem = u16::from_le_bytes([bytes[pos + 2], bytes[pos + 3]]);
        let vr = &bytes[pos + 4..pos + 6];
        if !known_vr(vr) {
            return Err(malformed(
                path,
                format!("file meta element (0002,{elem:04X}) at byte {pos} has an invalid VR {vr:02X?}"),
            ));
        }
        let (len, header) = if long_vr(vr) {
            let b = bytes
                .get(pos + 8..pos + 12)
                .ok_or_else(|| malformed(path, format!("file meta element (0002,{elem:04X}) header is cut off")))?;
            (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12)
        } else {
            (u16::from_le_bytes([bytes[pos + 6], bytes[pos + 7]]) as usize, 8)
        };
        let end = pos
            .checked_add(header)
            .and_then(|p| p.checked_add(len))
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| {
                malformed(
                    path,
                    format!(
                        "file meta element (0002,{elem:04X}) at byte {pos} declares {len} bytes but only {} remain",
                        bytes.len().saturating_sub(pos + header)
                    ),
                )
            })?;
        if elem == 0x0010 {
            let v = &bytes[pos + header..end];
            ts_uid = Some(String::from_utf8_lossy(v).trim_end_matches(['\0', ' ']).to_string());
        }
        pos = end;
    }
    let ts_uid = ts_uid.ok_or_else(|| Error::MissingTag {
        path: path.to_path_buf(),
        tag: "TransferSyntaxUID",
    })?;
    let body = &bytes[pos..];
    if DEFLATED.contains(&ts_uid.as_str()) {
        // Inflate with a cap, then scan the inflated data set.
        let cap = limits.max_file_bytes;
        let mut inflated = Vec::new();
        flate2::read::DeflateDecoder::new(body)
            .take(cap.saturating_add(1))
            .read_to_end(&mut inflated)
            .map_err(|e| malformed(path, format!("deflated data set: {e}")))?;
        limits.check_file(path, inflated.len() as u64)?;
        scan_dataset(path, &inflated, EXPLICIT_LE, limits)?;
    } else {
        scan_dataset(path, body, &ts_uid, limits)?;
    }
    Ok(ts_uid)
}

/// A cursor that publishes its position, so the scan knows how many bytes
/// remain after each token.
struct Tracked<'a> {
    inner: std::io::Cursor<&'a [u8]>,
    pos: std::rc::Rc<std::cell::Cell<u64>>,
}

impl Read for Tracked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos.set(self.inner.position());
        Ok(n)
    }
}

impl std::io::Seek for Tracked<'_> {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let p = self.inner.seek(to)?;
        self.pos.set(p);
        Ok(p)
    }
}

/// Walks the data set's tokens and bounds each defined length by the bytes
/// that remain after its header, and the nesting of sequences by
/// [`Limits::max_sequence_depth`]. A data set that cannot be tokenised to
/// the end (a file cut short) is rejected too.
fn scan_dataset(path: &Path, body: &[u8], ts_uid: &str, limits: &Limits) -> Result<()> {
    let Some(ts) = TransferSyntaxRegistry.get(ts_uid) else {
        // Unknown transfer syntax: the real parse reports it.
        return Ok(());
    };
    let total = body.len() as u64;
    let pos = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let src = Tracked {
        inner: std::io::Cursor::new(body),
        pos: pos.clone(),
    };
    let Ok(mut reader) = LazyDataSetReader::new_with_ts(src, ts) else {
        return Ok(());
    };
    let remaining = || total.saturating_sub(pos.get());
    let check = |what: &str, len: u32| -> Result<()> {
        if len != u32::MAX && u64::from(len) > remaining() {
            return Err(malformed(
                path,
                format!("{what} declares {len} bytes but only {} remain", remaining()),
            ));
        }
        Ok(())
    };
    // dicom-parser reads len / size values of a binary VR and ignores the
    // rest, losing sync with the stream; such lengths are invalid anyway.
    let width_check = |h: &dicom::core::DataElementHeader| -> Result<()> {
        use dicom::core::VR;
        let size = match h.vr() {
            VR::US | VR::SS | VR::OW => 2,
            VR::UL | VR::SL | VR::FL | VR::AT | VR::OL | VR::OF => 4,
            VR::FD | VR::OD | VR::SV | VR::UV | VR::OV => 8,
            _ => 1,
        };
        let len = h.length().0;
        if len != u32::MAX && !len.is_multiple_of(size) {
            return Err(malformed(
                path,
                format!(
                    "element {} has VR {:?} but a length of {len}, not a multiple of {size}",
                    h.tag(),
                    h.vr()
                ),
            ));
        }
        Ok(())
    };
    let pixel_check = |tag: dicom::core::Tag, len: u32| -> Result<()> {
        if tag == dicom::dictionary_std::tags::PIXEL_DATA && len != u32::MAX && u64::from(len) > remaining() {
            return Err(Error::TruncatedPixelData {
                path: path.to_path_buf(),
                expected: u64::from(len),
                found: remaining(),
            });
        }
        Ok(())
    };
    // Open sequences (the depth that is bounded) and open items. An end
    // token with nothing open is refused at once: the token reader would
    // go on to read an item header outside any sequence, which it does
    // not expect.
    let mut sequences = 0u32;
    let mut items = 0u32;
    let mut consumed = 0u64;
    while let Some(token) = reader.advance() {
        let token = token.map_err(|e| malformed(path, format!("after byte {}: {e}", pos.get())))?;
        match &token {
            LazyDataToken::SequenceStart { .. } | LazyDataToken::PixelSequenceStart => {
                sequences = sequences.saturating_add(1);
                if sequences > limits.max_sequence_depth {
                    return Err(Error::LimitExceeded {
                        path: path.to_path_buf(),
                        what: "sequence nesting depth",
                        requested: u64::from(sequences),
                        limit: u64::from(limits.max_sequence_depth),
                    });
                }
            }
            LazyDataToken::SequenceEnd => {
                sequences = sequences.checked_sub(1).ok_or_else(|| {
                    malformed(
                        path,
                        format!("a sequence delimiter at byte {} closes no sequence", pos.get()),
                    )
                })?;
            }
            LazyDataToken::ItemEnd => {
                items = items.checked_sub(1).ok_or_else(|| {
                    malformed(path, format!("an item delimiter at byte {} closes no item", pos.get()))
                })?;
            }
            _ => {}
        }
        match &token {
            LazyDataToken::ElementHeader(h) => {
                width_check(h)?;
                pixel_check(h.tag(), h.length().0)?;
                check(&format!("element {}", h.tag()), h.length().0)?
            }
            LazyDataToken::SequenceStart { tag, len } => check(&format!("sequence {tag}"), len.0)?,
            LazyDataToken::ItemStart { len } => {
                items = items.saturating_add(1);
                check("item", len.0)?
            }
            LazyDataToken::LazyValue { header, .. } => {
                width_check(header)?;
                pixel_check(header.tag(), header.length().0)?;
                check(&format!("element {}", header.tag()), header.length().0)?
            }
            LazyDataToken::LazyItemValue { len, .. } => check("pixel data fragment", *len)?,
            _ => {}
        }
        token
            .skip()
            .map_err(|e| malformed(path, format!("after byte {}: {e}", pos.get())))?;
        consumed = pos.get();
    }
    // The token reader ends quietly at a partial header; a complete data
    // set ends exactly at the end of the file.
    if consumed < total {
        return Err(malformed(
            path,
            format!("the data set stops at byte {consumed} of {total}: the file is cut short or corrupt"),
        ));
    }
    Ok(())
}
