//! `podinit http-get` against real local servers: python's own `http.server` (no ranges, no
//! validators), and `support/webserver.py` (ranges, ETag, Last-Modified, If-Range, redirects,
//! failures, cut connections, throttling, TLS with a private CA), each logging its requests.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest as _;

use crate::support::s3::data;
use crate::support::web::{Pki, Server};
use crate::support::{Outcome, Podinit};

const MIB: usize = 1 << 20;

fn sha256(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn read(path: impl AsRef<Path>) -> Vec<u8> {
    let path = path.as_ref();
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Names in `dir` (hidden ones included), sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    out.sort();
    out
}

fn http_get(args: &[&str]) -> Outcome {
    Podinit::new().args(["--timeout", "30s", "http-get"]).args(args).run()
}

/// A webserver.py serving `root`, with extra arguments.
fn serve(root: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["--root", root.to_str().unwrap()];
    args.extend_from_slice(extra);
    Server::python(&args)
}

fn url(server: &Server, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", server.port)
}

/// A request's header, by name in any case (HTTP/1 clients send them lowercase).
fn header(request: &serde_json::Value, name: &str) -> Option<String> {
    request["headers"].as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).and_then(|(_, v)| v.as_str().map(str::to_owned))
}

/// The requests for `path` a server got, as their Range headers.
fn gets(server: &Server, path: &str) -> Vec<Option<String>> {
    server.requests().iter().filter(|r| r["path"] == path).map(|r| header(r, "Range")).collect()
}

/// Python's own `python3 -m http.server` (no Range, no ETag), on a free port.
struct PlainServer {
    child: std::process::Child,
    port: u16,
}

impl PlainServer {
    fn start(root: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory", root.to_str().unwrap(), &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "http.server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port }
    }
}

impl Drop for PlainServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_plain_server_without_ranges_is_one_verified_stream_and_a_wrong_checksum_writes_nothing() {
    let www = tempfile::tempdir().unwrap();
    let body = data(3 * MIB + 5, 1);
    std::fs::write(www.path().join("tool.bin"), &body).unwrap();
    let server = PlainServer::start(www.path());
    let out = tempfile::tempdir().unwrap();
    let u = format!("http://127.0.0.1:{}/tool.bin", server.port);

    let run = http_get(&[&u, &format!("{}/", out.path().display()), "--sha256", &sha256(&body), "--part-size", "64KiB"]);
    run.code(0).stderr_has("verified: SHA-256");
    assert_eq!(read(out.path().join("tool.bin")), body);

    let wrong = sha256(b"something else");
    let run = http_get(&[&u, out.path().join("other.bin").to_str().unwrap(), "--sha256", &wrong]);
    run.code(1).stderr_has("SHA-256 mismatch").stderr_has("nothing was written");
    assert_eq!(names(out.path()), [".tool.bin.podinit-http", "tool.bin"], "nothing at DEST, no temp file left");
    // The record a version before 2026-12-07 left ends in .json (which a dashboards folder
    // would load): still read, so nothing is downloaded, and renamed.
    std::fs::rename(out.path().join(".tool.bin.podinit-http"), out.path().join(".tool.bin.podinit-http.json")).unwrap();
    let run = http_get(&[&u, &format!("{}/", out.path().display()), "--sha256", &sha256(&body)]);
    run.code(0).stderr_has("is current");
    assert_eq!(names(out.path()), [".tool.bin.podinit-http", "tool.bin"], "no *.json left beside the file");
}

#[test]
fn ranges_are_parallel_and_reruns_cost_one_request_or_none() {
    let www = tempfile::tempdir().unwrap();
    let body = data(5 * MIB + 3, 2);
    std::fs::write(www.path().join("m.bin"), &body).unwrap();
    let server = serve(www.path(), &[]);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("m.bin");
    let d = dest.to_str().unwrap();

    http_get(&[&url(&server, "/m.bin"), d, "--part-size", "1MiB"]).code(0).stderr_has("verified: size only");
    assert_eq!(read(&dest), body);
    let ranged = gets(&server, "/m.bin").iter().filter(|r| r.is_some()).count();
    assert_eq!(ranged, 6, "six ranges of 1 MiB: {:?}", gets(&server, "/m.bin"));
    let before = std::fs::metadata(&dest).unwrap();

    // Current by the server's word: one conditional request, answered 304.
    let n = server.requests().len();
    http_get(&[&url(&server, "/m.bin"), d, "--part-size", "1MiB"]).code(0).stderr_has("304 Not Modified");
    let requests = server.requests();
    assert_eq!(requests.len(), n + 1, "one request");
    assert!(header(&requests[n], "If-None-Match").is_some(), "conditional: {}", requests[n]);
    // With a checksum: one request to verify and record it, then none at all.
    http_get(&[&url(&server, "/m.bin"), d, "--sha256", &sha256(&body)]).code(0).stderr_has("verified: SHA-256");
    let n = server.requests().len();
    let before_checked = std::fs::metadata(&dest).unwrap();
    http_get(&[&url(&server, "/m.bin"), d, "--sha256", &sha256(&body)]).code(0).stderr_has("recorded SHA-256 matches");
    assert_eq!(server.requests().len(), n, "no request");
    let after = std::fs::metadata(&dest).unwrap();
    assert_eq!((after.ino(), after.mtime_nsec()), (before_checked.ino(), before_checked.mtime_nsec()), "not rewritten");
    assert_eq!(after.mtime(), before.mtime(), "the mtime is the server's Last-Modified");

    // The file changes on the server: downloaded again.
    let changed = data(5 * MIB + 3, 3);
    std::fs::write(www.path().join("m.bin"), &changed).unwrap();
    http_get(&[&url(&server, "/m.bin"), d, "--part-size", "1MiB"]).code(0);
    assert_eq!(read(&dest), changed);
    // Edited locally: the record no longer vouches for it.
    std::fs::write(&dest, b"edited").unwrap();
    http_get(&[&url(&server, "/m.bin"), d]).code(0);
    assert_eq!(read(&dest), changed);
}

#[test]
fn a_killed_download_resumes_with_if_range() {
    let www = tempfile::tempdir().unwrap();
    let body = data(12 * MIB, 4);
    std::fs::write(www.path().join("big.bin"), &body).unwrap();
    // 8 MiB/s per connection: a few seconds for the whole file.
    let slow = serve(www.path(), &["--throttle", &(2 * MIB).to_string()]);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("big.bin");
    let state = out.path().join(".big.bin.podinit-partial-state");
    let mut child = Podinit::new()
        .args(["--timeout", "60s", "http-get", &url(&slow, "/big.bin"), dest.to_str().unwrap(), "--part-size", "256KiB", "--parallel", "4"])
        .command()
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !state.exists() {
        assert!(Instant::now() < deadline, "no progress was recorded");
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "podinit ended ({status}) before it recorded progress: {}",
                Outcome::from_output(child.wait_with_output().unwrap()).stderr
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!dest.exists(), "a killed download leaves no file at DEST");

    // The same URL, now served at full speed.
    let port = slow.port.to_string();
    drop(slow);
    let fast = serve(www.path(), &["--port", &port]);
    let run = http_get(&[&url(&fast, "/big.bin"), dest.to_str().unwrap(), "--sha256", &sha256(&body)]);
    run.code(0).stderr_has("resuming").stderr_has("resumed from an earlier run").stderr_has("verified: SHA-256");
    assert_eq!(read(&dest), body);
    let ranges: Vec<_> = fast.requests().into_iter().filter(|r| header(r, "Range").is_some()).collect();
    assert!(!ranges.is_empty() && ranges.len() < 48, "only the missing ranges of 48: {}", ranges.len());
    assert!(ranges.iter().all(|r| header(r, "If-Range").is_some()), "every range carries If-Range");
    assert_eq!(names(out.path()), [".big.bin.podinit-http", "big.bin"], "no partial state is left");
}

#[test]
fn a_file_replaced_between_runs_is_not_resumed_into_a_mix() {
    let www = tempfile::tempdir().unwrap();
    let old = data(4 * MIB, 5);
    std::fs::write(www.path().join("f.bin"), &old).unwrap();
    let slow = serve(www.path(), &["--throttle", &MIB.to_string()]);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("f.bin");
    let state = out.path().join(".f.bin.podinit-partial-state");
    let mut child = Podinit::new()
        .args(["--timeout", "60s", "http-get", &url(&slow, "/f.bin"), dest.to_str().unwrap(), "--part-size", "128KiB", "--parallel", "2"])
        .command()
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !state.exists() {
        assert!(Instant::now() < deadline, "no progress was recorded");
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "podinit ended ({status}) before it recorded progress: {}",
                Outcome::from_output(child.wait_with_output().unwrap()).stderr
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let new = data(4 * MIB, 6);
    std::fs::write(www.path().join("f.bin"), &new).unwrap();
    let port = slow.port.to_string();
    drop(slow);
    let fast = serve(www.path(), &["--port", &port]);
    let run = http_get(&[&url(&fast, "/f.bin"), dest.to_str().unwrap(), "--sha256", &sha256(&new)]);
    run.code(0).stderr_has("verified: SHA-256");
    assert!(!run.stderr.contains("resuming"), "another version is not resumed:\n{}", run.stderr);
    assert_eq!(read(&dest), new);

    // Replaced during a download (after the first GET and one range): If-Range gets the whole
    // new file instead of a range of it, and the download starts over.
    std::fs::write(www.path().join("v1.bin"), &old).unwrap();
    std::fs::write(www.path().join("v2.bin"), &new).unwrap();
    let swapping = serve(www.path(), &["--swap", "2:v2.bin"]);
    let dest = out.path().join("v.bin");
    let run = http_get(&[
        &url(&swapping, "/v1.bin"),
        dest.to_str().unwrap(),
        "--part-size",
        "512KiB",
        "--parallel",
        "1",
        "--sha256",
        &sha256(&new),
    ]);
    run.code(0).stderr_has("changed on the server during the download; starting over");
    assert_eq!(read(&dest), new);
}

#[test]
fn cut_connections_are_retried_with_and_without_ranges() {
    let www = tempfile::tempdir().unwrap();
    let body = data(2 * MIB + 7, 7);
    std::fs::write(www.path().join("c.bin"), &body).unwrap();
    let out = tempfile::tempdir().unwrap();

    let plain = serve(www.path(), &["--no-ranges", "--cut-after", "100000", "--cut-times", "2"]);
    let dest = out.path().join("plain.bin");
    http_get(&[&url(&plain, "/c.bin"), dest.to_str().unwrap(), "--sha256", &sha256(&body)]).code(0);
    assert_eq!(read(&dest), body);
    assert_eq!(gets(&plain, "/c.bin").len(), 3, "two cut bodies, then a whole one");

    let ranged = serve(www.path(), &["--cut-after", "1000", "--cut-times", "3"]);
    let dest = out.path().join("ranged.bin");
    http_get(&[&url(&ranged, "/c.bin"), dest.to_str().unwrap(), "--part-size", "512KiB", "--sha256", &sha256(&body)]).code(0);
    assert_eq!(read(&dest), body);
}

#[test]
fn statuses_404_is_fatal_503_and_429_are_retried_after_what_the_server_asks() {
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("x.bin"), b"hello").unwrap();
    let out = tempfile::tempdir().unwrap();
    let server = serve(www.path(), &[]);
    let started = Instant::now();
    let run = http_get(&[&url(&server, "/missing.bin"), out.path().join("m").to_str().unwrap()]);
    run.code(1).stderr_has("404").stderr_has("hint: check the URL");
    assert_eq!(gets(&server, "/missing.bin").len(), 1, "a 404 is not retried");
    assert!(started.elapsed() < Duration::from_secs(5));

    let busy = serve(www.path(), &["--fail", "2:503:1"]);
    let started = Instant::now();
    http_get(&[&url(&busy, "/x.bin"), out.path().join("x").to_str().unwrap()]).code(0);
    assert_eq!(read(out.path().join("x")), b"hello");
    assert_eq!(gets(&busy, "/x.bin").len(), 3);
    assert!(started.elapsed() >= Duration::from_secs(2), "Retry-After: 1, twice");

    let limited = serve(www.path(), &["--fail", "1:429"]);
    http_get(&[&url(&limited, "/x.bin"), out.path().join("y").to_str().unwrap()]).code(0);
    let forbidden = serve(www.path(), &["--fail", "5:403"]);
    http_get(&[&url(&forbidden, "/x.bin"), out.path().join("z").to_str().unwrap()]).code(1).stderr_has("403");
    assert_eq!(gets(&forbidden, "/x.bin").len(), 1);
    assert!(!out.path().join("z").exists());

    // Nothing answers: retried until --timeout, then 124.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let run = Podinit::new().args(["--timeout", "2s", "http-get", &format!("http://127.0.0.1:{port}/x"), "/tmp/podinit-never"]).run();
    run.code(124);
}

#[test]
fn tls_with_a_private_ca_and_no_downgrade_on_redirects() {
    let pki = Pki::new("IP:127.0.0.1,DNS:localhost");
    let www = tempfile::tempdir().unwrap();
    let body = data(MIB + 1, 8);
    std::fs::write(www.path().join("t.bin"), &body).unwrap();
    let plain = serve(www.path(), &[]);
    let downgrade = format!("/down.bin=redirect:302:{}", url(&plain, "/t.bin"));
    let tls = serve(www.path(), &["--tls", pki.cert().to_str().unwrap(), pki.key().to_str().unwrap(), "--route", &downgrade]);
    let https = |path: &str| format!("https://127.0.0.1:{}{path}", tls.port);
    let out = tempfile::tempdir().unwrap();
    let ca = pki.ca();

    let run = http_get(&[&https("/t.bin"), out.path().join("a").to_str().unwrap()]);
    run.code(1).stderr_has("not trusted").stderr_has("--ca-file");
    http_get(&[&https("/t.bin"), out.path().join("a").to_str().unwrap(), "--ca-file", ca.to_str().unwrap(), "--part-size", "256KiB"])
        .code(0);
    assert_eq!(read(out.path().join("a")), body);

    let run = http_get(&[&https("/down.bin"), out.path().join("b").to_str().unwrap(), "--ca-file", ca.to_str().unwrap()]);
    run.code(1).stderr_has("refusing a redirect from https to http");
    assert!(plain.requests().is_empty(), "nothing was sent over http");
    assert!(!out.path().join("b").exists());
}

#[test]
fn credentials_go_to_the_named_origin_only_and_never_into_logs() {
    let www = tempfile::tempdir().unwrap();
    let body = data(300_000, 9);
    std::fs::write(www.path().join("p.bin"), &body).unwrap();
    let cdn = serve(www.path(), &[]);
    let to_cdn = format!("/p.bin=redirect:302:{}", url(&cdn, "/p.bin"));
    let origin = Server::python(&["--route", &to_cdn]);
    let secrets = tempfile::tempdir().unwrap();
    let token = secrets.path().join("token");
    std::fs::write(&token, "tok-s3cr3t-123\n").unwrap();
    let headers = secrets.path().join("headers");
    std::fs::write(&headers, "# GitLab\nPRIVATE-TOKEN: hdr-s3cr3t-456\n").unwrap();
    let out = tempfile::tempdir().unwrap();

    let run = Podinit::new()
        .args(["--timeout", "30s", "--log-level", "debug", "http-get", &url(&origin, "/p.bin")])
        .arg(out.path().join("p.bin"))
        .args(["--bearer-token-file", token.to_str().unwrap(), "--header-file", headers.to_str().unwrap()])
        .run();
    run.code(0);
    assert_eq!(read(out.path().join("p.bin")), body);
    assert!(origin.saw_header_value("Bearer tok-s3cr3t-123") && origin.saw_header_value("hdr-s3cr3t-456"), "the named origin gets them");
    assert!(!cdn.requests().is_empty());
    assert!(!cdn.saw_header_value("tok-s3cr3t") && !cdn.saw_header_value("hdr-s3cr3t"), "another host never does");
    assert!(!run.stderr.contains("s3cr3t"), "no secret in the log:\n{}", run.stderr);

    // A refusal names the header, never the value.
    std::fs::write(&headers, "PRIVATE-TOKEN: bad\u{7f}s3cr3t\n").unwrap();
    let run = http_get(&[&url(&origin, "/p.bin"), out.path().join("q").to_str().unwrap(), "--header-file", headers.to_str().unwrap()]);
    run.code(2);
    assert!(!run.stderr.contains("s3cr3t"), "{}", run.stderr);
}

#[test]
fn a_checksum_url_picks_the_line_for_the_file() {
    let www = tempfile::tempdir().unwrap();
    let amd = data(200_000, 10);
    let arm = data(200_000, 11);
    std::fs::write(www.path().join("tool-linux-amd64.tar.gz"), &amd).unwrap();
    std::fs::write(www.path().join("tool-linux-arm64.tar.gz"), &arm).unwrap();
    std::fs::write(
        www.path().join("SHA256SUMS"),
        format!("{}  tool-linux-arm64.tar.gz\n{}  tool-linux-amd64.tar.gz\n", sha256(&arm), sha256(&amd)),
    )
    .unwrap();
    std::fs::write(www.path().join("BADSUMS"), format!("{}  tool-linux-amd64.tar.gz\n", sha256(&arm))).unwrap();
    let server = serve(www.path(), &[]);
    let out = tempfile::tempdir().unwrap();
    let d = format!("{}/", out.path().display());

    let run = http_get(&[&url(&server, "/tool-linux-amd64.tar.gz"), &d, "--checksum-url", &url(&server, "/SHA256SUMS")]);
    run.code(0).stderr_has("verified: SHA-256");
    assert_eq!(read(out.path().join("tool-linux-amd64.tar.gz")), amd);
    // A rerun reads the checksum file (one request) and finds the recorded digest: no GET of the file.
    let n = gets(&server, "/tool-linux-amd64.tar.gz").len();
    http_get(&[&url(&server, "/tool-linux-amd64.tar.gz"), &d, "--checksum-url", &url(&server, "/SHA256SUMS")]).code(0);
    assert_eq!(gets(&server, "/tool-linux-amd64.tar.gz").len(), n);

    let run = http_get(&[&url(&server, "/tool-linux-arm64.tar.gz"), &d, "--checksum-url", &url(&server, "/BADSUMS")]);
    run.code(2).stderr_has("no line for 'tool-linux-arm64.tar.gz'");
    let bad = out.path().join("x.tar.gz");
    let run = http_get(&[&url(&server, "/tool-linux-amd64.tar.gz"), bad.to_str().unwrap(), "--checksum-url", &url(&server, "/BADSUMS")]);
    run.code(1).stderr_has("SHA-256 mismatch");
    assert!(!bad.exists());
}

/// A zip made by python's zipfile: `entries` are (name, content), written as they are named.
fn zip(path: &Path, entries: &[(&str, &str)]) {
    let script = "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED)\nfor i in range(2, len(sys.argv), 2):\n    z.writestr(sys.argv[i], sys.argv[i + 1])\nz.close()\n";
    let mut cmd = Command::new("python3");
    cmd.args(["-c", script]).arg(path);
    for (name, content) in entries {
        cmd.args([name, content]);
    }
    assert!(cmd.status().unwrap().success());
}

#[test]
fn archives_are_extracted_as_a_set_and_escaping_zip_entries_refused() {
    let www = tempfile::tempdir().unwrap();
    let mut tgz = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    let mut header = tar::Header::new_gnu();
    header.set_size(5);
    header.set_mode(0o4755);
    tgz.append_data(&mut header, "bin/plugin", &b"hello"[..]).unwrap();
    std::fs::write(www.path().join("plugin.tar.gz"), tgz.into_inner().unwrap().finish().unwrap()).unwrap();
    zip(&www.path().join("model.zip"), &[("model/config.json", "{}"), ("model/weights.bin", "w")]);
    zip(&www.path().join("up.zip"), &[("ok.txt", "ok"), ("../escaped.txt", "x")]);
    zip(&www.path().join("abs.zip"), &[("/tmp/podinit-abs-escape.txt", "x")]);
    let xz = "import sys, tarfile, io\nt = tarfile.open(sys.argv[1], 'w:xz')\ni = tarfile.TarInfo('bin/tool')\ni.size = 2\nt.addfile(i, io.BytesIO(b'xz'))\nt.close()\n";
    assert!(Command::new("python3").args(["-c", xz]).arg(www.path().join("tool.tar.xz")).status().unwrap().success());
    let bz2 = xz.replace("w:xz", "w:bz2").replace("b'xz'", "b'bz'");
    assert!(Command::new("python3").args(["-c", &bz2]).arg(www.path().join("tool.tar.bz2")).status().unwrap().success());
    let server = serve(www.path(), &[]);
    let out = tempfile::tempdir().unwrap();

    let plugins = out.path().join("plugins");
    http_get(&[&url(&server, "/plugin.tar.gz"), plugins.to_str().unwrap(), "--extract"]).code(0).stderr_has("1 entries");
    assert_eq!(read(plugins.join("bin/plugin")), b"hello");
    assert_eq!(std::fs::metadata(plugins.join("bin/plugin")).unwrap().mode() & 0o7777, 0o755, "setuid stripped");
    let n = server.requests().len();
    http_get(&[&url(&server, "/plugin.tar.gz"), plugins.to_str().unwrap(), "--extract"]).code(0).stderr_has("304");
    assert_eq!(server.requests().len(), n + 1, "a current extraction costs one request");

    let model = out.path().join("model");
    http_get(&[&url(&server, "/model.zip"), model.to_str().unwrap(), "--extract"]).code(0);
    assert_eq!(read(model.join("model/config.json")), b"{}");
    assert_eq!(read(model.join("model/weights.bin")), b"w");

    let tool = out.path().join("tool");
    http_get(&[&url(&server, "/tool.tar.xz"), tool.to_str().unwrap(), "--extract"]).code(0);
    assert_eq!(read(tool.join("bin/tool")), b"xz");
    http_get(&[&url(&server, "/tool.tar.bz2"), tool.to_str().unwrap(), "--extract"]).code(0);
    assert_eq!(read(tool.join("bin/tool")), b"bz");

    let up = out.path().join("up");
    http_get(&[&url(&server, "/up.zip"), up.to_str().unwrap(), "--extract"]).code(1).stderr_has("refused");
    assert!(!out.path().join("escaped.txt").exists() && !up.join("ok.txt").exists(), "nothing extracted");
    let abs = out.path().join("abs");
    http_get(&[&url(&server, "/abs.zip"), abs.to_str().unwrap(), "--extract"]).code(1).stderr_has("refused");
    assert!(!Path::new("/tmp/podinit-abs-escape.txt").exists());
}

#[test]
fn decompress_a_single_file_verified_by_its_compressed_checksum() {
    // A dashboard as Grafana charts fetch it, compressed by the real tools (bzip2 by Python's
    // bz2 module, libbzip2).
    let www = tempfile::tempdir().unwrap();
    let dashboard: Vec<u8> =
        format!("{{\"title\": \"home\", \"panels\": [{}]}}\n", "{\"type\": \"graph\"},".repeat(20_000).trim_end_matches(',')).into_bytes();
    std::fs::write(www.path().join("home.json"), &dashboard).unwrap();
    for (tool, args) in [("gzip", &["-k", "-9"][..]), ("xz", &["-k"][..]), ("zstd", &["-q", "-k"][..])] {
        crate::support::cmd::tool(tool, &[args, &[www.path().join("home.json").to_str().unwrap()]].concat()).code(0);
    }
    let bz2 = "import bz2, sys\nopen(sys.argv[1] + '.bz2', 'wb').write(bz2.compress(open(sys.argv[1], 'rb').read()))";
    assert!(Command::new("python3").args(["-c", bz2]).arg(www.path().join("home.json")).status().unwrap().success());
    std::fs::write(www.path().join("broken.json.bz2"), b"BZh91AY&SYnot really bzip2").unwrap();
    // 256 MiB of zeros: a bomb of a few hundred KiB.
    let bomb = Command::new("sh")
        .arg("-c")
        .arg(format!("head -c 268435456 /dev/zero | gzip -9 > {}/bomb.json.gz", www.path().display()))
        .status()
        .unwrap();
    assert!(bomb.success());
    let server = PlainServer::start(www.path());
    let out = tempfile::tempdir().unwrap();
    let dest = format!("{}/", out.path().display());
    for ext in ["gz", "xz", "zst", "bz2"] {
        let compressed = std::fs::read(www.path().join(format!("home.json.{ext}"))).unwrap();
        let u = format!("http://127.0.0.1:{}/home.json.{ext}", server.port);
        http_get(&[&u, &dest, "--decompress", "--sha256", &sha256(&compressed)]).code(0).stderr_has("verified: SHA-256");
        assert_eq!(read(out.path().join("home.json")), dashboard, ".{ext}");
        // The record has no .json ending (the dashboards folder loads every *.json); no
        // compressed copy is left.
        assert_eq!(names(out.path()), [".home.json.podinit-http", "home.json"], ".{ext}");
        http_get(&[&u, &dest, "--decompress", "--sha256", &sha256(&compressed)]).code(0).stderr_has("is current");
        std::fs::remove_file(out.path().join("home.json")).unwrap();
    }
    // The checksum is the compressed file's: the plain file's digest does not match.
    let u = format!("http://127.0.0.1:{}/home.json.gz", server.port);
    http_get(&[&u, &dest, "--decompress", "--sha256", &sha256(&dashboard)]).code(1).stderr_has("SHA-256 mismatch");
    assert!(!out.path().join("home.json").exists());
    // A bomb stops at the budget, nothing at DEST, nothing left beside it.
    let u = format!("http://127.0.0.1:{}/bomb.json.gz", server.port);
    http_get(&[&u, &dest, "--decompress", "--extract-max-size", "16MiB"]).code(1).stderr_has("decompresses to more than 16777216 bytes");
    assert!(!out.path().join("bomb.json").exists());
    assert_eq!(names(out.path()), [".home.json.podinit-http"], "no temp or compressed file left");
    // A corrupt file: an error, nothing at DEST.
    let u = format!("http://127.0.0.1:{}/broken.json.bz2", server.port);
    http_get(&[&u, &dest, "--decompress"]).code(1).stderr_has("decompressing");
    assert!(!out.path().join("broken.json").exists());
    assert_eq!(names(out.path()), [".home.json.podinit-http"], "no temp or compressed file left");
}

/// A forward proxy (support/proxy.py) on a free port, with the requests it saw.
struct ForwardProxy {
    child: std::process::Child,
    port: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl ForwardProxy {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("proxy.jsonl");
        let mut child = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/proxy.py"))
            .arg("--log")
            .arg(&log)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        Self { child, port: line.trim().parse().unwrap(), log, _dir: dir }
    }

    fn seen(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

impl Drop for ForwardProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn proxies_from_the_environment_and_credentials_only_through_the_tunnel() {
    let pki = Pki::new("IP:127.0.0.1,DNS:localhost");
    let www = tempfile::tempdir().unwrap();
    let body = data(200_000, 11);
    std::fs::write(www.path().join("p.bin"), &body).unwrap();
    let plain = serve(www.path(), &[]);
    let tls = serve(www.path(), &["--tls", pki.cert().to_str().unwrap(), pki.key().to_str().unwrap()]);
    let proxy = ForwardProxy::start();
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("token"), "pr0xy-t0ken\n").unwrap();
    let out = tempfile::tempdir().unwrap();
    let get = |url: &str, dest: &str, env: &[(&str, &str)]| {
        let mut cmd = Podinit::new().args(["--timeout", "30s", "http-get", url, out.path().join(dest).to_str().unwrap()]);
        cmd = cmd.args(["--ca-file", pki.ca().to_str().unwrap(), "--bearer-token-file", secrets.path().join("token").to_str().unwrap()]);
        for (k, v) in env {
            cmd = cmd.env(k, *v);
        }
        cmd.run()
    };
    // https through HTTPS_PROXY: a CONNECT tunnel; the token reaches the origin, never the proxy.
    get(&format!("https://127.0.0.1:{}/p.bin", tls.port), "a.bin", &[("HTTPS_PROXY", &proxy_url)]).code(0);
    assert_eq!(read(out.path().join("a.bin")), body);
    let seen = proxy.seen();
    assert!(seen.iter().any(|r| r["method"] == "CONNECT" && r["target"] == format!("127.0.0.1:{}", tls.port)), "{seen:?}");
    assert!(!serde_json::to_string(&seen).unwrap().contains("pr0xy-t0ken"), "the proxy saw the token: {seen:?}");
    assert!(tls.saw_header_value("Bearer pr0xy-t0ken"), "the origin got the token through the tunnel");
    // http through http_proxy (lower case, as curl reads it): the proxy forwards the request.
    get(&format!("http://127.0.0.1:{}/p.bin", plain.port), "b.bin", &[("http_proxy", &proxy_url)]).code(0);
    assert!(proxy.seen().iter().any(|r| r["method"] == "GET" && r["target"] == format!("http://127.0.0.1:{}/p.bin", plain.port)));
    // NO_PROXY: straight to the origin.
    let before = proxy.seen().len();
    get(&format!("http://127.0.0.1:{}/p.bin", plain.port), "c.bin", &[("HTTP_PROXY", &proxy_url), ("NO_PROXY", "127.0.0.1")]).code(0);
    assert_eq!(proxy.seen().len(), before, "NO_PROXY bypassed the proxy");
    assert_eq!(read(out.path().join("c.bin")), body);
}
