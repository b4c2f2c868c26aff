//! The MD5s of many stored parts at once, eight in step on one core (AVX2): what a multipart
//! ETag costs is the MD5 of every byte, and MD5 is a chain of dependent steps a core runs at
//! about 5 cycles per byte, whatever the implementation (`md-5`'s assembly included); the parts
//! of an upload are independent, so eight of them fill the eight 32-bit lanes of one AVX2
//! register and each step costs one vector instruction instead of eight (the multi-buffer
//! method of Intel's ISA-L `md5_mb`).
//!
//! Ranges feed one [`Lanes`] service thread per process (a prefix's objects share it, so their
//! parts fill the lanes together) through a bounded channel ([`Feed`]): the bytes of each part
//! in 64-byte multiples, then its tail, tagged with the object and the attempt of the range that
//! sent them (a retried range starts its parts over; what an abandoned attempt still sends is
//! ignored). The oldest batches go into the lanes first. [`Lanes::finish`] waits for what was
//! sent of an object and returns each part's digest; dropping the object's [`ObjectId`] (a
//! failed download) has the service forget what it holds of it.
//! Without AVX2 (other CPUs, arm64) the caller hashes each part with `md-5`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};

/// Bytes of a part a feed collects before sending them (a multiple of 64).
const BATCH: usize = 128 << 10;

/// Messages queued to the service: at most this many (1 MiB), then the feeds wait (a pod's
/// memory limit counts every buffer).
const QUEUE: usize = 8;

/// Batches the service holds (2 MiB): past this it hashes before it takes more.
const HELD: usize = 16;

/// A part of an object: (object, part index).
type Key = (u64, usize);

/// Where the digests of an object's parts go (by part index).
type Reply = std::sync::mpsc::Sender<HashMap<usize, [u8; 16]>>;

enum Msg {
    /// Bytes of a part (a multiple of 64), the next after those sent before.
    Data { key: Key, attempt: u64, bytes: Vec<u8> },
    /// The part's last bytes (under 64) and its length.
    End { key: Key, attempt: u64, tail: Vec<u8>, len: u64 },
    /// Reply with the digests of every part of the object ended so far, once all that came
    /// before is hashed; the object is then forgotten.
    Finish(u64, Reply),
    /// Forget the object (its download failed or was stopped).
    Forget(u64),
}

/// The service: one thread hashing every part sent to it.
pub(crate) struct Lanes {
    tx: SyncSender<Msg>,
    /// Objects and attempts, numbered.
    ids: AtomicU64,
}

impl Lanes {
    /// The process's service, when this CPU has AVX2.
    pub(crate) fn shared() -> Option<&'static Self> {
        static LANES: OnceLock<Option<Lanes>> = OnceLock::new();
        LANES
            .get_or_init(|| {
                if !kernel::available() {
                    return None;
                }
                let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
                std::thread::Builder::new().name("md5-lanes".into()).spawn(move || serve(&rx)).ok()?;
                Some(Self { tx, ids: AtomicU64::new(0) })
            })
            .as_ref()
    }

    /// A number for a new object; dropping the last clone of it forgets the object (what a
    /// failed download sent is not kept).
    pub(crate) fn object(&'static self) -> Arc<ObjectId> {
        Arc::new(ObjectId { lanes: self, id: self.ids.fetch_add(1, Ordering::Relaxed) + 1 })
    }

    /// A feed for the parts of `range` of `object` (the range starts at a part's first byte).
    pub(crate) fn feed(&self, object: u64, range: &Range<u64>, part_size: u64) -> Feed {
        let attempt = self.ids.fetch_add(1, Ordering::Relaxed) + 1;
        let part = usize::try_from(range.start / part_size).unwrap_or(usize::MAX);
        Feed { tx: self.tx.clone(), object, attempt, part_size, end: range.end, at: range.start, part, filled: 0, buf: Vec::new() }
    }

    /// The digest of every part of `object` ended so far (by its latest attempt), once
    /// everything sent before is hashed. Blocks briefly: what is left is at most what the
    /// service holds and what is queued (3 MiB).
    pub(crate) fn finish(&self, object: u64) -> HashMap<usize, [u8; 16]> {
        let (reply, answer) = std::sync::mpsc::channel();
        if self.tx.send(Msg::Finish(object, reply)).is_err() {
            return HashMap::new();
        }
        answer.recv().unwrap_or_default()
    }
}

/// An object's number at the service.
pub(crate) struct ObjectId {
    lanes: &'static Lanes,
    pub(crate) id: u64,
}

impl Drop for ObjectId {
    fn drop(&mut self) {
        let _ = self.lanes.tx.send(Msg::Forget(self.id));
    }
}

/// What one range sends: its bytes cut at part boundaries.
pub(crate) struct Feed {
    tx: SyncSender<Msg>,
    object: u64,
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
            if self.buf.capacity() == 0 {
                self.buf = buffer();
            }
            let part_end = ((self.part as u64 + 1) * self.part_size).min(self.end);
            let room = usize::try_from(part_end - self.at).unwrap_or(usize::MAX);
            let (now, rest) = data.split_at(room.min(data.len()).min(BATCH - self.buf.len()));
            self.buf.extend_from_slice(now);
            self.at += now.len() as u64;
            self.filled += now.len() as u64;
            data = rest;
            if self.at == part_end {
                let whole = self.buf.len() - self.buf.len() % 64;
                let tail = self.buf[whole..].to_vec();
                self.buf.truncate(whole);
                self.send_data();
                let end = Msg::End { key: (self.object, self.part), attempt: self.attempt, tail, len: self.filled };
                let _ = self.tx.send(end);
                self.part += 1;
                self.filled = 0;
            } else if self.buf.len() == BATCH {
                self.send_data();
            }
        }
    }

    fn send_data(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let bytes = std::mem::take(&mut self.buf);
        // A service that stopped (its owner dropped) needs nothing more.
        let _ = self.tx.send(Msg::Data { key: (self.object, self.part), attempt: self.attempt, bytes });
    }
}

/// Batches the service has hashed, for the feeds to fill again: 128 KiB buffers allocated by
/// the writers' threads and freed by the service's piled up in the C library's per-thread
/// arenas (a 1 GiB download's resident size went from 27 MiB with a CRC to 61 MiB with the
/// lanes).
static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Buffers kept: as many as can be in flight (queued, held, filling).
const POOL_MAX: usize = QUEUE + HELD + kernel::LANES;

/// An empty batch buffer, from the pool when it has one.
fn buffer() -> Vec<u8> {
    POOL.lock().ok().and_then(|mut pool| pool.pop()).unwrap_or_else(|| Vec::with_capacity(BATCH))
}

/// A hashed batch back to the pool.
fn recycle(mut buf: Vec<u8>) {
    buf.clear();
    if let Ok(mut pool) = POOL.lock()
        && pool.len() < POOL_MAX
        && buf.capacity() >= BATCH
    {
        pool.push(buf);
    }
}

/// One part being hashed.
struct Stream {
    attempt: u64,
    state: [u32; 4],
    /// Batches, with the order they came in (the oldest go first into the lanes).
    queue: VecDeque<(u64, Vec<u8>)>,
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
        self.queue.front().map_or(0, |(_, b)| b.len() / 64 - self.done)
    }
}

fn serve(rx: &Receiver<Msg>) {
    let mut streams: HashMap<Key, Stream> = HashMap::new();
    let mut digests: HashMap<Key, (u64, [u8; 16])> = HashMap::new();
    let mut finished: HashSet<u64> = HashSet::new();
    let mut finish: Vec<(u64, Reply)> = Vec::new();
    let mut arrived = 0u64;
    loop {
        // Take what has come, up to HELD batches. Hash when that fills the lanes (every stream
        // under way has bytes ready, or eight do): a kernel call costs the same with one lane
        // as with eight, and the service is faster than the network, so hashing whatever came
        // first would run mostly one lane at a time. At HELD, with a stream at its end, a
        // finish, or after 2 ms without news, hash what there is.
        let ready = streams.values().filter(|s| s.ready() > 0).count();
        let held: usize = streams.values().map(|s| s.queue.len()).sum();
        let msg = if held >= HELD {
            None
        } else {
            let urgent = streams.values().any(|s| s.ready() > 0 && s.end.is_some());
            let full = ready > 0 && (ready >= streams.len().min(kernel::LANES) || urgent || !finish.is_empty());
            if full {
                rx.try_recv().ok()
            } else if ready > 0 {
                rx.recv_timeout(std::time::Duration::from_millis(2)).ok()
            } else if finish.is_empty() {
                match rx.recv() {
                    Ok(msg) => Some(msg),
                    Err(_) => return,
                }
            } else {
                None
            }
        };
        if let Some(msg) = msg {
            match msg {
                Msg::Data { key, attempt, bytes } => {
                    if let Some(stream) = current(&mut streams, &mut digests, &finished, key, attempt) {
                        arrived += 1;
                        stream.queue.push_back((arrived, bytes));
                    }
                }
                Msg::End { key, attempt, tail, len } => {
                    if let Some(stream) = current(&mut streams, &mut digests, &finished, key, attempt) {
                        stream.end = Some((tail, len));
                    }
                }
                Msg::Finish(object, reply) => finish.push((object, reply)),
                Msg::Forget(object) => {
                    digests.retain(|k, _| k.0 != object);
                    streams.retain(|k, _| k.0 != object);
                    finished.insert(object);
                }
            }
            continue;
        }
        hash_some(&mut streams);
        // Parts with every block hashed and their end known are done.
        let ended: Vec<Key> = streams.iter().filter(|(_, s)| s.queue.is_empty() && s.end.is_some()).map(|(k, _)| *k).collect();
        for key in ended {
            if let Some(mut stream) = streams.remove(&key)
                && let Some((tail, len)) = stream.end.take()
            {
                digests.insert(key, (stream.attempt, kernel::finalize(stream.state, &tail, len)));
            }
        }
        // An object whose streams have nothing left to hash gets its digests; its stale
        // streams (abandoned attempts) and anything sent for it later are dropped.
        let (done, waiting): (Vec<_>, Vec<_>) =
            finish.drain(..).partition(|(object, _)| streams.iter().all(|(k, s)| k.0 != *object || s.ready() == 0));
        finish = waiting;
        for (object, reply) in done {
            let answer: HashMap<usize, [u8; 16]> = digests.iter().filter(|(k, _)| k.0 == object).map(|(k, (_, d))| (k.1, *d)).collect();
            digests.retain(|k, _| k.0 != object);
            streams.retain(|k, _| k.0 != object);
            finished.insert(object);
            let _ = reply.send(answer);
        }
    }
}

/// The stream of `key` for `attempt`: a newer attempt starts the part over (even one already
/// hashed); an older one's bytes, and bytes of a finished object, are dropped (`None`).
fn current<'a>(
    streams: &'a mut HashMap<Key, Stream>,
    digests: &mut HashMap<Key, (u64, [u8; 16])>,
    finished: &HashSet<u64>,
    key: Key,
    attempt: u64,
) -> Option<&'a mut Stream> {
    if finished.contains(&key.0) {
        return None;
    }
    match digests.get(&key) {
        Some((done, _)) if *done >= attempt => return None,
        Some(_) => {
            digests.remove(&key);
        }
        None => {}
    }
    let stream = streams.entry(key).or_insert_with(|| Stream::new(attempt));
    if attempt > stream.attempt {
        *stream = Stream::new(attempt);
    }
    (attempt == stream.attempt).then_some(stream)
}

/// Hashes the ready blocks of up to eight streams in step (as many blocks as the shortest has).
fn hash_some(streams: &mut HashMap<Key, Stream>) {
    let mut lanes: Vec<&mut Stream> = streams.values_mut().filter(|s| s.ready() > 0).collect();
    // The oldest batches first: none waits behind streams that keep being refilled.
    lanes.sort_by_key(|s| s.queue.front().map_or(u64::MAX, |(seq, _)| *seq));
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
                let front = s.queue.front().map_or(&[][..], |(_, b)| b.as_slice());
                &front[s.done * 64..(s.done + n) * 64]
            })
            .collect();
        kernel::compress(&mut state, &blocks, n);
    }
    for (l, s) in lanes.iter_mut().enumerate() {
        s.state = kernel::get(&state, l);
        s.done += n;
        if s.ready() == 0 {
            if let Some((_, buf)) = s.queue.pop_front() {
                recycle(buf);
            }
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

    #[cfg(target_arch = "x86_64")]
    fn avx512() -> bool {
        std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vl")
    }

    /// `n` blocks of each lane's bytes (at most [`LANES`] lanes, each at least `n * 64` bytes)
    /// into the lanes' states (`state[word][lane]`), with AVX-512 where the CPU has it.
    pub(super) fn compress(state: &mut [[u32; LANES]; 4], blocks: &[&[u8]], n: usize) {
        #[cfg(target_arch = "x86_64")]
        compress_on(avx512(), state, blocks, n);
        #[cfg(not(target_arch = "x86_64"))]
        compress_on(false, state, blocks, n);
    }

    /// [`compress`] on the AVX-512 kernel (`wide`) or the AVX2 one.
    pub(super) fn compress_on(wide: bool, state: &mut [[u32; LANES]; 4], blocks: &[&[u8]], n: usize) {
        assert!(!blocks.is_empty() && blocks.len() <= LANES && blocks.iter().all(|b| b.len() >= n * 64), "lanes too short");
        #[cfg(target_arch = "x86_64")]
        {
            assert!(available() && (!wide || avx512()), "the CPU features are checked before a kernel is chosen");
            #[expect(unsafe_code, reason = "SIMD intrinsics; each kernel needs its CPU features, checked here")]
            // SAFETY: the features of the kernel called are available (checked); every lane
            // holds n blocks (asserted).
            unsafe {
                if wide {
                    avx512::compress(state, blocks, n);
                } else {
                    avx2::compress(state, blocks, n);
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (wide, state, blocks, n);
            unreachable!("the service starts only with AVX2");
        }
    }

    /// The kernels this CPU can run (`false`: AVX2, `true`: AVX-512), for the tests.
    #[cfg(test)]
    pub(super) fn kernels() -> Vec<bool> {
        #[cfg(target_arch = "x86_64")]
        {
            [false, true].into_iter().filter(|wide| available() && (!wide || avx512())).collect()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Vec::new()
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

    /// The transpose and the compression function of a kernel, for the CPU features given
    /// (its module defines the round functions `f`, `g`, `h`, `i` and `rot`).
    #[cfg(target_arch = "x86_64")]
    macro_rules! lanes {
        ($features:literal) => {
            /// One MD5 step in every lane: `b + rot(a + fun + k + m)` (`R` is `32 - S`).
            #[target_feature(enable = $features)]
            fn step<const S: i32, const R: i32>(a: __m256i, fun: __m256i, b: __m256i, m: __m256i, k: u32) -> __m256i {
                let sum = _mm256_add_epi32(_mm256_add_epi32(a, fun), _mm256_add_epi32(_mm256_set1_epi32(k.cast_signed()), m));
                _mm256_add_epi32(b, rot::<S, R>(sum))
            }

            /// Word `k` of every lane, from each lane's 8 words (an 8×8 transpose).
            #[target_feature(enable = $features)]
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
            /// The CPU has the features; every lane of `blocks` holds at least `n * 64` bytes.
            #[target_feature(enable = $features)]
            pub(super) unsafe fn compress(state: &mut [[u32; LANES]; 4], blocks: &[&[u8]], n: usize) {
                // SAFETY: [u32; 8] and __m256i have the same size; unaligned loads.
                let load = |words: &[u32; LANES]| unsafe { _mm256_loadu_si256(words.as_ptr().cast()) };
                let (mut a, mut b, mut c, mut d) = (load(&state[0]), load(&state[1]), load(&state[2]), load(&state[3]));
                let zero = _mm256_set1_epi32(0);
                for block in 0..n {
                    let mut m = [zero; 16];
                    for half in 0..2 {
                        let mut rows = [zero; 8];
                        for (l, row) in rows.iter_mut().enumerate() {
                            // Unused lanes repeat lane 0 (their results are not read).
                            let lane = blocks.get(l).unwrap_or(&blocks[0]);
                            let at = block * 64 + half * 32;
                            let bytes = &lane[at..at + 32];
                            // SAFETY: 32 bytes in bounds (the slice above); unaligned load.
                            *row = unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) };
                        }
                        m[half * 8..half * 8 + 8].copy_from_slice(&transpose(rows));
                    }
                    let (aa, bb, cc, dd) = (a, b, c, d);
                    // The 64 steps unrolled, shifts and constants immediate (RFC 1321's order).
                    a = step::<7, 25>(a, f(b, c, d), b, m[0], 0xd76a_a478);
                    d = step::<12, 20>(d, f(a, b, c), a, m[1], 0xe8c7_b756);
                    c = step::<17, 15>(c, f(d, a, b), d, m[2], 0x2420_70db);
                    b = step::<22, 10>(b, f(c, d, a), c, m[3], 0xc1bd_ceee);
                    a = step::<7, 25>(a, f(b, c, d), b, m[4], 0xf57c_0faf);
                    d = step::<12, 20>(d, f(a, b, c), a, m[5], 0x4787_c62a);
                    c = step::<17, 15>(c, f(d, a, b), d, m[6], 0xa830_4613);
                    b = step::<22, 10>(b, f(c, d, a), c, m[7], 0xfd46_9501);
                    a = step::<7, 25>(a, f(b, c, d), b, m[8], 0x6980_98d8);
                    d = step::<12, 20>(d, f(a, b, c), a, m[9], 0x8b44_f7af);
                    c = step::<17, 15>(c, f(d, a, b), d, m[10], 0xffff_5bb1);
                    b = step::<22, 10>(b, f(c, d, a), c, m[11], 0x895c_d7be);
                    a = step::<7, 25>(a, f(b, c, d), b, m[12], 0x6b90_1122);
                    d = step::<12, 20>(d, f(a, b, c), a, m[13], 0xfd98_7193);
                    c = step::<17, 15>(c, f(d, a, b), d, m[14], 0xa679_438e);
                    b = step::<22, 10>(b, f(c, d, a), c, m[15], 0x49b4_0821);
                    a = step::<5, 27>(a, g(b, c, d), b, m[1], 0xf61e_2562);
                    d = step::<9, 23>(d, g(a, b, c), a, m[6], 0xc040_b340);
                    c = step::<14, 18>(c, g(d, a, b), d, m[11], 0x265e_5a51);
                    b = step::<20, 12>(b, g(c, d, a), c, m[0], 0xe9b6_c7aa);
                    a = step::<5, 27>(a, g(b, c, d), b, m[5], 0xd62f_105d);
                    d = step::<9, 23>(d, g(a, b, c), a, m[10], 0x0244_1453);
                    c = step::<14, 18>(c, g(d, a, b), d, m[15], 0xd8a1_e681);
                    b = step::<20, 12>(b, g(c, d, a), c, m[4], 0xe7d3_fbc8);
                    a = step::<5, 27>(a, g(b, c, d), b, m[9], 0x21e1_cde6);
                    d = step::<9, 23>(d, g(a, b, c), a, m[14], 0xc337_07d6);
                    c = step::<14, 18>(c, g(d, a, b), d, m[3], 0xf4d5_0d87);
                    b = step::<20, 12>(b, g(c, d, a), c, m[8], 0x455a_14ed);
                    a = step::<5, 27>(a, g(b, c, d), b, m[13], 0xa9e3_e905);
                    d = step::<9, 23>(d, g(a, b, c), a, m[2], 0xfcef_a3f8);
                    c = step::<14, 18>(c, g(d, a, b), d, m[7], 0x676f_02d9);
                    b = step::<20, 12>(b, g(c, d, a), c, m[12], 0x8d2a_4c8a);
                    a = step::<4, 28>(a, h(b, c, d), b, m[5], 0xfffa_3942);
                    d = step::<11, 21>(d, h(a, b, c), a, m[8], 0x8771_f681);
                    c = step::<16, 16>(c, h(d, a, b), d, m[11], 0x6d9d_6122);
                    b = step::<23, 9>(b, h(c, d, a), c, m[14], 0xfde5_380c);
                    a = step::<4, 28>(a, h(b, c, d), b, m[1], 0xa4be_ea44);
                    d = step::<11, 21>(d, h(a, b, c), a, m[4], 0x4bde_cfa9);
                    c = step::<16, 16>(c, h(d, a, b), d, m[7], 0xf6bb_4b60);
                    b = step::<23, 9>(b, h(c, d, a), c, m[10], 0xbebf_bc70);
                    a = step::<4, 28>(a, h(b, c, d), b, m[13], 0x289b_7ec6);
                    d = step::<11, 21>(d, h(a, b, c), a, m[0], 0xeaa1_27fa);
                    c = step::<16, 16>(c, h(d, a, b), d, m[3], 0xd4ef_3085);
                    b = step::<23, 9>(b, h(c, d, a), c, m[6], 0x0488_1d05);
                    a = step::<4, 28>(a, h(b, c, d), b, m[9], 0xd9d4_d039);
                    d = step::<11, 21>(d, h(a, b, c), a, m[12], 0xe6db_99e5);
                    c = step::<16, 16>(c, h(d, a, b), d, m[15], 0x1fa2_7cf8);
                    b = step::<23, 9>(b, h(c, d, a), c, m[2], 0xc4ac_5665);
                    a = step::<6, 26>(a, i(b, c, d), b, m[0], 0xf429_2244);
                    d = step::<10, 22>(d, i(a, b, c), a, m[7], 0x432a_ff97);
                    c = step::<15, 17>(c, i(d, a, b), d, m[14], 0xab94_23a7);
                    b = step::<21, 11>(b, i(c, d, a), c, m[5], 0xfc93_a039);
                    a = step::<6, 26>(a, i(b, c, d), b, m[12], 0x655b_59c3);
                    d = step::<10, 22>(d, i(a, b, c), a, m[3], 0x8f0c_cc92);
                    c = step::<15, 17>(c, i(d, a, b), d, m[10], 0xffef_f47d);
                    b = step::<21, 11>(b, i(c, d, a), c, m[1], 0x8584_5dd1);
                    a = step::<6, 26>(a, i(b, c, d), b, m[8], 0x6fa8_7e4f);
                    d = step::<10, 22>(d, i(a, b, c), a, m[15], 0xfe2c_e6e0);
                    c = step::<15, 17>(c, i(d, a, b), d, m[6], 0xa301_4314);
                    b = step::<21, 11>(b, i(c, d, a), c, m[13], 0x4e08_11a1);
                    a = step::<6, 26>(a, i(b, c, d), b, m[4], 0xf753_7e82);
                    d = step::<10, 22>(d, i(a, b, c), a, m[11], 0xbd3a_f235);
                    c = step::<15, 17>(c, i(d, a, b), d, m[2], 0x2ad7_d2bb);
                    b = step::<21, 11>(b, i(c, d, a), c, m[9], 0xeb86_d391);
                    a = _mm256_add_epi32(a, aa);
                    b = _mm256_add_epi32(b, bb);
                    c = _mm256_add_epi32(c, cc);
                    d = _mm256_add_epi32(d, dd);
                }
                let store = |v: __m256i, words: &mut [u32; LANES]| {
                    // SAFETY: [u32; 8] and __m256i have the same size; unaligned store.
                    unsafe { _mm256_storeu_si256(words.as_mut_ptr().cast(), v) }
                };
                store(a, &mut state[0]);
                store(b, &mut state[1]);
                store(c, &mut state[2]);
                store(d, &mut state[3]);
            }
        };
    }

    #[cfg(target_arch = "x86_64")]
    #[expect(unsafe_code, reason = "AVX2 intrinsics and unaligned loads from checked slices")]
    mod avx2 {
        use std::arch::x86_64::{
            __m256i, _mm256_add_epi32, _mm256_and_si256, _mm256_loadu_si256, _mm256_or_si256, _mm256_permute2x128_si256, _mm256_set1_epi32,
            _mm256_slli_epi32, _mm256_srli_epi32, _mm256_storeu_si256, _mm256_unpackhi_epi32, _mm256_unpackhi_epi64, _mm256_unpacklo_epi32,
            _mm256_unpacklo_epi64, _mm256_xor_si256,
        };

        use super::LANES;

        #[target_feature(enable = "avx2")]
        fn f(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
            _mm256_xor_si256(d, _mm256_and_si256(b, _mm256_xor_si256(c, d)))
        }

        #[target_feature(enable = "avx2")]
        fn g(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
            _mm256_xor_si256(c, _mm256_and_si256(d, _mm256_xor_si256(b, c)))
        }

        #[target_feature(enable = "avx2")]
        fn h(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
            _mm256_xor_si256(_mm256_xor_si256(b, c), d)
        }

        #[target_feature(enable = "avx2")]
        fn i(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
            _mm256_xor_si256(c, _mm256_or_si256(b, _mm256_xor_si256(d, _mm256_set1_epi32(-1))))
        }

        #[target_feature(enable = "avx2")]
        fn rot<const S: i32, const R: i32>(x: __m256i) -> __m256i {
            _mm256_or_si256(_mm256_slli_epi32::<S>(x), _mm256_srli_epi32::<R>(x))
        }

        lanes!("avx2");
    }

    /// The same on AVX-512 (VL: 256-bit registers): each round function is one ternary-logic
    /// instruction and each rotation one, where AVX2 needs three of each.
    #[cfg(target_arch = "x86_64")]
    #[expect(unsafe_code, reason = "AVX-512 intrinsics and unaligned loads from checked slices")]
    mod avx512 {
        use std::arch::x86_64::{
            __m256i, _mm256_add_epi32, _mm256_loadu_si256, _mm256_permute2x128_si256, _mm256_rol_epi32, _mm256_set1_epi32,
            _mm256_storeu_si256, _mm256_ternarylogic_epi32, _mm256_unpackhi_epi32, _mm256_unpackhi_epi64, _mm256_unpacklo_epi32,
            _mm256_unpacklo_epi64,
        };

        use super::LANES;

        // Truth tables over (b, c, d): F = b ? c : d, G = d ? b : c, H = b ^ c ^ d,
        // I = c ^ (b | !d).
        #[target_feature(enable = "avx2,avx512f,avx512vl")]
        fn f(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
            _mm256_ternarylogic_epi32::<0xca>(b, c, d)
        }

        #[target_feature(enable = "avx2,avx512f,avx512vl")]
        fn g(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
            _mm256_ternarylogic_epi32::<0xe4>(b, c, d)
        }

        #[target_feature(enable = "avx2,avx512f,avx512vl")]
        fn h(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
            _mm256_ternarylogic_epi32::<0x96>(b, c, d)
        }

        #[target_feature(enable = "avx2,avx512f,avx512vl")]
        fn i(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
            _mm256_ternarylogic_epi32::<0x39>(b, c, d)
        }

        #[target_feature(enable = "avx2,avx512f,avx512vl")]
        fn rot<const S: i32, const R: i32>(x: __m256i) -> __m256i {
            _mm256_rol_epi32::<S>(x)
        }

        lanes!("avx2,avx512f,avx512vl");
    }
}

#[cfg(test)]
mod tests {
    use md5::Digest as _;

    use super::*;

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
            // Eight different streams in step, and three (the other lanes unused), on every
            // kernel this CPU has.
            for (count, wide) in [8, 3].into_iter().flat_map(|c| kernel::kernels().into_iter().map(move |w| (c, w))) {
                let streams: Vec<Vec<u8>> = (0..count).map(|l| data(len, l)).collect();
                let lanes: Vec<&[u8]> = streams.iter().map(|s| &s[..whole]).collect();
                let mut state = state;
                kernel::compress_on(wide, &mut state, &lanes, whole / 64);
                for (l, stream) in streams.iter().enumerate() {
                    let got = kernel::finalize(kernel::get(&state, l), &stream[whole..], len as u64);
                    assert_eq!(got, <[u8; 16]>::from(md5::Md5::digest(stream)), "{len} bytes, lane {l} of {count}, AVX-512: {wide}");
                }
            }
        }
    }

    #[test]
    fn parts_fed_by_ranges_and_retries_match_md5() {
        let Some(lanes) = Lanes::shared() else { return };
        let object = lanes.object();
        let id = object.id;
        let part = 1000u64;
        let object = data(10_500, 2);
        let ranges: Vec<Range<u64>> = (0..object.len() as u64).step_by(3000).map(|s| s..(s + 3000).min(object.len() as u64)).collect();
        // An attempt that stops halfway, then the range again; the stale feed sends late.
        let mut stale = lanes.feed(id, &ranges[1], part);
        stale.update(&object[3000..4500]);
        for range in &ranges {
            let mut feed = lanes.feed(id, range, part);
            for chunk in object[range.start as usize..range.end as usize].chunks(777) {
                feed.update(chunk);
            }
        }
        stale.update(&[0u8; 3000][..1500]);
        let digests = lanes.finish(id);
        assert_eq!(digests.len(), 11);
        assert!(lanes.finish(id).is_empty(), "a finished object is forgotten");
        for (p, chunk) in object.chunks(part as usize).enumerate() {
            assert_eq!(digests[&p], <[u8; 16]>::from(md5::Md5::digest(chunk)), "part {p}");
        }
    }
}
