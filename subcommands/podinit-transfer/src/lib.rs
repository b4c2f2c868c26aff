//! podinit's download engine, shared by the applets that download (`s3-get`, `http-get`):
//! whatever serves the bytes, a large file arrives through concurrent ranged GETs into a
//! partial file beside its destination, is verified while it arrives, synced and renamed into
//! place, and resumes after a killed run ([`download`]); a rerun can tell a current file
//! without reading it ([`Record`]); an archive is unpacked under the rules of [`unpack`].
//!
//! It knows nothing of S3 or HTTP: a [`download::Source`] opens ranges and classifies its
//! own errors; a [`download::Digest`] says what the bytes must hash to.

pub mod archive;
pub mod download;
pub mod partial;
pub mod record;
pub mod unpack;

use std::ops::Range;

pub use download::{
    Digest, Fetched, Object, Options, Prepared, RangeDigest, RangeObserver, Source, Transfer, Transport, WriteFailed, read_range,
};
pub use partial::Partial;
pub use record::Record;

/// The byte ranges of an object of `size` bytes cut into `part` sized pieces (the last one
/// shorter).
pub fn ranges(size: u64, part: u64) -> Vec<Range<u64>> {
    let part = part.max(1);
    (0..size.div_ceil(part)).map(|i| i * part..((i + 1) * part).min(size)).collect()
}

/// `--part-size` of the applets that download: a size ([`podinit_core::args::parse_size`])
/// from 64 KiB to 5 GiB (S3's bounds for a part).
pub fn parse_part_size(text: &str) -> Result<u64, String> {
    let size = podinit_core::args::parse_size(text)?;
    if !(64 << 10..=5 << 30).contains(&size) {
        return Err(format!("'{text}': a part is 64KiB to 5GiB"));
    }
    Ok(size)
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// `N` bytes from exactly `2 * N` hex digits.
pub fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}
