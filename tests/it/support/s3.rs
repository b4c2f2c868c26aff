//! A real S3 store for tests: Garage in a container (images/test/s3), a client of the test's
//! own to put objects the way uploaders do (single part, multipart, with checksums); faults go
//! in the path through `support::fault::Proxy`.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use testcontainers::core::{IntoContainerPort as _, WaitFor};
use testcontainers::runners::AsyncRunner as _;
use testcontainers::{ContainerAsync, GenericImage, Image as _, ImageExt as _};
use tokio::sync::OnceCell;

use super::Podinit;
pub use super::fault::Proxy;

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

    /// Puts `data` as a multipart upload whose parts carry checksums of `alg`, so the object's
    /// checksum is COMPOSITE (a checksum of the parts' checksums, `…-N`), as the aws cli makes.
    pub async fn put_multipart_checksummed(&self, key: &str, data: &[u8], part: usize, alg: ChecksumAlgorithm) -> String {
        let client = &self.checksummed;
        let upload = client
            .create_multipart_upload()
            .bucket(BUCKET)
            .key(key)
            .checksum_algorithm(alg.clone())
            .send()
            .await
            .expect("create multipart upload");
        let id = upload.upload_id().unwrap();
        let mut parts = Vec::new();
        for (i, chunk) in data.chunks(part).enumerate() {
            let n = i32::try_from(i + 1).unwrap();
            let out = client
                .upload_part()
                .bucket(BUCKET)
                .key(key)
                .upload_id(id)
                .part_number(n)
                .checksum_algorithm(alg.clone())
                .body(ByteStream::from(chunk.to_vec()))
                .send()
                .await
                .expect("upload part");
            parts.push(
                CompletedPart::builder()
                    .part_number(n)
                    .e_tag(out.e_tag().unwrap())
                    .set_checksum_crc32(out.checksum_crc32().map(str::to_owned))
                    .set_checksum_crc32_c(out.checksum_crc32_c().map(str::to_owned))
                    .set_checksum_sha256(out.checksum_sha256().map(str::to_owned))
                    .build(),
            );
        }
        let out = client
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
    let (client, checksummed) = clients(port);
    Garage { _container: container, port, web_port, client, checksummed }
}

/// The image of the test store (built if missing), `NAME:TAG`.
pub async fn image() -> String {
    let image = IMAGE.get_or_init(|| super::docker::built("images/test/s3/build")).await;
    format!("{}:{}", image.name(), image.tag())
}

/// A plain client (no checksums) for a Garage on 127.0.0.1:`port`, e.g. one in podman.
pub fn client(port: u16) -> Client {
    clients(port).0
}

/// Test-side clients: plain uploads, and uploads with the SDK's checksums.
fn clients(port: u16) -> (Client, Client) {
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
    (Client::from_conf(plain), Client::from_conf(checksummed))
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
