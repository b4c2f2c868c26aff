//! A real S3 store for tests: Garage in a container (images/test/s3), a client of the test's
//! own to put objects the way uploaders do (single part, multipart, with checksums), and a TCP
//! proxy that counts requests and bytes, slows the download down or cuts it, to put faults in
//! the path between podinit and the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use testcontainers::core::{IntoContainerPort as _, WaitFor};
use testcontainers::runners::AsyncRunner as _;
use testcontainers::{ContainerAsync, GenericImage, ImageExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::OnceCell;

use super::Podinit;

pub const KEY_ID: &str = "GK0123456789abcdef01234567";
pub const SECRET: &str = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7";
pub const BUCKET: &str = "test";
/// Served anonymously by Garage's website endpoint; see [`Garage::web_url`].
pub const PUBLIC_BUCKET: &str = "localhost";

static IMAGE: OnceCell<GenericImage> = OnceCell::const_new();

/// A running Garage; the container lives as long as this value.
pub struct Garage {
    _container: ContainerAsync<GenericImage>,
    pub port: u16,
    pub web_port: u16,
    /// Sends no checksum (for setup calls and plain uploads).
    pub client: Client,
    /// Sends the SDK's default checksum (CRC32) or the one a call names.
    checksummed: Client,
}

impl Garage {
    /// `http://127.0.0.1:PORT` of the S3 API.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `podinit s3-get` with credentials and endpoint in the environment, as a pod would have
    /// them, pointed at `endpoint` (the store, or a proxy in front of it).
    pub fn podinit(&self, endpoint: &str) -> Podinit {
        Podinit::new()
            .arg("s3-get")
            .env("AWS_ACCESS_KEY_ID", KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_REGION", "garage")
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("HOME", "/nonexistent")
    }

    /// Puts `data` in one PUT, with a checksum of that algorithm when given.
    pub async fn put(&self, key: &str, data: &[u8], checksum: Option<ChecksumAlgorithm>) -> String {
        self.put_in(BUCKET, key, data, checksum).await
    }

    pub async fn put_in(&self, bucket: &str, key: &str, data: &[u8], checksum: Option<ChecksumAlgorithm>) -> String {
        let client = if checksum.is_some() { &self.checksummed } else { &self.client };
        let out = client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(data.to_vec()))
            .set_checksum_algorithm(checksum)
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
        out.e_tag().unwrap().to_owned()
    }

    /// Puts `data` as a multipart upload of `part`-sized parts (the last one shorter).
    pub async fn put_multipart(&self, key: &str, data: &[u8], part: usize) -> String {
        let upload = self.client.create_multipart_upload().bucket(BUCKET).key(key).send().await.expect("create multipart upload");
        let id = upload.upload_id().unwrap();
        let mut parts = Vec::new();
        for (i, chunk) in data.chunks(part).enumerate() {
            let n = i32::try_from(i + 1).unwrap();
            let out = self
                .client
                .upload_part()
                .bucket(BUCKET)
                .key(key)
                .upload_id(id)
                .part_number(n)
                .body(ByteStream::from(chunk.to_vec()))
                .send()
                .await
                .expect("upload part");
            parts.push(CompletedPart::builder().part_number(n).e_tag(out.e_tag().unwrap()).build());
        }
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(BUCKET)
            .key(key)
            .upload_id(id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .expect("complete multipart upload");
        out.e_tag().unwrap().to_owned()
    }
}

/// Garage with the key and buckets above, answering.
pub async fn garage() -> Garage {
    garage_on(None).await
}

/// [`garage`], also reachable from containers on `network` as `NAME:3900`.
pub async fn garage_on(network: Option<(&str, &str)>) -> Garage {
    let image = IMAGE.get_or_init(|| super::docker::built("images/test/s3/build")).await.clone();
    let mut request: testcontainers::ContainerRequest<GenericImage> = image
        .with_wait_for(WaitFor::message_on_stdout("podinit-test-s3: ready"))
        .with_exposed_port(3900.tcp())
        .with_exposed_port(3902.tcp())
        .into();
    if let Some((network, name)) = network {
        request = request.with_network(network).with_container_name(name);
    }
    let container = request
        .with_env_var("S3_KEY_ID", KEY_ID)
        .with_env_var("S3_SECRET", SECRET)
        .with_env_var("S3_BUCKET", BUCKET)
        .with_env_var("S3_PUBLIC_BUCKET", PUBLIC_BUCKET)
        .with_startup_timeout(Duration::from_secs(120))
        .start()
        .await
        .expect("starting Garage");
    let port = container.get_host_port_ipv4(3900.tcp()).await.expect("the S3 port");
    let web_port = container.get_host_port_ipv4(3902.tcp()).await.expect("the website port");
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring))
        .build_https();
    let checksummed = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .http_client(http)
        .region(aws_sdk_s3::config::Region::new("garage"))
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(KEY_ID, SECRET, None, None, "test"))
        // A store that stops answering fails the test within minutes instead of hanging it.
        .timeout_config(aws_sdk_s3::config::timeout::TimeoutConfig::builder().operation_attempt_timeout(Duration::from_secs(30)).build())
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(3))
        .build();
    // Plain uploads carry no checksum (the SDK would add CRC32 to every PUT), as older
    // uploaders and other stores' objects have none.
    let plain = checksummed.to_builder().request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired).build();
    Garage { _container: container, port, web_port, client: Client::from_conf(plain), checksummed: Client::from_conf(checksummed) }
}

/// Deterministic bytes that differ everywhere (so a misplaced range shows).
pub fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// What the proxy does to traffic from the store back to the client.
#[derive(Default)]
pub struct Faults {
    /// Bytes per second, 0 for no limit.
    pub rate: AtomicU64,
    /// Close every connection once this many response bytes have passed (0: never); the cut
    /// happens once, then traffic flows.
    pub cut_after: AtomicU64,
    cut_done: AtomicBool,
    /// Flip one byte of the responses once this many response bytes have passed (0: never);
    /// once.
    pub corrupt_after: AtomicU64,
    corrupt_done: AtomicBool,
}

/// A TCP proxy on 127.0.0.1 in front of the store, on a thread of its own (the tests block
/// on podinit's process).
pub struct Proxy {
    pub port: u16,
    pub faults: Arc<Faults>,
    requests: Arc<AtomicU64>,
    response_bytes: Arc<AtomicU64>,
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
                    tokio::spawn(async move {
                        let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else { return };
                        let (mut cr, mut cw) = client.into_split();
                        let (mut sr, mut sw) = server.into_split();
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
                        loop {
                            let rate = f.rate.load(Ordering::Relaxed);
                            let limit = if rate > 0 { (rate / 20).clamp(1, buf.len() as u64) as usize } else { buf.len() };
                            let Ok(n) = sr.read(&mut buf[..limit]).await else { break };
                            if n == 0 {
                                break;
                            }
                            let total = b.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
                            let cut = f.cut_after.load(Ordering::Relaxed);
                            if cut > 0 && total >= cut && !f.cut_done.swap(true, Ordering::Relaxed) {
                                break;
                            }
                            let corrupt = f.corrupt_after.load(Ordering::Relaxed);
                            if corrupt > 0 && total >= corrupt && !f.corrupt_done.swap(true, Ordering::Relaxed) {
                                buf[n - 1] ^= 0x5a;
                            }
                            if cw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                            if rate > 0 {
                                tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate as f64)).await;
                            }
                        }
                        up.abort();
                    });
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

    /// Response bytes seen so far (and the count is reset).
    pub fn take_response_bytes(&self) -> u64 {
        self.response_bytes.swap(0, Ordering::Relaxed)
    }
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
