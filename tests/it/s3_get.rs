//! `podinit s3-get` against a real Garage store in a container (images/test/s3), with faults
//! put in the path by a proxy of the test's own (support::s3::Proxy).

use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_s3::types::ChecksumAlgorithm;

use crate::support::s3::{self, Garage, PUBLIC_BUCKET, Proxy};
use crate::support::{Outcome, Podinit};

const MIB: usize = 1 << 20;

fn read(path: impl AsRef<Path>) -> Vec<u8> {
    let path = path.as_ref();
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ino(path: impl AsRef<Path>) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

/// Names in `dir` (hidden ones included), sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    out.sort();
    out
}

/// Names in an extraction's destination, without the set's lock (which a failed run leaves).
fn visible_names(dir: &Path) -> Vec<String> {
    names(dir).into_iter().filter(|n| n != "..podinit.lock").collect()
}

fn get(garage: &Garage, endpoint: &str, args: &[&str]) -> Outcome {
    garage.podinit(endpoint).args(["--timeout", "60s"]).args(args).run()
}

#[tokio::test]
async fn single_part_multipart_and_checksummed_objects_are_verified_and_reruns_cost_one_head() {
    let garage = s3::garage().await;
    let proxy = Proxy::start(garage.port);
    let small = s3::data(3 * MIB + 17, 1);
    let multi = s3::data(21 * MIB + 5, 2);
    let crc = s3::data(2 * MIB, 3);
    garage.put("m/small.bin", &small, None).await;
    let etag = garage.put_multipart("m/multi.bin", &multi, 5 * MIB).await;
    assert!(etag.ends_with("-5\""), "a multipart ETag: {etag}");
    garage.put("m/crc.bin", &crc, Some(ChecksumAlgorithm::Crc32C)).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let run = get(&garage, &proxy.endpoint(), &["s3://test/m/small.bin", &format!("{}/", d.display())]);
    run.code(0).stderr_has("verified: MD5 (ETag)");
    assert_eq!(read(d.join("small.bin")), small);
    // Ranges of 4 MiB across parts of 5 MiB: the multipart ETag is still checked.
    let run =
        get(&garage, &proxy.endpoint(), &["--part-size", "4MiB", "s3://test/m/multi.bin", &d.join("model.bin").display().to_string()]);
    run.code(0).stderr_has("verified: multipart ETag (5 parts)");
    assert_eq!(read(d.join("model.bin")), multi);
    // Without --part-size the ranges are whole parts (20 MiB: four parts, then one), each
    // part's MD5 computed from the bytes as they arrive.
    let run = get(&garage, &proxy.endpoint(), &["s3://test/m/multi.bin", &d.join("streamed.bin").display().to_string()]);
    run.code(0).stderr_has("verified: multipart ETag (5 parts)");
    assert_eq!(read(d.join("streamed.bin")), multi);
    std::fs::remove_file(d.join("streamed.bin")).unwrap();
    let run = get(&garage, &proxy.endpoint(), &["s3://test/m/crc.bin", &format!("{}/", d.display())]);
    run.code(0).stderr_has("verified: CRC32C checksum");
    assert_eq!(read(d.join("crc.bin")), crc);
    assert_eq!(std::fs::metadata(d.join("crc.bin")).unwrap().mode() & 0o7777, 0o644);
    // Every full-object checksum the store keeps, computed across 1 MiB ranges.
    for (alg, name) in
        [(ChecksumAlgorithm::Crc64Nvme, "CRC64NVME"), (ChecksumAlgorithm::Crc32, "CRC32"), (ChecksumAlgorithm::Sha256, "SHA-256")]
    {
        garage.put("m/sum.bin", &crc, Some(alg)).await;
        let run = get(&garage, &proxy.endpoint(), &["--part-size", "1MiB", "s3://test/m/sum.bin", &d.join(name).display().to_string()]);
        run.code(0).stderr_has(&format!("verified: {name} checksum"));
        assert_eq!(read(d.join(name)), crc);
    }

    // A rerun when the file is current: one HEAD, no GET, the same inode.
    let before = ino(d.join("model.bin"));
    proxy.take_requests();
    proxy.take_response_bytes();
    let run = get(&garage, &proxy.endpoint(), &["s3://test/m/multi.bin", &d.join("model.bin").display().to_string()]);
    run.code(0).stderr_has("is current");
    assert_eq!(proxy.take_requests(), 1, "only a HEAD");
    assert!(proxy.take_response_bytes() < 4096);
    assert_eq!(ino(d.join("model.bin")), before);

    // A file changed locally is downloaded again.
    std::fs::OpenOptions::new().append(true).open(d.join("model.bin")).unwrap().write_all(b"x").unwrap();
    get(&garage, &proxy.endpoint(), &["s3://test/m/multi.bin", &d.join("model.bin").display().to_string()]).code(0);
    assert_eq!(read(d.join("model.bin")), multi);

    // A pinned digest that does not match: exit 1, the old file stays, nothing else appears.
    for name in ["CRC64NVME", "CRC32", "SHA-256"] {
        std::fs::remove_file(d.join(name)).unwrap();
        std::fs::remove_file(d.join(format!(".{name}.podinit-s3"))).unwrap();
    }
    let listing = names(d);
    let run =
        get(&garage, &proxy.endpoint(), &["--force", "--sha256", &"ab".repeat(32), "s3://test/m/small.bin", &format!("{}/", d.display())]);
    run.code(1).stderr_has("SHA-256 mismatch");
    assert_eq!(read(d.join("small.bin")), small);
    assert_eq!(names(d), listing, "no temp file is left behind");
    let sha = {
        use sha2::Digest as _;
        format!("{:x}", sha2::Sha256::digest(&small))
    };
    get(&garage, &proxy.endpoint(), &["--force", "--sha256", &sha, "s3://test/m/small.bin", &format!("{}/", d.display())])
        .code(0)
        .stderr_has("MD5 (ETag) and --sha256");
}

#[tokio::test]
async fn refusals_and_bad_input_fail_clearly_and_write_nothing() {
    let garage = s3::garage().await;
    garage.put("r/a.bin", b"abc", None).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dest = d.join("out").display().to_string();
    let ep = garage.endpoint();

    get(&garage, &ep, &["s3://test/r/missing.bin", &dest]).code(1).stderr_has("404").stderr_has("no object has the key 'r/missing.bin'");
    get(&garage, &ep, &["s3://nobucket/r/a.bin", &dest]).code(1).stderr_has("404");
    let run = garage.podinit(&ep).env("AWS_SECRET_ACCESS_KEY", "0".repeat(64)).args(["s3://test/r/a.bin", &dest]).run();
    run.code(1).stderr_has("403");
    assert!(!run.stderr.contains(&"0".repeat(64)) && !run.stderr.contains(s3::SECRET), "no secret in the output");
    get(&garage, &ep, &["s3://test/r/a.bin", &d.display().to_string()]).code(2).stderr_has("is a directory");
    get(&garage, &ep, &["test/r/a.bin", &dest]).code(2).stderr_has("not an s3:// URL");
    get(&garage, &ep, &["s3://test/r/a.bin", &dest, "--sha256", "xyz"]).code(2);
    assert!(names(d).is_empty(), "nothing written: {:?}", names(d));

    // Nothing listens: retried until the deadline, then 124 with the last error.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let started = Instant::now();
    let run = garage.podinit(&format!("http://127.0.0.1:{closed}")).args(["--timeout", "3s", "s3://test/r/a.bin", &dest]).run();
    run.code(124).stderr_has("gave up");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(names(d).is_empty());
}

#[tokio::test]
async fn a_cut_connection_is_retried_and_a_replaced_object_starts_over() {
    let garage = s3::garage().await;
    let old = s3::data(12 * MIB, 4);
    let new = s3::data(12 * MIB, 5);
    garage.put("c/obj.bin", &old, None).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("obj.bin");

    // Connections cut after 5 MiB of responses: the broken ranges are fetched again.
    let proxy = Proxy::start(garage.port);
    proxy.faults.cut_after.store(5 * MIB as u64, std::sync::atomic::Ordering::Relaxed);
    let run =
        get(&garage, &proxy.endpoint(), &["--part-size", "1MiB", "--concurrency", "4", "s3://test/c/obj.bin", &dest.display().to_string()]);
    run.code(0).stderr_has("retrying");
    assert_eq!(read(&dest), old);

    // Replaced while a slow download is under way: If-Match notices, the download starts over
    // and ends with the new object.
    let slow = Proxy::start(garage.port);
    // 1 MiB/s a connection: the download takes about 6 s, well past the replacing PUT even on
    // a busy machine (at 4 MiB/s it once finished before the PUT did).
    slow.faults.rate.store(MIB as u64, std::sync::atomic::Ordering::Relaxed);
    let child = garage
        .podinit(&slow.endpoint())
        .args(["--timeout", "60s", "--force", "--part-size", "1MiB", "--concurrency", "2", "s3://test/c/obj.bin"])
        .arg(&dest)
        .command()
        .spawn()
        .unwrap();
    while slow.take_response_bytes() == 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    garage.put("c/obj.bin", &new, None).await;
    slow.faults.rate.store(0, std::sync::atomic::Ordering::Relaxed);
    let run = Outcome::from_output(child.wait_with_output().unwrap());
    run.code(0).stderr_has("changed during the download");
    assert_eq!(read(&dest), new);
}

#[tokio::test]
async fn a_byte_corrupted_on_the_way_is_caught_and_nothing_is_written() {
    let garage = s3::garage().await;
    let single = s3::data(6 * MIB, 10);
    let multi = s3::data(12 * MIB, 11);
    garage.put("v/single.bin", &single, None).await;
    garage.put_multipart("v/multi.bin", &multi, 5 * MIB).await;
    let dir = tempfile::tempdir().unwrap();
    garage.put("v/crc.bin", &single, Some(ChecksumAlgorithm::Crc64Nvme)).await;
    // 1 MiB ranges: parts read back (not whole parts), CRCs combined; default ranges: parts
    // hashed as they stream.
    for (key, hash, part_size) in [
        ("v/single.bin", "MD5 mismatch", "1MiB"),
        ("v/multi.bin", "multipart ETag mismatch", "1MiB"),
        ("v/multi.bin", "multipart ETag mismatch", ""),
        ("v/crc.bin", "CRC64NVME mismatch", "1MiB"),
    ] {
        let proxy = Proxy::start(garage.port);
        proxy.faults.corrupt_after.store(3 * MIB as u64, std::sync::atomic::Ordering::Relaxed);
        let mut args = vec![format!("s3://test/{key}"), format!("{}/", dir.path().display())];
        if !part_size.is_empty() {
            args.splice(0..0, ["--part-size".to_owned(), part_size.to_owned()]);
        }
        let run = get(&garage, &proxy.endpoint(), &args.iter().map(String::as_str).collect::<Vec<_>>());
        run.code(1).stderr_has("verification failed").stderr_has(hash);
        assert!(names(dir.path()).is_empty(), "{key}: nothing written: {:?}", names(dir.path()));
    }
}

#[tokio::test]
async fn a_killed_download_resumes_from_the_ranges_on_disk() {
    let garage = s3::garage().await;
    let body = s3::data(24 * MIB, 6);
    garage.put_multipart("k/big.bin", &body, 8 * MIB).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("big.bin");
    let state = dir.path().join(".big.bin.podinit-partial-state");

    let slow = Proxy::start(garage.port);
    slow.faults.rate.store(6 * MIB as u64, std::sync::atomic::Ordering::Relaxed);
    let mut child = garage
        .podinit(&slow.endpoint())
        .args(["--timeout", "60s", "--part-size", "1MiB", "--concurrency", "2", "s3://test/k/big.bin"])
        .arg(&dest)
        .command()
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !state.exists() {
        assert!(Instant::now() < deadline, "no progress was recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!dest.exists(), "a killed download leaves no file at DEST");

    let proxy = Proxy::start(garage.port);
    let run = get(&garage, &proxy.endpoint(), &["s3://test/k/big.bin", &dest.display().to_string()]);
    run.code(0).stderr_has("resuming s3://test/k/big.bin").stderr_has("resumed from an earlier run").stderr_has("multipart ETag (3 parts)");
    let fetched = proxy.take_response_bytes();
    assert!(fetched < body.len() as u64, "only the missing ranges are fetched ({fetched} bytes)");
    assert_eq!(read(&dest), body);
    assert_eq!(names(dir.path()), [".big.bin.podinit-s3", "big.bin"], "no partial state is left");
}

#[tokio::test]
async fn a_prefix_with_filters_is_mirrored_and_escaping_keys_are_refused() {
    let garage = s3::garage().await;
    let big = s3::data(5 * MIB, 7);
    garage.put("p/a.txt", b"a", None).await;
    garage.put("p/sub/b.txt", b"bb", Some(ChecksumAlgorithm::Crc32)).await;
    garage.put("p/skip.tmp", b"tmp", None).await;
    garage.put("p/big/weights.bin", &big, None).await;
    garage.put("other/x.txt", b"x", None).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let proxy = Proxy::start(garage.port);

    let run = get(&garage, &proxy.endpoint(), &["--part-size", "1MiB", "--exclude", "*.tmp", "s3://test/p/", &format!("{}/", d.display())]);
    run.code(0).stderr_has("3 object(s) downloaded");
    assert_eq!(names(&d), [".podinit-s3", "a.txt", "big", "sub"]);
    assert_eq!(read(d.join("sub/b.txt")), b"bb");
    assert_eq!(read(d.join("big/weights.bin")), big);
    get(&garage, &proxy.endpoint(), &["--include", "sub/*", "s3://test/p/", &d.display().to_string()])
        .code(0)
        .stderr_has("nothing to download");

    // A rerun costs the listing alone.
    proxy.take_requests();
    get(&garage, &proxy.endpoint(), &["--exclude", "*.tmp", "s3://test/p/", &d.display().to_string()])
        .code(0)
        .stderr_has("nothing to download");
    assert_eq!(proxy.take_requests(), 1);

    // A key that climbs out of the destination refuses the whole run before anything is written.
    garage.put("p/new.txt", b"n", None).await;
    garage.put("p/../escape.txt", b"evil", None).await;
    let run = get(&garage, &proxy.endpoint(), &["s3://test/p/", &d.display().to_string()]);
    run.code(1).stderr_has("refused");
    assert!(!d.join("new.txt").exists(), "nothing is written when a key is refused");
    assert!(!dir.path().join("escape.txt").exists());
    // Left out by name, the rest goes ahead.
    get(&garage, &proxy.endpoint(), &["--exclude", "../*", "s3://test/p/", &d.display().to_string()]).code(0);
    assert_eq!(read(d.join("new.txt")), b"n");
    assert!(!dir.path().join("escape.txt").exists());

    // A multipart object small enough for one GET (under two --part-size) is still checked
    // against its multipart ETag while it streams.
    let mid = s3::data(11 * MIB, 8);
    garage.put_multipart("q/mid.bin", &mid, 5 * MIB).await;
    let q = dir.path().join("q");
    get(&garage, &proxy.endpoint(), &["s3://test/q/", &format!("{}/", q.display())]).code(0).stderr_has("1 by multipart ETag (3 parts)");
    assert_eq!(read(q.join("mid.bin")), mid);
}

#[tokio::test]
async fn a_prefix_of_large_objects_downloads_them_together_biggest_first() {
    let garage = s3::garage().await;
    // Three multipart shards, one with a full-object CRC64NVME, small files beside them.
    let shards = [s3::data(23 * MIB + 3, 20), s3::data(17 * MIB, 21), s3::data(12 * MIB + 1, 22)];
    for (i, shard) in shards.iter().enumerate() {
        garage.put_multipart(&format!("llm/model-{i}.safetensors"), shard, 5 * MIB).await;
    }
    let crc = s3::data(11 * MIB, 23);
    garage.put("llm/model-3.safetensors", &crc, Some(ChecksumAlgorithm::Crc64Nvme)).await;
    for i in 0..5 {
        garage.put(&format!("llm/small-{i}.json"), format!("{{\"n\": {i}}}").as_bytes(), None).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("model");
    let proxy = Proxy::start(garage.port);
    let run =
        get(&garage, &proxy.endpoint(), &["--part-size", "5MiB", "--concurrency", "3", "s3://test/llm/", &format!("{}/", d.display())]);
    run.code(0)
        .stderr_has("9 object(s) downloaded")
        .stderr_has("1 by CRC64NVME checksum, 5 by MD5 (ETag), 1 by multipart ETag (3 parts), 1 by multipart ETag (4 parts), 1 by multipart ETag (5 parts)");
    for (i, shard) in shards.iter().enumerate() {
        assert_eq!(&read(d.join(format!("model-{i}.safetensors"))), shard);
    }
    assert_eq!(read(d.join("model-3.safetensors")), crc);
    assert_eq!(read(d.join("small-4.json")), b"{\"n\": 4}");

    // A byte flipped in one shard: that run fails, nothing half-written appears, and the rerun
    // fetches only what is missing.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("model");
    let proxy = Proxy::start(garage.port);
    proxy.faults.corrupt_after.store(30 * MIB as u64, std::sync::atomic::Ordering::Relaxed);
    let run =
        get(&garage, &proxy.endpoint(), &["--part-size", "5MiB", "--concurrency", "3", "s3://test/llm/", &format!("{}/", d.display())]);
    run.code(1).stderr_has("verification failed");
    for name in names(&d) {
        if let Some(i) = name.strip_prefix("model-").and_then(|n| n.strip_suffix(".safetensors")) {
            let i: usize = i.parse().unwrap();
            let want = if i == 3 { &crc } else { &shards[i] };
            assert_eq!(&read(d.join(&name)), want, "{name}: complete or absent");
        }
    }
    let proxy = Proxy::start(garage.port);
    get(&garage, &proxy.endpoint(), &["--part-size", "5MiB", "s3://test/llm/", &format!("{}/", d.display())]).code(0);
    assert!(proxy.take_response_bytes() < 60 * MIB as u64, "what the first run finished is not fetched again");
    for (i, shard) in shards.iter().enumerate() {
        assert_eq!(&read(d.join(format!("model-{i}.safetensors"))), shard);
    }
}

/// Bytes of `path` in the page cache (util-linux `fincore`).
fn resident(path: &Path) -> u64 {
    let out = std::process::Command::new("fincore").args(["--bytes", "--noheadings", "--output", "RES"]).arg(path).output().unwrap();
    assert!(out.status.success(), "fincore: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[tokio::test]
async fn under_a_memory_limit_written_pages_are_dropped_and_without_one_kept() {
    let garage = s3::garage().await;
    let body = s3::data(80 * MIB, 30);
    garage.put_multipart("mem/model.bin", &body, 8 * MIB).await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(garage.port);

    // No limit: the file stays in the page cache for the app that starts next.
    let free = dir.path().join("free.bin");
    get(&garage, &proxy.endpoint(), &["s3://test/mem/model.bin", &free.display().to_string()]).code(0);
    let kept = resident(&free);
    assert!(kept > 70 * MIB as u64, "kept in the page cache: {kept} bytes");
    assert_eq!(read(&free), body);

    // A pod limit of 128 MiB (cgroup v1 here; the page cache is charged to it): the 80 MiB
    // would fit, but more than half the limit is dropped as it is written back.
    let group = Path::new("/sys/fs/cgroup/memory").join(format!("podinit-test-{}", std::process::id()));
    std::fs::create_dir(&group).unwrap();
    std::fs::write(group.join("memory.limit_in_bytes"), (128 * MIB).to_string()).unwrap();
    let limited = dir.path().join("limited.bin");
    let script = format!("echo $$ >{}/cgroup.procs && shift && exec \"$@\"", group.display());
    let run = garage
        .podinit(&proxy.endpoint())
        .args(["--timeout", "60s", "s3://test/mem/model.bin"])
        .arg(&limited)
        .wrapped(&["sh", "-c", &script, "sh"])
        .run();
    let failcnt = std::fs::read_to_string(group.join("memory.failcnt")).unwrap();
    std::fs::remove_dir(&group).unwrap();
    run.code(0).stderr_has("verified: multipart ETag (10 parts)");
    let kept = resident(&limited);
    assert!(kept < 8 * MIB as u64, "written pages dropped under the limit: {kept} bytes resident (limit hits: {failcnt})");
    assert_eq!(read(&limited), body);
}

/// A tar archive; `raw` entries are written with their names as given (no checks), for
/// archives an attacker made.
fn tar_archive(files: &[(&str, &[u8])], symlinks: &[(&str, &str)], raw: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, path, *data).unwrap();
    }
    for (path, target) in symlinks {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        builder.append_link(&mut header, path, target).unwrap();
    }
    for (path, data) in raw {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[tokio::test]
async fn archives_are_extracted_while_streaming_and_escaping_entries_refused() {
    let garage = s3::garage().await;
    let weights = s3::data(3 * MIB, 8);
    let good = tar_archive(&[("geo/City.mmdb", &weights), ("geo/README", b"hello")], &[("geo/latest", "City.mmdb")], &[]);
    garage.put("a/geo.tar.gz", &gzip(&good), None).await;
    garage.put("a/geo.tar.zst", &zstd::encode_all(&good[..], 3).unwrap(), None).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("geo-gz");
    let ep = garage.endpoint();

    get(&garage, &ep, &["--extract", "s3://test/a/geo.tar.gz", &d.display().to_string()]).code(0).stderr_has("verified: MD5 (ETag)");
    assert_eq!(read(d.join("geo/City.mmdb")), weights);
    assert_eq!(std::fs::read_link(d.join("geo/latest")).unwrap(), Path::new("City.mmdb"));
    get(&garage, &ep, &["--extract", "s3://test/a/geo.tar.gz", &d.display().to_string()]).code(0).stderr_has("nothing to download");
    let z = dir.path().join("geo-zst");
    get(&garage, &ep, &["--extract", "--part-size", "1MiB", "s3://test/a/geo.tar.zst", &z.display().to_string()]).code(0);
    assert_eq!(read(z.join("geo/City.mmdb")), weights);
    // A multipart upload is checked against its multipart ETag while it is unpacked.
    let model = s3::data(11 * MIB, 10);
    garage.put_multipart("a/model.tar", &tar_archive(&[("model/w.bin", &model)], &[], &[]), 5 * MIB).await;
    let m = dir.path().join("model");
    get(&garage, &ep, &["--extract", "s3://test/a/model.tar", &m.display().to_string()])
        .code(0)
        .stderr_has("verified: multipart ETag (3 parts)");
    assert_eq!(read(m.join("model/w.bin")), model);

    for (name, archive) in [
        ("a/dotdot.tar", tar_archive(&[("ok.txt", b"ok")], &[], &[("../evil.txt", b"evil")])),
        ("a/abs.tar", tar_archive(&[("ok.txt", b"ok")], &[], &[("/tmp/podinit-evil.txt", b"evil")])),
        ("a/link.tar", tar_archive(&[("ok.txt", b"ok")], &[("etc", "/etc")], &[])),
        ("a/uplink.tar", tar_archive(&[("ok.txt", b"ok")], &[("d/up", "../../..")], &[])),
    ] {
        garage.put(name, &archive, None).await;
        let out = dir.path().join("evil");
        let run = get(&garage, &ep, &["--extract", &format!("s3://test/{name}"), &out.display().to_string()]);
        run.code(1).stderr_has("refused");
        // A first run that publishes nothing leaves no directory behind either.
        assert!(!out.exists(), "{name}: nothing extracted, no directory left: {:?}", out.exists().then(|| visible_names(&out)));
        assert!(!dir.path().join("evil.txt").exists() && !Path::new("/tmp/podinit-evil.txt").exists());
    }
}

#[tokio::test]
async fn the_shipped_image_fetches_into_a_volume_as_a_non_root_init_container() {
    use testcontainers::ImageExt as _;
    use testcontainers::core::Mount;
    let network = format!("podinit-s3-{}", std::process::id());
    let made = std::process::Command::new("docker").args(["network", "create", &network]).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let store = format!("{network}-garage");
    let garage = s3::garage_on(Some((&network, &store))).await;
    let body = s3::data(9 * MIB, 12);
    garage.put_multipart("img/model.bin", &body, 5 * MIB).await;
    // The emptyDir: writable by the image's user (65532).
    let volume = tempfile::tempdir().unwrap();
    std::fs::set_permissions(volume.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let image = crate::support::docker::podinit_image().await;
    let pod = |args: &[&str]| {
        image
            .clone()
            .with_cmd(args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>())
            .with_network(network.clone())
            .with_mount(Mount::bind_mount(volume.path().to_string_lossy(), "/models"))
            .with_env_var("AWS_ACCESS_KEY_ID", s3::KEY_ID)
            .with_env_var("AWS_SECRET_ACCESS_KEY", s3::SECRET)
            .with_env_var("AWS_REGION", "garage")
            .with_env_var("AWS_EC2_METADATA_DISABLED", "true")
            .with_env_var("AWS_ENDPOINT_URL", format!("http://{store}:3900"))
    };
    let run = crate::support::docker::run_to_exit(pod(&["s3-get", "--timeout", "60s", "s3://test/img/model.bin", "/models/"])).await;
    run.code(0).stderr_has("verified: multipart ETag (2 parts)");
    assert_eq!(read(volume.path().join("model.bin")), body);
    assert_eq!(std::fs::metadata(volume.path().join("model.bin")).unwrap().uid(), 65532, "written by the image's non-root user");
    // A restarted pod finds the file current.
    let again = crate::support::docker::run_to_exit(pod(&["s3-get", "s3://test/img/model.bin", "/models/"])).await;
    again.code(0).stderr_has("is current");
    // The image carries the CA bundle TLS needs and names its user.
    for (file, text) in [("/etc/ssl/certs/ca-certificates.crt", "BEGIN CERTIFICATE"), ("/etc/passwd", "nonroot:x:65532:")] {
        let url = format!("file://{file}");
        let found = crate::support::docker::run_to_exit(pod(&["wait-for", "--once", "--file-contains", text, &url])).await;
        found.code(0);
    }
    drop(garage);
    let _ = std::process::Command::new("docker").args(["network", "rm", &network]).output();
}

#[tokio::test]
async fn a_public_bucket_is_read_without_credentials() {
    let garage = s3::garage().await;
    let body = s3::data(MIB + 3, 9);
    // Garage serves a website bucket by host name: with path-style URLs on
    // http://localhost:PORT, bucket "localhost" key "K" is requested as /localhost/K, which the
    // website endpoint reads as key "localhost/K" of the bucket named by the host.
    garage.put_in(PUBLIC_BUCKET, "localhost/public.bin", &body, None).await;
    let dir = tempfile::tempdir().unwrap();
    let run = Podinit::new()
        .args(["s3-get", "--timeout", "30s", "--no-sign-request", "--region", "garage", "--endpoint-url"])
        .arg(format!("http://localhost:{}", garage.web_port))
        .arg(format!("s3://{PUBLIC_BUCKET}/public.bin"))
        .arg(dir.path().join("public.bin"))
        .run();
    run.code(0);
    assert_eq!(read(dir.path().join("public.bin")), body);
}

use crate::support::archive::{Raw, raw, raw_tar};
use tar::EntryType::{Directory as DIR, Regular as FILE, Symlink as LINK};

#[tokio::test]
async fn archive_links_are_judged_by_where_they_really_lead() {
    let garage = s3::garage().await;
    let dir = tempfile::tempdir().unwrap();
    let ep = garage.endpoint();
    for (name, entries) in [
        // Each link alone looks inside; written through `d -> .`, the second lands at the
        // top and points at /etc.
        ("chain.tar", vec![raw("d", LINK, 0o777, "."), raw("d/d/d/d/d/d/esc", LINK, 0o777, "../../../../../../etc")]),
        // Judged by the text, `x -> d/..` stays inside; through `d -> .` it is the parent.
        ("dotdot.tar", vec![raw("ok", FILE, 0o644, "ok"), raw("d", LINK, 0o777, "."), raw("x", LINK, 0o777, "d/..")]),
        // A link aimed out only once a later entry exists.
        ("later.tar", vec![raw("a/l", LINK, 0o777, "../b/.."), raw("b", LINK, 0o777, ".")]),
    ] {
        garage.put(&format!("links/{name}"), &raw_tar(&entries), None).await;
        let out = dir.path().join(name);
        let run = get(&garage, &ep, &["--extract", &format!("s3://test/links/{name}"), &out.display().to_string()]);
        run.code(1).stderr_has("refused");
        // A first run that publishes nothing leaves no directory behind either.
        assert!(!out.exists(), "{name}: nothing extracted, no directory left: {:?}", out.exists().then(|| visible_names(&out)));
    }
}

#[tokio::test]
async fn archives_lose_setuid_bits_and_read_only_directories_extract_without_root() {
    let garage = s3::garage().await;
    let v1 = raw_tar(&[
        raw("bin", DIR, 0o555, ""),
        raw("bin/suid", FILE, 0o4755, "#!/bin/sh\n"),
        raw("bin/sgid", FILE, 0o2711, "x"),
        raw("tmp", DIR, 0o1777, ""),
        raw("tmp/f", FILE, 0o644, "f"),
    ]);
    garage.put("modes/v1.tar", &v1, None).await;
    garage.put("modes/v2.tar", &raw_tar(&[raw("bin", DIR, 0o555, ""), raw("bin/tool", FILE, 0o755, "v2")]), None).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("vol");
    std::fs::create_dir(&out).unwrap();
    std::os::unix::fs::chown(&out, Some(65532), Some(65532)).unwrap();
    // As the image's user, as a restricted init container runs.
    let non_root = |key: &str| {
        garage
            .podinit(&garage.endpoint())
            .wrapped(&["/usr/bin/setpriv", "--reuid", "65532", "--regid", "65532", "--clear-groups"])
            .args(["--timeout", "60s", "--extract", &format!("s3://test/modes/{key}"), &out.display().to_string()])
            .run()
    };
    non_root("v1.tar").code(0);
    let mode = |p: &str| std::fs::symlink_metadata(out.join(p)).unwrap().mode() & 0o7777;
    assert_eq!((mode("bin/suid"), mode("bin/sgid"), mode("tmp")), (0o755, 0o711, 0o777), "setuid, setgid and sticky stripped");
    assert_eq!(mode("bin/"), 0o555, "the directory's own mode, applied after its entries");
    assert_eq!(std::fs::metadata(out.join("bin/suid")).unwrap().uid(), 65532);
    // The next version replaces the read-only tree, still without root.
    non_root("v2.tar").code(0);
    assert_eq!(read(out.join("bin/tool")), b"v2");
    assert!(!out.join("bin/suid").exists() && !out.join("tmp").exists());
}

#[tokio::test]
async fn archive_versions_replace_each_other_whole_and_odd_entries_rerun_as_current() {
    let garage = s3::garage().await;
    let proxy = Proxy::start(garage.port);
    let ep = proxy.endpoint();
    // v1: a top-level link, a dangling link, a name that is not UTF-8, a file `data`, a link
    // `conf` and a file `a.txt`.
    let v1 = raw_tar(&[
        raw("v2", DIR, 0o755, ""),
        raw("v2/model", FILE, 0o644, "model v2"),
        raw("current", LINK, 0o777, "v2"),
        raw("dangling", LINK, 0o777, "not/there"),
        Raw { name: b"caf\xe9.txt", kind: FILE, mode: 0o644, body: b"latin-1 name" },
        raw("data", FILE, 0o644, "a file"),
        raw("conf", LINK, 0o777, "v2"),
        raw("a.txt", FILE, 0o644, "a"),
    ]);
    garage.put("sets/app.tar", &v1, None).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("app");
    let d = out.display().to_string();
    get(&garage, &ep, &["--extract", "s3://test/sets/app.tar", &d]).code(0);
    assert_eq!(read(out.join("current/model")), b"model v2");
    assert_eq!(read(out.join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt"))), b"latin-1 name");
    // A rerun of the same object is one HEAD and changes nothing.
    let before = ino(out.join("data"));
    proxy.take_requests();
    get(&garage, &ep, &["--extract", "s3://test/sets/app.tar", &d]).code(0).stderr_has("nothing to download");
    assert_eq!(proxy.take_requests(), 1, "only a HEAD");
    assert_eq!(ino(out.join("data")), before);
    // A file edited in place (mtime put back) is noticed: extracted again.
    let file = out.join("a.txt");
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    std::fs::write(&file, "b").unwrap();
    std::fs::File::options().write(true).open(&file).unwrap().set_modified(mtime).unwrap();
    get(&garage, &ep, &["--extract", "s3://test/sets/app.tar", &d]).code(0).stderr_has("entries");
    assert_eq!(read(out.join("a.txt")), b"a");

    // v2: `data` becomes a directory, `conf` a directory, `a.txt` is gone.
    let v2 = raw_tar(&[
        raw("data", DIR, 0o755, ""),
        raw("data/x", FILE, 0o644, "x"),
        raw("conf", DIR, 0o755, ""),
        raw("conf/y", FILE, 0o644, "y"),
    ]);
    garage.put("sets/app.tar", &v2, None).await;
    get(&garage, &ep, &["--extract", "s3://test/sets/app.tar", &d]).code(0);
    assert_eq!(read(out.join("data/x")), b"x");
    assert_eq!(read(out.join("conf/y")), b"y");
    for gone in ["a.txt", "current", "dangling", "v2"] {
        assert!(std::fs::symlink_metadata(out.join(gone)).is_err(), "{gone} left with the old version");
    }
    let listing = names(&out);
    assert_eq!(listing.iter().filter(|n| n.starts_with("..2")).count(), 1, "one data directory: {listing:?}");
}

#[tokio::test]
async fn extracted_files_are_synced_before_the_set_switches() {
    let garage = s3::garage().await;
    let files: Vec<(String, Vec<u8>)> = (0..5).map(|i| (format!("f{i}"), vec![b'a' + i as u8; 1000])).collect();
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    garage.put("sync/five.tar", &tar_archive(&refs, &[], &[]), None).await;
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let out = dir.path().join("out");
    let run = garage
        .podinit(&garage.endpoint())
        .wrapped(&["/usr/bin/strace", "-f", "-qq", "-e", "trace=fsync,fdatasync,renameat,renameat2,rename", "-o", trace.to_str().unwrap()])
        .args(["--timeout", "60s", "--extract", "s3://test/sync/five.tar", out.to_str().unwrap()])
        .run();
    run.code(0);
    let calls = std::fs::read_to_string(&trace).unwrap();
    let switch = calls.lines().position(|l| l.contains("..data_tmp") && l.contains("rename")).expect("the set switches by rename");
    let synced = calls.lines().take(switch).filter(|l| l.contains("fdatasync(")).count();
    assert!(synced >= 5, "each of the 5 files synced before the switch, saw {synced}:\n{calls}");
}
