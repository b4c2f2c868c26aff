//! A TCP proxy on 127.0.0.1 that puts faults between podinit and a real service (Garage,
//! OpenBao, PostgreSQL): refuse connections, stall them, reset them after N bytes, slow the
//! answers down, flip a byte. It counts requests and response bytes, so a test can also tell
//! how much a run cost. Each fault can be switched on and off while podinit runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// What the proxy does to connections; every field can change while it runs.
#[derive(Default)]
pub struct Faults {
    /// Accept, then reset at once (a Service without ready endpoints behind a proxy).
    pub refuse: AtomicBool,
    /// Accept and pass the request on, but send nothing back (a hung server).
    pub stall: AtomicBool,
    /// Reset a connection once this many response bytes have passed on it (0: never), for
    /// the next [`Faults::resets`] connections that get that far.
    pub reset_after: AtomicU64,
    /// How many more connections [`Faults::reset_after`] may reset.
    pub resets: AtomicU64,
    /// Bytes per second, 0 for no limit.
    pub rate: AtomicU64,
    /// Close every connection once this many response bytes have passed in all (0: never);
    /// once, then traffic flows.
    pub cut_after: AtomicU64,
    cut_done: AtomicBool,
    /// Flip one byte of the responses once this many response bytes have passed (0: never);
    /// once.
    pub corrupt_after: AtomicU64,
    corrupt_done: AtomicBool,
    /// Wakes every connection to reset it (see [`Proxy::reset_all`]).
    kill: tokio::sync::Notify,
}

impl Faults {
    /// Resets the next `count` connections after `bytes` response bytes each.
    pub fn reset_connections(&self, count: u64, bytes: u64) {
        self.resets.store(count, Ordering::SeqCst);
        self.reset_after.store(bytes, Ordering::SeqCst);
    }

    /// Takes one reset from the budget, if any is left.
    fn take_reset(&self) -> bool {
        self.resets.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    }
}

/// A proxy in front of `127.0.0.1:upstream`, on a thread of its own (the tests block on
/// podinit's process).
pub struct Proxy {
    pub port: u16,
    pub faults: Arc<Faults>,
    requests: Arc<AtomicU64>,
    response_bytes: Arc<AtomicU64>,
}

/// Closes `stream` with a reset (RST), not a clean end of stream.
fn reset(stream: tokio::net::TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

impl Proxy {
    pub fn start(upstream: u16) -> Self {
        let faults = Arc::new(Faults::default());
        let requests = Arc::new(AtomicU64::new(0));
        let response_bytes = Arc::new(AtomicU64::new(0));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (f, r, b) = (faults.clone(), requests.clone(), response_bytes.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((client, _)) = listener.accept().await else { continue };
                    let (f, r, b) = (f.clone(), r.clone(), b.clone());
                    tokio::spawn(async move { relay(client, upstream, &f, &r, &b).await });
                }
            });
        });
        Self { port, faults, requests, response_bytes }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// HTTP requests seen so far (and the count is reset).
    pub fn take_requests(&self) -> u64 {
        self.requests.swap(0, Ordering::Relaxed)
    }

    /// Resets every open connection now, even one waiting for an answer (a database
    /// session in the middle of a statement).
    pub fn reset_all(&self) {
        self.faults.kill.notify_waiters();
    }

    /// Response bytes seen so far (and the count is reset).
    pub fn take_response_bytes(&self) -> u64 {
        self.response_bytes.swap(0, Ordering::Relaxed)
    }
}

async fn relay(client: tokio::net::TcpStream, upstream: u16, f: &Faults, r: &Arc<AtomicU64>, b: &AtomicU64) {
    if f.refuse.load(Ordering::SeqCst) {
        reset(client);
        return;
    }
    let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else { return reset(client) };
    // A second handle on the client's socket, to turn its close into a reset later.
    let Ok(handle) = socket2::SockRef::from(&client).try_clone() else { return };
    let (mut sr, mut sw) = server.into_split();
    let (mut cr, mut cw) = client.into_split();
    let r = r.clone();
    let up = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 << 10];
        let mut tail = Vec::new();
        while let Ok(n) = cr.read(&mut buf).await {
            if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
            tail.extend_from_slice(&buf[..n]);
            r.fetch_add(count_request_heads(&mut tail), Ordering::Relaxed);
        }
    });
    let mut buf = vec![0u8; 64 << 10];
    let mut on_this = 0u64;
    let reset_here = loop {
        if f.stall.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let rate = f.rate.load(Ordering::Relaxed);
        let limit = if rate > 0 { (rate / 20).clamp(1, buf.len() as u64) as usize } else { buf.len() };
        let read = tokio::select! {
            read = sr.read(&mut buf[..limit]) => read,
            () = f.kill.notified() => break true,
        };
        let Ok(n) = read else { break false };
        if n == 0 {
            break false;
        }
        let total = b.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        on_this += n as u64;
        let cut = f.cut_after.load(Ordering::Relaxed);
        if cut > 0 && total >= cut && !f.cut_done.swap(true, Ordering::Relaxed) {
            break false;
        }
        let reset_after = f.reset_after.load(Ordering::SeqCst);
        if reset_after > 0 && on_this >= reset_after && f.take_reset() {
            // Pass on what came before the limit, then reset.
            let keep = n - usize::try_from(on_this - reset_after).unwrap_or(n).min(n);
            let _ = cw.write_all(&buf[..keep]).await;
            break true;
        }
        let corrupt = f.corrupt_after.load(Ordering::Relaxed);
        if corrupt > 0 && total >= corrupt && !f.corrupt_done.swap(true, Ordering::Relaxed) {
            buf[n - 1] ^= 0x5a;
        }
        if cw.write_all(&buf[..n]).await.is_err() {
            break false;
        }
        if rate > 0 {
            tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate as f64)).await;
        }
    };
    if reset_here {
        // With a zero linger, the last close of the socket sends a reset.
        let _ = handle.set_linger(Some(Duration::ZERO));
    }
    up.abort();
    drop((cw, handle));
}

/// Counts complete request heads in `tail` (requests without bodies: GET, HEAD), keeping
/// an unfinished head for the next read.
fn count_request_heads(tail: &mut Vec<u8>) -> u64 {
    let mut n = 0;
    while let Some(end) = tail.windows(4).position(|w| w == b"\r\n\r\n") {
        n += 1;
        tail.drain(..end + 4);
    }
    n
}
