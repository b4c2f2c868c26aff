//! What can be checked about an object's bytes, and checking it.
//!
//! A store tells about its bytes in up to three ways: a full-object checksum header
//! (`x-amz-checksum-crc64nvme`, `-crc32c`, `-crc32`, `-sha256` of type FULL_OBJECT), the ETag
//! (the MD5 for single-part uploads, `md5(part md5s)-N` for multipart ones), and the digest
//! the operator pins with `--sha256`. [`Expected::plan`] picks the cheapest sufficient check
//! (a store checksum over the ETag's MD5, which is four times slower), the pinned digest
//! always; [`Hasher`] computes them in one pass over the bytes in order, and [`Hasher::finish`]
//! says what was checked or what did not match. A ranged download takes out of the plan what
//! can be computed per range as the bytes arrive ([`Plan::split_ranged`]: a CRC, combined
//! across ranges; the MD5 of every stored part when ranges are whole parts) and leaves the
//! rest (SHA-256, a single-part MD5) to a [`Hasher`] fed in order.

use std::sync::Arc;

use base64::Engine as _;
use md5::Digest as _;

use crate::md5x::{Feed, Lanes, ObjectId};

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
    /// The CRC computed per range and combined; `None` for SHA-256 (only in order).
    fn crc(self) -> Option<crc_fast::CrcAlgorithm> {
        match self {
            Self::Crc64Nvme => Some(crc_fast::CrcAlgorithm::Crc64Nvme),
            Self::Crc32c => Some(crc_fast::CrcAlgorithm::Crc32Iscsi),
            Self::Crc32 => Some(crc_fast::CrcAlgorithm::Crc32IsoHdlc),
            Self::Sha256 => None,
        }
    }

    /// The big-endian bytes of a CRC value (as the store's base64 has them).
    fn crc_bytes(self, value: u64) -> Vec<u8> {
        match self {
            Self::Crc64Nvme => value.to_be_bytes().to_vec(),
            _ => u32::try_from(value).unwrap_or(0).to_be_bytes().to_vec(),
        }
    }

    /// Compares the store's base64 value `want` with the digest the bytes gave.
    fn check(self, want: &str, got: &[u8]) -> Result<String, String> {
        let got = base64::engine::general_purpose::STANDARD.encode(got);
        if got != want {
            return Err(format!("{} mismatch: the store says {want}, the bytes give {got}", self.name()));
        }
        Ok(format!("{} checksum", self.name()))
    }

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

/// Joins what the parts of a download verified (in the order given), leaving out the
/// "size only" of a part that had nothing to check when another part did.
pub(crate) fn join(checked: &[String]) -> String {
    let real: Vec<&str> = checked.iter().map(String::as_str).filter(|c| !c.is_empty() && !c.starts_with("size only")).collect();
    if !real.is_empty() {
        return real.join(" and ");
    }
    checked.iter().find(|c| !c.is_empty()).cloned().unwrap_or_else(|| "size only (nothing to check against)".to_owned())
}

/// What a ranged download computes per range as the bytes arrive (see
/// [`Plan::split_ranged`]).
#[derive(Clone, Default)]
pub(crate) struct Ranged {
    crc: Option<(Algorithm, crc_fast::CrcAlgorithm, String)>,
    multipart: Option<Multipart>,
    /// The parts' MD5s eight at a time on one core, where the CPU can ([`crate::md5x`]),
    /// with this object's number there.
    lanes: Option<(&'static Lanes, Arc<ObjectId>)>,
}

/// One range's share: its CRC and the MD5s of the parts it holds.
pub(crate) struct RangeState {
    crc: Option<crc_fast::Digest>,
    len: u64,
    parts: Option<Parts>,
}

/// Where a range's bytes go for the MD5s of its parts.
enum Parts {
    /// Hashed by the range's writer (`md-5`).
    Here(PartMd5),
    /// Sent to the lanes service.
    Lanes(Feed),
}

impl podinit_transfer::RangeDigest for Ranged {
    type State = RangeState;

    fn is_idle(&self) -> bool {
        self.crc.is_none() && self.multipart.is_none()
    }

    fn start(&self, range: &std::ops::Range<u64>) -> RangeState {
        let parts = self.multipart.map(|m| match &self.lanes {
            Some((lanes, object)) => Parts::Lanes(lanes.feed(object.id, range, m.part_size)),
            None => Parts::Here(PartMd5::new(m.part_size, 1)),
        });
        RangeState { crc: self.crc.as_ref().map(|(_, alg, _)| crc_fast::Digest::new(*alg)), len: 0, parts }
    }

    fn update(state: &mut RangeState, data: &[u8]) {
        state.len += data.len() as u64;
        if let Some(crc) = &mut state.crc {
            crc.update(data);
        }
        match &mut state.parts {
            Some(Parts::Here(parts)) => parts.update(data),
            Some(Parts::Lanes(feed)) => feed.update(data),
            None => {}
        }
    }
}

impl Ranged {
    /// The CRC combined across the ranges and the part MD5s checked (empty when there was
    /// nothing to check), or what did not match. Blocking: waits for the lanes service to hash
    /// what it holds of the object (call it off the runtime's threads).
    pub(crate) fn check(&self, states: Vec<RangeState>) -> Result<String, String> {
        let mut checked = Vec::new();
        let mut md5s = Vec::new();
        let mut crc = self.crc.as_ref().map(|(_, alg, _)| crc_fast::checksum(*alg, &[]));
        for state in states {
            if let (Some((_, alg, _)), Some(sum), Some(digest)) = (&self.crc, &mut crc, &state.crc) {
                *sum = crc_fast::checksum_combine(*alg, *sum, digest.finalize(), state.len);
            }
            if let Some(Parts::Here(parts)) = state.parts {
                md5s.extend(parts.finish());
            }
        }
        if let (Some((lanes, object)), Some(multipart)) = (&self.lanes, &self.multipart) {
            let digests = lanes.finish(object.id);
            for part in 0..multipart.parts as usize {
                md5s.push(*digests.get(&part).ok_or_else(|| format!("multipart ETag: part {} was not hashed", part + 1))?);
            }
        }
        if let (Some((alg, _, want)), Some(sum)) = (&self.crc, crc) {
            checked.push(alg.check(want, &alg.crc_bytes(sum))?);
        }
        if let Some(multipart) = &self.multipart {
            checked.push(multipart.check(&md5s)?);
        }
        Ok(checked.join(" and "))
    }
}

impl Plan {
    /// Takes out of the plan what a ranged download computes per range: a CRC checksum of the
    /// store, and the multipart ETag when `whole_parts` (every range but the last a whole
    /// number of stored parts).
    pub(crate) fn split_ranged(&mut self, whole_parts: impl Fn(u64) -> bool) -> Ranged {
        let crc = match &self.store {
            Some((alg, want)) => alg.crc().map(|crc| (*alg, crc, want.clone())),
            None => None,
        };
        if crc.is_some() {
            self.store = None;
        }
        let multipart = match self.multipart {
            Some((_, _, size)) if whole_parts(size) => self.split_multipart(),
            _ => None,
        };
        let lanes = multipart.and_then(|_| Lanes::shared()).map(|lanes| (lanes, lanes.object()));
        Ranged { crc, multipart, lanes }
    }

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
    crc: Option<crc_fast::Digest>,
    bytes: u64,
}

/// The MD5 of every stored part, from bytes fed in order starting at a part's first byte.
pub(crate) struct PartMd5 {
    size: u64,
    filled: u64,
    current: md5::Md5,
    digests: Vec<[u8; 16]>,
}

impl PartMd5 {
    fn new(size: u64, parts: u32) -> Self {
        Self { size, filled: 0, current: md5::Md5::new(), digests: Vec::with_capacity(parts as usize) }
    }

    fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = usize::try_from(self.size - self.filled).unwrap_or(usize::MAX);
            let (now, rest) = data.split_at(room.min(data.len()));
            self.current.update(now);
            self.filled += now.len() as u64;
            if self.filled == self.size {
                let done = std::mem::replace(&mut self.current, md5::Md5::new());
                self.digests.push(done.finalize().into());
                self.filled = 0;
            }
            data = rest;
        }
    }

    /// The MD5s (a last part shorter than the others included).
    fn finish(mut self) -> Vec<[u8; 16]> {
        if self.filled > 0 {
            self.digests.push(self.current.finalize().into());
        }
        self.digests
    }
}

impl Hasher {
    pub(crate) fn new(plan: Plan) -> Self {
        let store = plan.store.as_ref().map(|(alg, _)| *alg);
        Self {
            md5: plan.md5.map(|_| md5::Md5::new()),
            part: plan.multipart.map(|(_, parts, size)| PartMd5::new(size, parts)),
            sha256: (plan.pinned_sha256.is_some() || store == Some(Algorithm::Sha256))
                .then(|| ring::digest::Context::new(&ring::digest::SHA256)),
            crc: store.and_then(Algorithm::crc).map(crc_fast::Digest::new),
            bytes: 0,
            plan,
        }
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.plan.is_empty()
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        if let Some(h) = &mut self.md5 {
            h.update(data);
        }
        if let Some(h) = &mut self.sha256 {
            h.update(data);
        }
        if let Some(h) = &mut self.crc {
            h.update(data);
        }
        if let Some(p) = &mut self.part {
            p.update(data);
        }
    }

    /// What was verified (e.g. `CRC64NVME and --sha256`), or what did not match.
    pub(crate) fn finish(mut self) -> Result<String, String> {
        let mut checked = Vec::new();
        if let Some((alg, want)) = &self.plan.store {
            let got = match alg {
                Algorithm::Sha256 => self.sha256.clone().map(|h| h.finish().as_ref().to_vec()),
                _ => self.crc.take().map(|h| alg.crc_bytes(h.finalize())),
            }
            .unwrap_or_default();
            checked.push(alg.check(want, &got)?);
        }
        if let (Some(want), Some(h)) = (self.plan.md5, self.md5.take()) {
            let got: [u8; 16] = h.finalize().into();
            if got != want {
                return Err(format!("MD5 mismatch: the ETag says {}, the bytes give {}", hex(&want), hex(&got)));
            }
            checked.push("MD5 (ETag)".to_owned());
        }
        if let (Some((digest, parts, part_size)), Some(p)) = (self.plan.multipart, self.part.take()) {
            checked.push(Multipart { digest, parts, part_size }.check(&p.finish())?);
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

    /// A ranged download's share of the plan, over ranges fed apart and in any order.
    fn ranged(plan: &mut Plan, data: &[u8], range: usize, whole_parts: impl Fn(u64) -> bool) -> Result<String, String> {
        use podinit_transfer::RangeDigest as _;
        let ranged = plan.split_ranged(whole_parts);
        let mut states: Vec<(usize, RangeState)> = data
            .chunks(range)
            .enumerate()
            .rev()
            .map(|(i, piece)| {
                let at = (i * range) as u64;
                let mut state = ranged.start(&(at..at + piece.len() as u64));
                for c in piece.chunks(3) {
                    Ranged::update(&mut state, c);
                }
                (i, state)
            })
            .collect();
        states.sort_by_key(|(i, _)| *i);
        ranged.check(states.into_iter().map(|(_, s)| s).collect())
    }

    #[test]
    fn crcs_combine_across_ranges_and_part_md5s_stream_when_ranges_are_whole_parts() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let mut d = crc64fast_nvme::Digest::new();
        d.write(&data);
        for (expected, name) in [
            (Expected { crc64nvme: Some(b64(&d.sum64().to_be_bytes())), ..Expected::default() }, "CRC64NVME checksum"),
            (Expected { crc32c: Some(b64(&crc32c::crc32c(&data).to_be_bytes())), ..Expected::default() }, "CRC32C checksum"),
            (Expected { crc32: Some(b64(&crc32fast::hash(&data).to_be_bytes())), ..Expected::default() }, "CRC32 checksum"),
        ] {
            for range in [1, 7, 100, 999, 1000, 4096] {
                let mut plan = expected.plan();
                assert_eq!(ranged(&mut plan, &data, range, |_| true), Ok(name.to_owned()), "{name}, ranges of {range}");
                assert_eq!(Hasher::new(plan).finish().map(|s| s.starts_with("size only")), Ok(true), "nothing left in order");
            }
            let mut tampered = data.clone();
            tampered[500] ^= 1;
            assert!(ranged(&mut expected.plan(), &tampered, 64, |_| true).unwrap_err().contains("mismatch"));
        }
        // A SHA-256 of the store stays in order.
        let mut plan = Expected { sha256: Some(b64(&[0; 32])), ..Expected::default() }.plan();
        assert_eq!(ranged(&mut plan, &data, 64, |_| true), Ok(String::new()));
        assert!(!Hasher::new(plan).is_idle());

        let mut md5s = Vec::new();
        for part in data.chunks(64) {
            md5s.extend_from_slice(&md5::Md5::digest(part));
        }
        let etag = format!("\"{}-{}\"", hex(&md5::Md5::digest(&md5s)), data.len().div_ceil(64));
        let e = Expected { etag: Some(Etag::parse(&etag)), part_size: Some(64), ..Expected::default() };
        for range in [64, 128, 192, 1024] {
            assert_eq!(
                ranged(&mut e.plan(), &data, range, |part| (range as u64).is_multiple_of(part)),
                Ok("multipart ETag (16 parts)".to_owned())
            );
        }
        // Ranges that are not whole parts leave the check in the plan (read back apart).
        let mut plan = e.plan();
        assert_eq!(ranged(&mut plan, &data, 100, |part| 100u64.is_multiple_of(part)), Ok(String::new()));
        assert!(plan.split_multipart().is_some());
        let mut tampered = data.clone();
        tampered[999] ^= 1;
        assert!(ranged(&mut e.plan(), &tampered, 128, |_| true).unwrap_err().contains("multipart ETag mismatch"));
    }

    #[test]
    fn join_keeps_what_was_checked_in_order() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(join(&s(&["CRC64NVME checksum", "--sha256"])), "CRC64NVME checksum and --sha256");
        assert_eq!(join(&s(&["", "size only (no checksum)", "multipart ETag (3 parts)"])), "multipart ETag (3 parts)");
        assert_eq!(join(&s(&["", "size only (no checksum)"])), "size only (no checksum)");
    }
}
