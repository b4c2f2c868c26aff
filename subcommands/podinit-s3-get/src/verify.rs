//! What can be checked about an object's bytes, and checking it.
//!
//! A store tells about its bytes in up to three ways: a full-object checksum header
//! (`x-amz-checksum-crc64nvme`, `-crc32c`, `-crc32`, `-sha256` of type FULL_OBJECT), the ETag
//! (the MD5 for single-part uploads, `md5(part md5s)-N` for multipart ones), and the digest
//! the operator pins with `--sha256`. [`Expected::plan`] picks the cheapest sufficient check
//! (a store checksum over the ETag's MD5, which is four times slower), the pinned digest
//! always; [`Hasher`] computes them in one pass over the bytes in order, and [`Hasher::finish`]
//! says what was checked or what did not match.

use base64::Engine as _;
use md5::Digest as _;

use crate::spec::{Etag, hex};

/// What the store (and the operator) said the bytes must hash to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Expected {
    pub(crate) etag: Option<Etag>,
    /// SSE-KMS or SSE-C: the ETag is not an MD5 of the content.
    pub(crate) etag_not_md5: bool,
    /// The part size of a multipart upload, when known and uniform.
    pub(crate) part_size: Option<u64>,
    /// What `x-amz-checksum-type` says of the checksum values, when the store sends it.
    pub(crate) checksum_type: Option<ChecksumType>,
    pub(crate) crc64nvme: Option<String>,
    pub(crate) crc32c: Option<String>,
    pub(crate) crc32: Option<String>,
    pub(crate) sha256: Option<String>,
    /// `--sha256`, lowercase hex.
    pub(crate) pinned_sha256: Option<String>,
}

/// `x-amz-checksum-type`: how the checksum values were computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChecksumType {
    /// Over the whole object: checkable.
    FullObject,
    /// A checksum of the parts' checksums: says nothing about the bytes without the parts.
    Composite,
}

/// The checks to run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    store: Option<(Algorithm, String)>,
    md5: Option<[u8; 16]>,
    multipart: Option<([u8; 16], u32, u64)>,
    pinned_sha256: Option<String>,
    /// Why the ETag was not used, for the summary.
    pub(crate) etag_note: Option<&'static str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Algorithm {
    Crc64Nvme,
    Crc32c,
    Crc32,
    Sha256,
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Self::Crc64Nvme => "CRC64NVME",
            Self::Crc32c => "CRC32C",
            Self::Crc32 => "CRC32",
            Self::Sha256 => "SHA-256",
        }
    }
}

impl Expected {
    /// Whether the multipart ETag could be checked if the part size were known.
    pub(crate) fn wants_part_size(&self) -> bool {
        self.store_checksum().is_none() && !self.etag_not_md5 && matches!(self.etag, Some(Etag::Multipart { .. }))
    }

    fn store_checksum(&self) -> Option<(Algorithm, String)> {
        let candidates = [
            (Algorithm::Crc64Nvme, &self.crc64nvme),
            (Algorithm::Crc32c, &self.crc32c),
            (Algorithm::Crc32, &self.crc32),
            (Algorithm::Sha256, &self.sha256),
        ];
        // The store's word first; without it, composite (per-part) values are known by their
        // `-N` suffix. Either way a composite value is not a checksum of the whole object.
        let usable = |value: &String| match self.checksum_type {
            Some(ChecksumType::FullObject) => true,
            Some(ChecksumType::Composite) => false,
            None => !value.contains('-'),
        };
        candidates.into_iter().find_map(|(alg, value)| value.as_ref().filter(|v| usable(v)).map(|v| (alg, v.clone())))
    }

    pub(crate) fn plan(&self) -> Plan {
        let mut plan = Plan { pinned_sha256: self.pinned_sha256.clone(), ..Plan::default() };
        plan.store = self.store_checksum();
        if plan.store.is_some() {
            return plan;
        }
        match (&self.etag, self.etag_not_md5) {
            (Some(Etag::Md5(digest)), false) => plan.md5 = Some(*digest),
            (Some(Etag::Multipart { digest, parts }), false) => match self.part_size {
                Some(size) => plan.multipart = Some((*digest, *parts, size)),
                None => plan.etag_note = Some("multipart ETag not checked: the part size is unknown or the parts differ in size"),
            },
            (Some(_), true) => plan.etag_note = Some("ETag not checked: it is not an MD5 under SSE-KMS/SSE-C"),
            (Some(Etag::Opaque) | None, _) => plan.etag_note = Some("the store sent no checksum podinit can check"),
        }
        plan
    }
}

/// A multipart ETag to check from the MD5s of the stored parts, computed apart (in parallel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Multipart {
    pub(crate) digest: [u8; 16],
    pub(crate) parts: u32,
    pub(crate) part_size: u64,
}

impl Multipart {
    /// Compares `md5(part MD5s)-N` with the ETag; says what was verified.
    pub(crate) fn check(&self, part_md5s: &[[u8; 16]]) -> Result<String, String> {
        let got: [u8; 16] = md5::Md5::digest(part_md5s.concat()).into();
        let n = part_md5s.len();
        if n != self.parts as usize || got != self.digest {
            return Err(format!(
                "multipart ETag mismatch: the store says {}-{}, the bytes give {}-{n}",
                hex(&self.digest),
                self.parts,
                hex(&got)
            ));
        }
        Ok(format!("multipart ETag ({} parts)", self.parts))
    }
}

/// The MD5 of one stored part.
pub(crate) fn md5_of(read: impl FnMut(&mut [u8]) -> std::io::Result<usize>) -> std::io::Result<[u8; 16]> {
    let mut read = read;
    let mut hasher = md5::Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize().into());
        }
        hasher.update(&buf[..n]);
    }
}

/// Joins what a sequential [`Hasher`] and a separate multipart check verified.
pub(crate) fn join(sequential: String, multipart: Option<String>) -> String {
    match multipart {
        None => sequential,
        Some(m) if sequential.starts_with("size only") => m,
        Some(m) => format!("{sequential} and {m}"),
    }
}

impl Plan {
    /// Takes the multipart ETag check out of the plan, for the caller to run per part.
    pub(crate) fn split_multipart(&mut self) -> Option<Multipart> {
        self.multipart.take().map(|(digest, parts, part_size)| Multipart { digest, parts, part_size })
    }

    /// Nothing but the size is checked.
    pub(crate) fn is_empty(&self) -> bool {
        self.store.is_none() && self.md5.is_none() && self.multipart.is_none() && self.pinned_sha256.is_none()
    }
}

/// Computes the planned digests over the bytes, fed in order.
pub(crate) struct Hasher {
    plan: Plan,
    md5: Option<md5::Md5>,
    part: Option<PartMd5>,
    /// ring's SHA-256 (it uses the CPU's SHA extensions; sha2 0.10 in the static build took
    /// about 5x the CPU, see http-get's decision in ARCHITECTURE.md).
    sha256: Option<ring::digest::Context>,
    crc32: Option<crc32fast::Hasher>,
    crc32c: Option<u32>,
    crc64: Option<crc64fast_nvme::Digest>,
    bytes: u64,
}

struct PartMd5 {
    size: u64,
    filled: u64,
    current: md5::Md5,
    digests: Vec<u8>,
}

impl Hasher {
    pub(crate) fn new(plan: Plan) -> Self {
        let store = plan.store.as_ref().map(|(alg, _)| *alg);
        Self {
            md5: plan.md5.map(|_| md5::Md5::new()),
            part: plan.multipart.map(|(_, parts, size)| PartMd5 {
                size,
                filled: 0,
                current: md5::Md5::new(),
                digests: Vec::with_capacity(parts as usize * 16),
            }),
            sha256: (plan.pinned_sha256.is_some() || store == Some(Algorithm::Sha256))
                .then(|| ring::digest::Context::new(&ring::digest::SHA256)),
            crc32: (store == Some(Algorithm::Crc32)).then(crc32fast::Hasher::new),
            crc32c: (store == Some(Algorithm::Crc32c)).then_some(0),
            crc64: (store == Some(Algorithm::Crc64Nvme)).then(crc64fast_nvme::Digest::new),
            bytes: 0,
            plan,
        }
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.plan.is_empty()
    }

    pub(crate) fn update(&mut self, mut data: &[u8]) {
        self.bytes += data.len() as u64;
        if let Some(h) = &mut self.md5 {
            h.update(data);
        }
        if let Some(h) = &mut self.sha256 {
            h.update(data);
        }
        if let Some(h) = &mut self.crc32 {
            h.update(data);
        }
        if let Some(c) = &mut self.crc32c {
            *c = crc32c::crc32c_append(*c, data);
        }
        if let Some(h) = &mut self.crc64 {
            h.write(data);
        }
        if let Some(p) = &mut self.part {
            while !data.is_empty() {
                let room = usize::try_from(p.size - p.filled).unwrap_or(usize::MAX);
                let (now, rest) = data.split_at(room.min(data.len()));
                p.current.update(now);
                p.filled += now.len() as u64;
                if p.filled == p.size {
                    let done = std::mem::replace(&mut p.current, md5::Md5::new());
                    p.digests.extend_from_slice(&done.finalize());
                    p.filled = 0;
                }
                data = rest;
            }
        }
    }

    /// What was verified (e.g. `CRC64NVME and --sha256`), or what did not match.
    pub(crate) fn finish(mut self) -> Result<String, String> {
        let mut checked = Vec::new();
        if let Some((alg, want)) = &self.plan.store {
            let got = match alg {
                Algorithm::Crc64Nvme => self.crc64.take().map(|h| h.sum64().to_be_bytes().to_vec()),
                Algorithm::Crc32c => self.crc32c.map(|c| c.to_be_bytes().to_vec()),
                Algorithm::Crc32 => self.crc32.take().map(|h| h.finalize().to_be_bytes().to_vec()),
                Algorithm::Sha256 => self.sha256.clone().map(|h| h.finish().as_ref().to_vec()),
            }
            .unwrap_or_default();
            let got = base64::engine::general_purpose::STANDARD.encode(got);
            if &got != want {
                return Err(format!("{} mismatch: the store says {want}, the bytes give {got}", alg.name()));
            }
            checked.push(format!("{} checksum", alg.name()));
        }
        if let (Some(want), Some(h)) = (self.plan.md5, self.md5.take()) {
            let got: [u8; 16] = h.finalize().into();
            if got != want {
                return Err(format!("MD5 mismatch: the ETag says {}, the bytes give {}", hex(&want), hex(&got)));
            }
            checked.push("MD5 (ETag)".to_owned());
        }
        if let (Some((want, parts, _)), Some(mut p)) = (self.plan.multipart, self.part.take()) {
            if p.filled > 0 {
                p.digests.extend_from_slice(&p.current.finalize());
            }
            let n = p.digests.len() / 16;
            let got: [u8; 16] = md5::Md5::digest(&p.digests).into();
            if n != parts as usize || got != want {
                return Err(format!("multipart ETag mismatch: the store says {}-{parts}, the bytes give {}-{n}", hex(&want), hex(&got)));
            }
            checked.push(format!("multipart ETag ({parts} parts)"));
        }
        if let Some(want) = &self.plan.pinned_sha256 {
            let got = hex(&self.sha256.take().map(|h| h.finish().as_ref().to_vec()).unwrap_or_default());
            if &got != want {
                return Err(format!("SHA-256 mismatch: --sha256 says {want}, the bytes give {got}"));
            }
            checked.push("--sha256".to_owned());
        }
        if checked.is_empty() {
            return Ok(format!("size only ({})", self.plan.etag_note.unwrap_or("nothing to check against")));
        }
        Ok(checked.join(" and "))
    }

    /// The SHA-256 of the bytes, when it was computed.
    pub(crate) fn sha256_hex(&self) -> Option<String> {
        self.sha256.clone().map(|h| hex(h.finish().as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse_hex;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn feed(plan: Plan, data: &[u8], chunk: usize) -> Result<String, String> {
        let mut h = Hasher::new(plan);
        for c in data.chunks(chunk) {
            h.update(c);
        }
        h.finish()
    }

    #[test]
    fn single_part_md5_etag() {
        let data = b"The quick brown fox jumps over the lazy dog";
        let etag = Etag::parse("\"9e107d9d372bb6826bd81d3542a419d6\"");
        let e = Expected { etag: Some(etag), ..Expected::default() };
        assert_eq!(feed(e.plan(), data, 7), Ok("MD5 (ETag)".to_owned()));
        assert!(feed(e.plan(), b"tampered", 7).unwrap_err().contains("MD5 mismatch"));
    }

    #[test]
    fn multipart_etag_over_chunks_that_straddle_parts() {
        let data: Vec<u8> = (0..25u32).map(|i| i as u8).collect();
        let mut md5s = Vec::new();
        for part in data.chunks(10) {
            md5s.extend_from_slice(&md5::Md5::digest(part));
        }
        let etag = format!("\"{}-3\"", hex(&md5::Md5::digest(&md5s)));
        let e = Expected { etag: Some(Etag::parse(&etag)), part_size: Some(10), ..Expected::default() };
        assert_eq!(feed(e.plan(), &data, 7), Ok("multipart ETag (3 parts)".to_owned()));
        let wrong = Expected { part_size: Some(5), ..e.clone() };
        assert!(feed(wrong.plan(), &data, 7).is_err());
        let unknown = Expected { part_size: None, ..e };
        assert!(feed(unknown.plan(), &data, 7).unwrap().starts_with("size only"));
    }

    #[test]
    fn store_checksums_are_preferred_and_composite_ones_skipped() {
        let data = b"hello world";
        let crc = crc32c::crc32c(data).to_be_bytes();
        let e = Expected {
            etag: Some(Etag::parse("\"00000000000000000000000000000000\"")),
            crc32c: Some(b64(&crc)),
            crc64nvme: Some("AAAA-3".into()),
            ..Expected::default()
        };
        assert_eq!(feed(e.plan(), data, 3), Ok("CRC32C checksum".to_owned()), "the wrong MD5 ETag is not consulted");
        let mut d = crc64fast_nvme::Digest::new();
        d.write(data);
        let e = Expected { crc64nvme: Some(b64(&d.sum64().to_be_bytes())), ..Expected::default() };
        assert_eq!(feed(e.plan(), data, 4), Ok("CRC64NVME checksum".to_owned()));
        let e = Expected { crc32: Some(b64(&crc32fast::hash(data).to_be_bytes())), ..Expected::default() };
        assert_eq!(feed(e.plan(), data, 4), Ok("CRC32 checksum".to_owned()));
        let e = Expected { crc32: Some(b64(&[0, 0, 0, 0])), ..Expected::default() };
        assert!(feed(e.plan(), data, 4).unwrap_err().starts_with("CRC32 mismatch"));
    }

    #[test]
    fn the_stores_checksum_type_beats_the_suffix() {
        let data = b"hello world";
        // A store that writes composite values without `-N` but says COMPOSITE: not checked
        // against the whole object (that would reject every correct download).
        let composite = Expected { crc32: Some(b64(&[1, 2, 3, 4])), checksum_type: Some(ChecksumType::Composite), ..Expected::default() };
        assert_eq!(composite.plan().store, None);
        assert!(feed(composite.plan(), data, 4).is_ok());
        let full = Expected {
            crc32: Some(b64(&crc32fast::hash(data).to_be_bytes())),
            checksum_type: Some(ChecksumType::FullObject),
            ..Expected::default()
        };
        assert_eq!(feed(full.plan(), data, 4), Ok("CRC32 checksum".to_owned()));
    }

    #[test]
    fn pinned_sha256() {
        let data = b"abc";
        let want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert!(parse_hex::<32>(want).is_some());
        let e = Expected { pinned_sha256: Some(want.into()), ..Expected::default() };
        assert_eq!(feed(e.plan(), data, 1), Ok("--sha256".to_owned()));
        let e = Expected { pinned_sha256: Some("00".repeat(32)), ..Expected::default() };
        assert!(feed(e.plan(), data, 1).unwrap_err().contains("--sha256 says"));
    }
}
