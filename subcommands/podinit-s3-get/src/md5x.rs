//! The MD5s of many stored parts at once, eight in step on one core (AVX2): what a multipart
//! ETag costs is the MD5 of every byte, and MD5 is a chain of dependent steps a core runs at
//! about 5 cycles per byte, whatever the implementation (`md-5`'s assembly included); the parts
//! of an upload are independent, so eight of them fill the eight 32-bit lanes of one AVX2
//! register and each step costs one vector instruction instead of eight (the multi-buffer
//! method of Intel's ISA-L `md5_mb`).
//!
//! Ranges feed a [`Lanes`] service thread through a bounded channel ([`Feed`]): the bytes of
//! each part in 64-byte multiples, then its tail, tagged with the attempt of the range that sent
//! them (a retried range starts its parts over; what an abandoned attempt still sends is
//! ignored). [`Lanes::finish`] waits for what was sent and returns each part's digest.
//! Without AVX2 (other CPUs, arm64) the caller hashes each part with `md-5`.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};

/// Bytes of a part a feed collects before sending them (a multiple of 64).
const BATCH: usize = 256 << 10;

/// Messages queued to the service (at most this many, about 8 MiB).
const QUEUE: usize = 32;

enum Msg {
    /// Bytes of `part` (a multiple of 64), the next after those sent before.
    Data { part: usize, attempt: u64, bytes: Vec<u8> },
    /// The part's last bytes (under 64) and its length.
    End { part: usize, attempt: u64, tail: Vec<u8>, len: u64 },
    /// Reply with the digests of every part ended so far, once all that came before is hashed.
    Finish(std::sync::mpsc::Sender<HashMap<usize, [u8; 16]>>),
}

/// The service: one thread hashing every part sent to it.
pub(crate) struct Lanes {
    tx: SyncSender<Msg>,
    attempts: AtomicU64,
}

impl Lanes {
    /// The service, when this CPU has AVX2.
    pub(crate) fn start() -> Option<Arc<Self>> {
        if !kernel::available() {
            return None;
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        std::thread::Builder::new().name("md5-lanes".into()).spawn(move || serve(&rx)).ok()?;
        Some(Arc::new(Self { tx, attempts: AtomicU64::new(0) }))
    }

    /// A feed for the parts of `range` (which starts at a part's first byte), of `part_size`.
    pub(crate) fn feed(&self, range: &Range<u64>, part_size: u64) -> Feed {
        let attempt = self.attempts.fetch_add(1, Ordering::Relaxed) + 1;
        let part = usize::try_from(range.start / part_size).unwrap_or(usize::MAX);
        Feed { tx: self.tx.clone(), attempt, part_size, end: range.end, at: range.start, part, filled: 0, buf: Vec::new() }
    }

    /// The digest of every part ended so far (by its latest attempt), once everything sent
    /// before is hashed. Blocks briefly: what is left is at most the queue.
    pub(crate) fn finish(&self) -> HashMap<usize, [u8; 16]> {
        let (reply, answer) = std::sync::mpsc::channel();
        if self.tx.send(Msg::Finish(reply)).is_err() {
            return HashMap::new();
        }
        answer.recv().unwrap_or_default()
    }
}

/// What one range sends: its bytes cut at part boundaries.
pub(crate) struct Feed {
    tx: SyncSender<Msg>,
    attempt: u64,
    part_size: u64,
    /// The end of the range.
    end: u64,
    /// The object offset of the next byte.
    at: u64,
    part: usize,
    /// Bytes of the current part seen (sent or in `buf`).
    filled: u64,
    buf: Vec<u8>,
}

impl Feed {
    pub(crate) fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let part_end = ((self.part as u64 + 1) * self.part_size).min(self.end);
            let room = usize::try_from(part_end - self.at).unwrap_or(usize::MAX);
            let (now, rest) = data.split_at(room.min(data.len()));
            self.buf.extend_from_slice(now);
            self.at += now.len() as u64;
            self.filled += now.len() as u64;
            data = rest;
            if self.at == part_end {
                let whole = self.buf.len() - self.buf.len() % 64;
                let tail = self.buf.split_off(whole);
                self.send_data();
                let end = Msg::End { part: self.part, attempt: self.attempt, tail, len: self.filled };
                let _ = self.tx.send(end);
                self.part += 1;
                self.filled = 0;
            } else if self.buf.len() >= BATCH {
                let whole = self.buf.len() - self.buf.len() % 64;
                let rest = self.buf.split_off(whole);
                self.send_data();
                self.buf = rest;
            }
        }
    }

    fn send_data(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let bytes = std::mem::replace(&mut self.buf, Vec::with_capacity(BATCH + 64));
        // A service that stopped (its owner dropped) needs nothing more.
        let _ = self.tx.send(Msg::Data { part: self.part, attempt: self.attempt, bytes });
    }
}

/// One part being hashed.
struct Stream {
    attempt: u64,
    state: [u32; 4],
    queue: VecDeque<Vec<u8>>,
    /// Blocks of the front buffer already hashed.
    done: usize,
    end: Option<(Vec<u8>, u64)>,
}

impl Stream {
    fn new(attempt: u64) -> Self {
        Self { attempt, state: kernel::INIT, queue: VecDeque::new(), done: 0, end: None }
    }

    /// Blocks ready in the front buffer.
    fn ready(&self) -> usize {
        self.queue.front().map_or(0, |b| b.len() / 64 - self.done)
    }
}

fn serve(rx: &Receiver<Msg>) {
    let mut streams: HashMap<usize, Stream> = HashMap::new();
    let mut digests: HashMap<usize, (u64, [u8; 16])> = HashMap::new();
    let mut finish: Vec<std::sync::mpsc::Sender<HashMap<usize, [u8; 16]>>> = Vec::new();
    loop {
        // Take what has come; wait only when there is nothing to hash.
        let idle = streams.values().all(|s| s.ready() == 0);
        let msg = if idle && finish.is_empty() {
            match rx.recv() {
                Ok(msg) => Some(msg),
                Err(_) => return,
            }
        } else {
            rx.try_recv().ok()
        };
        if let Some(msg) = msg {
            match msg {
                Msg::Data { part, attempt, bytes } => {
                    if let Some(stream) = current(&mut streams, &mut digests, part, attempt) {
                        stream.queue.push_back(bytes);
                    }
                }
                Msg::End { part, attempt, tail, len } => {
                    if let Some(stream) = current(&mut streams, &mut digests, part, attempt) {
                        stream.end = Some((tail, len));
                    }
                }
                Msg::Finish(reply) => finish.push(reply),
            }
            // Keep taking messages while they come without waiting.
            continue;
        }
        hash_some(&mut streams);
        // Parts with every block hashed and their end known are done.
        let ended: Vec<usize> = streams.iter().filter(|(_, s)| s.queue.is_empty() && s.end.is_some()).map(|(p, _)| *p).collect();
        for part in ended {
            if let Some(mut stream) = streams.remove(&part)
                && let Some((tail, len)) = stream.end.take()
            {
                digests.insert(part, (stream.attempt, kernel::finalize(stream.state, &tail, len)));
            }
        }
        if !finish.is_empty() && streams.values().all(|s| s.ready() == 0) {
            let answer: HashMap<usize, [u8; 16]> = digests.iter().map(|(p, (_, d))| (*p, *d)).collect();
            for reply in finish.drain(..) {
                let _ = reply.send(answer.clone());
            }
        }
    }
}

/// The stream of `part` for `attempt`: a newer attempt starts the part over (even one already
/// hashed); an older one's bytes are dropped (`None`).
fn current<'a>(
    streams: &'a mut HashMap<usize, Stream>,
    digests: &mut HashMap<usize, (u64, [u8; 16])>,
    part: usize,
    attempt: u64,
) -> Option<&'a mut Stream> {
    match digests.get(&part) {
        Some((done, _)) if *done >= attempt => return None,
        Some(_) => {
            digests.remove(&part);
        }
        None => {}
    }
    let stream = streams.entry(part).or_insert_with(|| Stream::new(attempt));
    if attempt > stream.attempt {
        *stream = Stream::new(attempt);
    }
    (attempt == stream.attempt).then_some(stream)
}

/// Hashes the ready blocks of up to eight streams in step (as many blocks as the shortest has).
fn hash_some(streams: &mut HashMap<usize, Stream>) {
    let mut lanes: Vec<&mut Stream> = streams.values_mut().filter(|s| s.ready() > 0).collect();
    lanes.sort_by_key(|s| std::cmp::Reverse(s.ready()));
    lanes.truncate(kernel::LANES);
    let Some(n) = lanes.iter().map(|s| s.ready()).min() else { return };
    let mut state = [[0u32; kernel::LANES]; 4];
    for (l, s) in lanes.iter().enumerate() {
        kernel::put(&mut state, l, s.state);
    }
    {
        let blocks: Vec<&[u8]> = lanes
            .iter()
            .map(|s| {
                let front = s.queue.front().map_or(&[][..], Vec::as_slice);
                &front[s.done * 64..(s.done + n) * 64]
            })
            .collect();
        kernel::compress(&mut state, &blocks, n);
    }
    for (l, s) in lanes.iter_mut().enumerate() {
        s.state = kernel::get(&state, l);
        s.done += n;
        if s.ready() == 0 {
            s.queue.pop_front();
            s.done = 0;
        }
    }
}

mod kernel {
    pub(super) const LANES: usize = 8;
    pub(super) const INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

    /// Sets lane `lane` of `state` (`state[word][lane]`).
    pub(super) fn put(state: &mut [[u32; LANES]; 4], lane: usize, words: [u32; 4]) {
        for (row, word) in state.iter_mut().zip(words) {
            row[lane] = word;
        }
    }

    /// Lane `lane` of `state`.
    pub(super) fn get(state: &[[u32; LANES]; 4], lane: usize) -> [u32; 4] {
        state.map(|row| row[lane])
    }

    pub(super) fn available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::is_x86_feature_detected!("avx2")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// `n` blocks of each lane's bytes (at most [`LANES`] lanes, each at least `n * 64` bytes)
    /// into the lanes' states (`state[word][lane]`).
    pub(super) fn compress(state: &mut [[u32; LANES]; 4], blocks: &[&[u8]], n: usize) {
        assert!(!blocks.is_empty() && blocks.len() <= LANES && blocks.iter().all(|b| b.len() >= n * 64), "lanes too short");
        #[cfg(target_arch = "x86_64")]
        {
            assert!(available(), "AVX2 is checked before the service starts");
            #[expect(unsafe_code, reason = "AVX2 intrinsics; the function needs the CPU feature, checked above")]
            // SAFETY: AVX2 is available (checked); every lane holds n blocks (asserted).
            unsafe {
                avx2::compress(state, blocks, n);
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (state, blocks, n);
            unreachable!("the service starts only with AVX2");
        }
    }

    /// The digest of a stream of `len` bytes whose state is `state` after every whole block but
    /// `tail` (its last `len % 64` bytes).
    pub(super) fn finalize(state: [u32; 4], tail: &[u8], len: u64) -> [u8; 16] {
        let mut last = tail.to_vec();
        last.push(0x80);
        while last.len() % 64 != 56 {
            last.push(0);
        }
        last.extend_from_slice(&(len.wrapping_mul(8)).to_le_bytes());
        let mut lanes = [[0u32; LANES]; 4];
        put(&mut lanes, 0, state);
        compress(&mut lanes, &[&last], last.len() / 64);
        let mut out = [0u8; 16];
        for (bytes, word) in out.chunks_exact_mut(4).zip(get(&lanes, 0)) {
            bytes.copy_from_slice(&word.to_le_bytes());
        }
        out
    }

    #[cfg(target_arch = "x86_64")]
    #[expect(unsafe_code, reason = "AVX2 intrinsics and unaligned loads from checked slices")]
    mod avx2 {
        use std::arch::x86_64::{
            __m256i, _mm_cvtsi32_si128, _mm256_add_epi32, _mm256_and_si256, _mm256_loadu_si256, _mm256_or_si256, _mm256_permute2x128_si256,
            _mm256_set1_epi32, _mm256_sll_epi32, _mm256_srl_epi32, _mm256_unpackhi_epi32, _mm256_unpackhi_epi64, _mm256_unpacklo_epi32,
            _mm256_unpacklo_epi64, _mm256_xor_si256,
        };

        use super::LANES;

        const K: [u32; 64] = [
            0xd76a_a478,
            0xe8c7_b756,
            0x2420_70db,
            0xc1bd_ceee,
            0xf57c_0faf,
            0x4787_c62a,
            0xa830_4613,
            0xfd46_9501,
            0x6980_98d8,
            0x8b44_f7af,
            0xffff_5bb1,
            0x895c_d7be,
            0x6b90_1122,
            0xfd98_7193,
            0xa679_438e,
            0x49b4_0821,
            0xf61e_2562,
            0xc040_b340,
            0x265e_5a51,
            0xe9b6_c7aa,
            0xd62f_105d,
            0x0244_1453,
            0xd8a1_e681,
            0xe7d3_fbc8,
            0x21e1_cde6,
            0xc337_07d6,
            0xf4d5_0d87,
            0x455a_14ed,
            0xa9e3_e905,
            0xfcef_a3f8,
            0x676f_02d9,
            0x8d2a_4c8a,
            0xfffa_3942,
            0x8771_f681,
            0x6d9d_6122,
            0xfde5_380c,
            0xa4be_ea44,
            0x4bde_cfa9,
            0xf6bb_4b60,
            0xbebf_bc70,
            0x289b_7ec6,
            0xeaa1_27fa,
            0xd4ef_3085,
            0x0488_1d05,
            0xd9d4_d039,
            0xe6db_99e5,
            0x1fa2_7cf8,
            0xc4ac_5665,
            0xf429_2244,
            0x432a_ff97,
            0xab94_23a7,
            0xfc93_a039,
            0x655b_59c3,
            0x8f0c_cc92,
            0xffef_f47d,
            0x8584_5dd1,
            0x6fa8_7e4f,
            0xfe2c_e6e0,
            0xa301_4314,
            0x4e08_11a1,
            0xf753_7e82,
            0xbd3a_f235,
            0x2ad7_d2bb,
            0xeb86_d391,
        ];
        const S: [i32; 16] = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];

        #[target_feature(enable = "avx2")]
        fn rotl(x: __m256i, s: i32) -> __m256i {
            _mm256_or_si256(_mm256_sll_epi32(x, _mm_cvtsi32_si128(s)), _mm256_srl_epi32(x, _mm_cvtsi32_si128(32 - s)))
        }

        /// Word `k` of every lane, from each lane's 8 words (an 8×8 transpose).
        #[target_feature(enable = "avx2")]
        fn transpose(r: [__m256i; 8]) -> [__m256i; 8] {
            let t0 = _mm256_unpacklo_epi32(r[0], r[1]);
            let t1 = _mm256_unpackhi_epi32(r[0], r[1]);
            let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
            let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
            let t4 = _mm256_unpacklo_epi32(r[4], r[5]);
            let t5 = _mm256_unpackhi_epi32(r[4], r[5]);
            let t6 = _mm256_unpacklo_epi32(r[6], r[7]);
            let t7 = _mm256_unpackhi_epi32(r[6], r[7]);
            let u0 = _mm256_unpacklo_epi64(t0, t2);
            let u1 = _mm256_unpackhi_epi64(t0, t2);
            let u2 = _mm256_unpacklo_epi64(t1, t3);
            let u3 = _mm256_unpackhi_epi64(t1, t3);
            let u4 = _mm256_unpacklo_epi64(t4, t6);
            let u5 = _mm256_unpackhi_epi64(t4, t6);
            let u6 = _mm256_unpacklo_epi64(t5, t7);
            let u7 = _mm256_unpackhi_epi64(t5, t7);
            [
                _mm256_permute2x128_si256::<0x20>(u0, u4),
                _mm256_permute2x128_si256::<0x20>(u1, u5),
                _mm256_permute2x128_si256::<0x20>(u2, u6),
                _mm256_permute2x128_si256::<0x20>(u3, u7),
                _mm256_permute2x128_si256::<0x31>(u0, u4),
                _mm256_permute2x128_si256::<0x31>(u1, u5),
                _mm256_permute2x128_si256::<0x31>(u2, u6),
                _mm256_permute2x128_si256::<0x31>(u3, u7),
            ]
        }

        /// # Safety
        /// The CPU has AVX2; every lane of `blocks` holds at least `n * 64` bytes.
        #[target_feature(enable = "avx2")]
        pub(super) unsafe fn compress(state: &mut [[u32; LANES]; 4], blocks: &[&[u8]], n: usize) {
            // SAFETY: [u32; 8] and __m256i have the same size; unaligned loads.
            let load = |words: &[u32; LANES]| unsafe { _mm256_loadu_si256(words.as_ptr().cast()) };
            let (mut a, mut b, mut c, mut d) = (load(&state[0]), load(&state[1]), load(&state[2]), load(&state[3]));
            let ones = _mm256_set1_epi32(-1);
            for i in 0..n {
                let mut m = [ones; 16];
                for half in 0..2 {
                    let mut rows = [ones; 8];
                    for (l, row) in rows.iter_mut().enumerate() {
                        // Unused lanes repeat lane 0 (their results are not read).
                        let lane = blocks.get(l).unwrap_or(&blocks[0]);
                        let at = i * 64 + half * 32;
                        let bytes = &lane[at..at + 32];
                        // SAFETY: 32 bytes in bounds (the slice above); unaligned load.
                        *row = unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) };
                    }
                    m[half * 8..half * 8 + 8].copy_from_slice(&transpose(rows));
                }
                let (aa, bb, cc, dd) = (a, b, c, d);
                for step in 0..64 {
                    let (f, g) = match step / 16 {
                        0 => (_mm256_xor_si256(d, _mm256_and_si256(b, _mm256_xor_si256(c, d))), step),
                        1 => (_mm256_xor_si256(c, _mm256_and_si256(d, _mm256_xor_si256(b, c))), (5 * step + 1) % 16),
                        2 => (_mm256_xor_si256(_mm256_xor_si256(b, c), d), (3 * step + 5) % 16),
                        _ => (_mm256_xor_si256(c, _mm256_or_si256(b, _mm256_xor_si256(d, ones))), (7 * step) % 16),
                    };
                    let k = _mm256_set1_epi32(K[step].cast_signed());
                    let sum = _mm256_add_epi32(_mm256_add_epi32(a, f), _mm256_add_epi32(k, m[g]));
                    let rotated = rotl(sum, S[(step / 16) * 4 + step % 4]);
                    let next_b = _mm256_add_epi32(b, rotated);
                    a = d;
                    d = c;
                    c = b;
                    b = next_b;
                }
                a = _mm256_add_epi32(a, aa);
                b = _mm256_add_epi32(b, bb);
                c = _mm256_add_epi32(c, cc);
                d = _mm256_add_epi32(d, dd);
            }
            let store = |v: __m256i, words: &mut [u32; LANES]| {
                // SAFETY: [u32; 8] and __m256i have the same size; unaligned store.
                unsafe { std::arch::x86_64::_mm256_storeu_si256(words.as_mut_ptr().cast(), v) }
            };
            store(a, &mut state[0]);
            store(b, &mut state[1]);
            store(c, &mut state[2]);
            store(d, &mut state[3]);
        }
    }
}

#[cfg(test)]
mod tests {
    use md5::Digest as _;

    use super::*;

    #[test]
    #[ignore = "timing"]
    fn speed() {
        let streams: Vec<Vec<u8>> = (0..8).map(|l| data(32 << 20, l)).collect();
        let t = std::time::Instant::now();
        for s in &streams {
            std::hint::black_box(md5::Md5::digest(s));
        }
        let scalar = t.elapsed();
        let t = std::time::Instant::now();
        let mut state = [[0u32; kernel::LANES]; 4];
        let lanes: Vec<&[u8]> = streams.iter().map(|s| &s[..]).collect();
        kernel::compress(&mut state, &lanes, (32 << 20) / 64);
        std::hint::black_box(state);
        panic!("256 MiB: md-5 {scalar:?}, 8 lanes {:?}", t.elapsed());
    }

    fn data(len: usize, seed: u32) -> Vec<u8> {
        (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed).rotate_left(7) as u8).collect()
    }

    #[test]
    fn every_length_matches_md5() {
        if !kernel::available() {
            return;
        }
        for len in [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000, 4096 + 17] {
            let whole = len - len % 64;
            let state = kernel::INIT.map(|word| [word; kernel::LANES]);
            // Eight different streams in step, and three (the other lanes unused).
            for count in [8, 3] {
                let streams: Vec<Vec<u8>> = (0..count).map(|l| data(len, l)).collect();
                let lanes: Vec<&[u8]> = streams.iter().map(|s| &s[..whole]).collect();
                let mut state = state;
                kernel::compress(&mut state, &lanes, whole / 64);
                for (l, stream) in streams.iter().enumerate() {
                    let got = kernel::finalize(kernel::get(&state, l), &stream[whole..], len as u64);
                    assert_eq!(got, <[u8; 16]>::from(md5::Md5::digest(stream)), "{len} bytes, lane {l} of {count}");
                }
            }
        }
    }

    #[test]
    fn parts_fed_by_ranges_and_retries_match_md5() {
        let Some(lanes) = Lanes::start() else { return };
        let part = 1000u64;
        let object = data(10_500, 2);
        let ranges: Vec<Range<u64>> = (0..object.len() as u64).step_by(3000).map(|s| s..(s + 3000).min(object.len() as u64)).collect();
        // An attempt that stops halfway, then the range again; the stale feed sends late.
        let mut stale = lanes.feed(&ranges[1], part);
        stale.update(&object[3000..4500]);
        for range in &ranges {
            let mut feed = lanes.feed(range, part);
            for chunk in object[range.start as usize..range.end as usize].chunks(777) {
                feed.update(chunk);
            }
        }
        stale.update(&[0u8; 3000][..1500]);
        let digests = lanes.finish();
        assert_eq!(digests.len(), 11);
        for (p, chunk) in object.chunks(part as usize).enumerate() {
            assert_eq!(digests[&p], <[u8; 16]>::from(md5::Md5::digest(chunk)), "part {p}");
        }
    }
}
