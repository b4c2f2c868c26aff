//! `podinit git-clone` against real git servers: Debian git's `git http-backend` behind
//! webserver.py (smart HTTP over TLS, basic and bearer authentication) and `git daemon`, with
//! repositories the tests make with git. Trees are compared with what `git clone` checks out.

use std::path::Path;
use std::time::Duration;

use crate::support::cmd::s;
use crate::support::git::{Daemon, Repo, git, git_checkout, listing};
use crate::support::web::{Pki, Server};
use crate::support::{Outcome, Podinit};

fn clone(args: &[&str]) -> Outcome {
    Podinit::new().arg("git-clone").args(args).run_within(Duration::from_secs(120))
}

/// The commit DEST's link names, and the listing of its tree.
fn published(dest: &Path, link: &str) -> (String, Vec<String>) {
    let target = std::fs::read_link(dest.join(link)).unwrap_or_else(|e| panic!("{}/{link}: {e}", dest.display()));
    let target = target.to_str().unwrap().to_owned();
    let commit = target.strip_prefix(".worktrees/").unwrap_or_else(|| panic!("link target {target}")).to_owned();
    (commit, listing(&dest.join(link)))
}

/// The names in DEST/.worktrees (exactly one tree after a run).
fn worktrees(dest: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dest.join(".worktrees")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

/// A repository with what trees hold: nested directories, an executable, a relative link, an
/// empty file, a file with spaces and UTF-8 in its name, a `.gitattributes` line-ending rule;
/// a branch and an annotated tag.
fn sample(root: &Path) -> (Repo, String) {
    let repo = Repo::new(root, "app");
    repo.commit(&[("README.md", "v0\n")], "first");
    let main = repo.commit(
        &[
            ("README.md", "hello\n"),
            ("dags/etl.py", "print('etl')\n"),
            ("dags/lib/util.py", "X = 1\n"),
            ("bin/run.sh", "#!/bin/sh\necho run\n"),
            ("docs/ä b.txt", "unicode\n"),
            ("empty", ""),
            ("current", "->dags/etl.py"),
            // Line endings as .gitattributes asks: git writes CRLF for these.
            (".gitattributes", "*.bat text eol=crlf\n"),
            ("bin/run.bat", "echo one\necho two\n"),
        ],
        "second",
    );
    std::os::unix::fs::PermissionsExt::set_mode(&mut std::fs::metadata(repo.work.join("bin/run.sh")).unwrap().permissions(), 0o755);
    git(&repo.work, &["update-index", "--chmod=+x", "bin/run.sh"]);
    git(&repo.work, &["commit", "-q", "-m", "exec"]);
    git(&repo.work, &["push", "-q", "origin", "HEAD:main"]);
    git(&repo.work, &["tag", "-a", "v1.0", "-m", "release"]);
    git(&repo.work, &["checkout", "-q", "-b", "release/1.x"]);
    repo.commit(&[("RELEASE", "1.x\n")], "release branch");
    git(&repo.work, &["push", "-q", "origin", "v1.0"]);
    git(&repo.work, &["checkout", "-q", "main"]);
    let _ = main;
    let head = git(&repo.bare, &["rev-parse", "main"]);
    (repo, head)
}

#[test]
fn smart_http_with_basic_auth_checks_out_what_git_does_and_reruns_change_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (repo, main) = sample(root.path());
    let pki = Pki::new("IP:127.0.0.1");
    let server = Server::python(&["--git", s(root.path()), "--auth", "reader:s3cret-token", "--tls", s(&pki.cert()), s(&pki.key())]);
    let url = format!("https://127.0.0.1:{}/git/app.git", server.port);
    let secrets = tempfile::tempdir().unwrap();
    let password = secrets.path().join("token");
    std::fs::write(&password, "s3cret-token\n").unwrap();
    let dest = tempfile::tempdir().unwrap();
    let dest = dest.path().join("git");
    let ca = pki.ca();
    let auth = ["--username", "reader", "--password-file", s(&password), "--ca-file", s(&ca)];
    let run = |extra: &[&str]| clone(&[&[url.as_str(), s(&dest)][..], &auth[..], extra].concat());

    // git's own checkout of the same commit, over git daemon (no credentials needed there).
    let daemon = Daemon::start(root.path());
    let first = run(&[]);
    first.code(0);
    assert!(!first.stderr.contains("s3cret"), "{}", first.stderr);
    let (commit, tree) = published(&dest, "app");
    assert_eq!(commit, main);
    assert_eq!(tree, git_checkout(&daemon.url("app"), None));
    assert!(tree.contains(&"bin/run.sh (x): #!/bin/sh\necho run\n".to_owned()), "{tree:#?}");
    assert!(tree.contains(&"current -> dags/etl.py".to_owned()), "{tree:#?}");
    assert!(tree.contains(&"bin/run.bat: echo one\r\necho two\r\n".to_owned()), "{tree:#?}");
    // Shallow: one commit in DEST/.git.
    assert_eq!(git(&dest.join(".git"), &["rev-list", "--count", &main]), "1");

    // A rerun: nothing written, the link untouched, two requests (protocol v2: the
    // capabilities, then ls-refs filtered to the ref; credentials sent with the first).
    let link_before = std::fs::symlink_metadata(dest.join("app")).unwrap();
    let requests_before = server.requests().len();
    run(&[]).code(0).stderr_has("already");
    let link_after = std::fs::symlink_metadata(dest.join("app")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::ino(&link_before), std::os::unix::fs::MetadataExt::ino(&link_after));
    let rerun: Vec<String> = server.requests()[requests_before..].iter().map(|r| r["method"].as_str().unwrap().to_owned()).collect();
    assert_eq!(rerun, ["GET", "POST"], "the rerun's requests");

    // A branch, an annotated tag (peeled to its commit) and a commit id, each as git has them.
    for r in ["release/1.x", "v1.0"] {
        run(&["--ref", r]).code(0);
        assert_eq!(published(&dest, "app").1, git_checkout(&daemon.url("app"), Some(r)), "--ref {r}");
        assert_eq!(worktrees(&dest).len(), 1, "{:?}", worktrees(&dest));
        run(&["--ref", r]).code(0).stderr_has("already");
    }
    let tagged = git(&repo.bare, &["rev-parse", "v1.0^{commit}"]);
    assert_eq!(published(&dest, "app").0, tagged);
    let requests_before = server.requests().len();
    run(&["--ref", &tagged]).code(0).stderr_has("no request made");
    assert_eq!(server.requests().len(), requests_before, "a commit id the link already names costs no request");

    // A commit pushed between runs is fetched and swapped in; the old tree goes.
    let pushed = repo.commit(&[("dags/new.py", "print('new')\n")], "third");
    run(&[]).code(0);
    let (commit, tree) = published(&dest, "app");
    assert_eq!(commit, pushed);
    assert_eq!(tree, git_checkout(&daemon.url("app"), None));
    assert_eq!(worktrees(&dest), std::slice::from_ref(&pushed));

    // Wrong and missing credentials: exit 2, the published tree untouched.
    let wrong = secrets.path().join("wrong");
    std::fs::write(&wrong, "nope").unwrap();
    let out = clone(&[&url, s(&dest), "--username", "reader", "--password-file", s(&wrong), "--ca-file", s(&pki.ca()), "--ref", "v1.0"]);
    out.code(2).stderr_has("authentication required").stderr_has("hint: the server refused the credentials");
    clone(&[&url, s(&dest), "--ca-file", s(&pki.ca())]).code(2).stderr_has("hint: the repository needs credentials");
    assert_eq!(published(&dest, "app").0, pushed);
    // Without the CA: the certificate is refused at once, not retried.
    let out = clone(&[&url, s(&dest), "--username", "reader", "--password-file", s(&password), "--ref", "v1.0"]);
    out.code(2).stderr_has("certificate").stderr_has("--ca-file");
    assert!(!out.stderr.contains("s3cret") && !out.stderr.contains("nope"), "{}", out.stderr);
    // The credentials went to the origin (base64, as basic auth sends them).
    use base64::Engine as _;
    assert!(server.saw_header_value(&base64::engine::general_purpose::STANDARD.encode("reader:s3cret-token")));
    // A repository the server does not have: exit 2 at once (404), not retried.
    let missing = format!("https://127.0.0.1:{}/git/missing.git", server.port);
    let out = clone(&[
        &missing,
        s(&dest),
        "--link",
        "other",
        "--username",
        "reader",
        "--password-file",
        s(&password),
        "--ca-file",
        s(&pki.ca()),
        "--timeout",
        "60s",
    ]);
    out.code(2);
    assert!(!out.stderr.contains("retrying"), "{}", out.stderr);
}

#[test]
fn a_bearer_token_file_and_credentials_never_leave_the_origin() {
    let root = tempfile::tempdir().unwrap();
    let (_repo, main) = sample(root.path());
    let pki = Pki::new("IP:127.0.0.1");
    let origin = Server::python(&["--git", s(root.path()), "--auth", "bearer:tok-123", "--tls", s(&pki.cert()), s(&pki.key())]);
    let secrets = tempfile::tempdir().unwrap();
    let token = secrets.path().join("token");
    std::fs::write(&token, "tok-123\n").unwrap();
    let dest = tempfile::tempdir().unwrap();
    let url = format!("https://127.0.0.1:{}/git/app.git", origin.port);
    clone(&[&url, s(dest.path()), "--bearer-token-file", s(&token), "--ca-file", s(&pki.ca()), "--link", "repo"]).code(0);
    assert_eq!(published(dest.path(), "repo").0, main);
    assert!(origin.saw_header_value("Bearer tok-123"));

    // REPO's server redirects to another origin (another port) which asks for credentials:
    // podinit gives it none, so the token never reaches it.
    let other = Server::python(&["--git", s(root.path()), "--auth", "bearer:tok-123", "--tls", s(&pki.cert()), s(&pki.key())]);
    let redirector = Server::python(&[
        "--route",
        &format!("/git/=redirect:302:https://127.0.0.1:{}*", other.port),
        "--tls",
        s(&pki.cert()),
        s(&pki.key()),
    ]);
    let moved = format!("https://127.0.0.1:{}/git/app.git", redirector.port);
    let dest = tempfile::tempdir().unwrap();
    let out = clone(&[&moved, s(dest.path()), "--bearer-token-file", s(&token), "--ca-file", s(&pki.ca())]);
    out.code(2).stderr_has("authentication required");
    assert!(!other.requests().is_empty(), "the redirect was followed");
    assert!(!other.saw_header_value("tok-123"), "the token went to another origin");
    assert!(!out.stderr.contains("tok-123"));
    assert!(std::fs::symlink_metadata(dest.path().join("app")).is_err(), "nothing published");

    // A submodule on another origin gets no credentials either: its server asks, podinit
    // gives nothing, the clone fails (exit 2) and the token stayed with REPO's origin.
    let lib = Repo::new(root.path(), "lib");
    lib.commit(&[("lib.txt", "lib\n")], "lib");
    let with_sub = Repo::new(root.path(), "withsub");
    with_sub.commit(&[("top.txt", "top\n")], "top");
    let daemon = Daemon::start(root.path());
    git(&with_sub.work, &["submodule", "-q", "add", &daemon.url("lib"), "lib"]);
    git(&with_sub.work, &["config", "-f", ".gitmodules", "submodule.lib.url", &format!("https://127.0.0.1:{}/git/lib.git", other.port)]);
    with_sub.commit(&[], "lib elsewhere");
    let before = other.requests().len();
    let dest = tempfile::tempdir().unwrap();
    let sub_url = format!("https://127.0.0.1:{}/git/withsub.git", origin.port);
    let out = clone(&[&sub_url, s(dest.path()), "--submodules", "--bearer-token-file", s(&token), "--ca-file", s(&pki.ca())]);
    out.code(2).stderr_has("submodule lib").stderr_has("authentication required");
    assert!(other.requests().len() > before, "the submodule's server was asked");
    assert!(!other.saw_header_value("tok-123"), "the token went to the submodule's origin");
    assert!(std::fs::symlink_metadata(dest.path().join("withsub")).is_err(), "nothing published");

    // Credentials are not sent over plain http, nor taken from the URL.
    let plain = format!("http://127.0.0.1:{}/git/app.git", origin.port);
    clone(&[&plain, s(dest.path()), "--bearer-token-file", s(&token)]).code(2).stderr_has("only sent over https");
    let out = clone(&["https://reader:pa55word@127.0.0.1:1/git/app.git", s(dest.path())]);
    out.code(2).stderr_has("--password-file");
    assert!(!out.stderr.contains("pa55word"), "{}", out.stderr);
    clone(&["git@github.com:org/repo.git", s(dest.path())]).code(2).stderr_has("ssh is not built in");
    clone(&["ssh://git@example.com/org/repo.git", s(dest.path())]).code(2).stderr_has("ssh is not built into podinit");
}

#[test]
fn git_daemon_depth_sparse_submodules_and_a_big_tree() {
    let root = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(root.path());
    // 300 commits of history, the last with 10,000 files, written with fast-import.
    let big = Repo::new(root.path(), "big");
    let mut stream = String::new();
    for i in 1..=300 {
        let message = format!("c{i}\n");
        stream.push_str(&format!(
            "commit refs/heads/main\ncommitter t <t@t> {} +0000\ndata {}\n{message}",
            1_700_000_000 + i,
            message.len()
        ));
        if i == 300 {
            for f in 0..10_000 {
                let body = format!("file {f}\n");
                stream.push_str(&format!("M 100644 inline dir{:02}/f{f:05}.txt\ndata {}\n{body}", f % 50, body.len()));
            }
        }
        stream.push_str(&format!("M 100644 inline history.txt\ndata {}\n{i}\n\n", format!("{i}\n").len()));
    }
    let mut child =
        crate::support::git::git_cmd(&big.bare).args(["fast-import", "--quiet"]).stdin(std::process::Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), stream.as_bytes()).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    let head = git(&big.bare, &["rev-parse", "main"]);

    let dest = tempfile::tempdir().unwrap();
    clone(&[&daemon.url("big"), s(dest.path())]).code(0);
    let (commit, tree) = published(dest.path(), "big");
    assert_eq!(commit, head);
    assert_eq!(tree.iter().filter(|l| l.starts_with("dir") && l.contains(".txt: file ")).count(), 10_000);
    assert_eq!(tree, git_checkout(&daemon.url("big"), None));
    assert_eq!(git(&dest.path().join(".git"), &["rev-list", "--count", &head]), "1");

    // All history with --depth 0; the tree is the same.
    let full = tempfile::tempdir().unwrap();
    clone(&[&daemon.url("big"), s(full.path()), "--depth", "0"]).code(0);
    assert_eq!(git(&full.path().join(".git"), &["rev-list", "--count", &head]), "300");
    assert_eq!(published(full.path(), "big").1, tree);

    // --sparse: only those paths; changing it checks the same commit out again.
    clone(&[&daemon.url("big"), s(dest.path()), "--sparse", "dir07,history.txt"]).code(0);
    let sparse = published(dest.path(), "big").1;
    assert_eq!(sparse.len(), 1 + 200 + 1, "{:?}", &sparse[..3]);
    assert!(sparse.iter().all(|l| l.starts_with("dir07") || l.starts_with("history.txt")));
    assert_eq!(worktrees(dest.path()), std::slice::from_ref(&head));

    // The budget: more files than --max-files is refused before anything is written.
    let small = tempfile::tempdir().unwrap();
    clone(&[&daemon.url("big"), s(small.path()), "--max-files", "500"]).code(1).stderr_has("--max-files 500");
    assert!(std::fs::symlink_metadata(small.path().join("big")).is_err());
    assert!(worktrees(small.path()).is_empty(), "{:?}", worktrees(small.path()));

    // Submodules: relative URLs, nested, at the commits the tree records.
    let lib = Repo::new(root.path(), "lib");
    let lib_commit = lib.commit(&[("lib.txt", "lib v1\n")], "lib");
    lib.commit(&[("lib.txt", "lib v2 (not recorded)\n")], "lib later");
    let inner = Repo::new(root.path(), "inner");
    inner.commit(&[("inner.txt", "inner\n")], "inner");
    git(&inner.work, &["submodule", "-q", "add", &daemon.url("lib"), "deps/lib"]);
    git(&inner.work.join("deps/lib"), &["checkout", "-q", &lib_commit]);
    git(&inner.work, &["add", "-A"]);
    inner.commit(&[], "with lib");
    let app = Repo::new(root.path(), "super");
    app.commit(&[("top.txt", "top\n")], "top");
    git(&app.work, &["submodule", "-q", "add", "../inner.git", "vendor/inner"]);
    app.commit(&[], "with inner");
    let dest = tempfile::tempdir().unwrap();
    clone(&[&daemon.url("super"), s(dest.path()), "--submodules"]).code(0);
    let tree = published(dest.path(), "super").1;
    assert!(tree.contains(&"vendor/inner/deps/lib/lib.txt: lib v1\n".to_owned()), "{tree:#?}");
    assert_eq!(tree, git_checkout(&daemon.url("super"), None));
    // Without --submodules the submodule paths stay empty (as git clone without --recurse).
    let plain = tempfile::tempdir().unwrap();
    clone(&[&daemon.url("super"), s(plain.path())]).code(0);
    assert!(!published(plain.path(), "super").1.iter().any(|l| l.contains("inner.txt")));
}

/// Writes a tree object from raw entries (mode, name, object id) with `git hash-object
/// --literally`, which lets a test make trees git itself would refuse to create.
fn raw_tree(repo: &Path, entries: &[(&str, &[u8], &str)]) -> String {
    let mut raw = Vec::new();
    for (mode, name, id) in entries {
        raw.extend_from_slice(mode.as_bytes());
        raw.push(b' ');
        raw.extend_from_slice(name);
        raw.push(0);
        raw.extend((0..20).map(|i| u8::from_str_radix(&id[2 * i..2 * i + 2], 16).unwrap()));
    }
    hash(repo, &["hash-object", "-t", "tree", "-w", "--literally", "--stdin"], &raw)
}

fn hash(repo: &Path, args: &[&str], input: &[u8]) -> String {
    let mut child = crate::support::git::git_cmd(repo)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn hostile_trees_and_planted_links_never_make_podinit_write_outside_dest() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let repo = Repo::new(root.path(), "evil");
    let bare = &repo.bare;
    let ok = hash(bare, &["hash-object", "-w", "--stdin"], b"ok\n");
    let pwned = hash(bare, &["hash-object", "-w", "--stdin"], b"pwned\n");
    let inner = raw_tree(bare, &[("100644", b"pwned", &pwned)]);
    let hooks = raw_tree(bare, &[("40000", b"hooks", &raw_tree(bare, &[("100755", b"post-checkout", &pwned)]))]);
    let outside_link = hash(bare, &["hash-object", "-w", "--stdin"], s(outside.path()).as_bytes());
    let up_link = hash(bare, &["hash-object", "-w", "--stdin"], b"../../../../../../etc");
    let refused: Vec<(&str, String)> = vec![
        ("dotdot", raw_tree(bare, &[("100644", b"a", &ok), ("40000", b"..", &inner)])),
        ("dotgit", raw_tree(bare, &[("100644", b"a", &ok), ("40000", b".git", &hooks)])),
        ("dotgit-case", raw_tree(bare, &[("100644", b"a", &ok), ("40000", b".GiT", &hooks)])),
        ("dotgit-ntfs", raw_tree(bare, &[("100644", b"a", &ok), ("40000", b"git~1", &hooks)])),
        ("dotgit-hfs", raw_tree(bare, &[("100644", b"a", &ok), ("40000", ".g\u{200c}it".as_bytes(), &hooks)])),
        ("slash", raw_tree(bare, &[("100644", b"a", &ok), ("100644", b"../../../pwned", &pwned)])),
        // A link and a directory of the same name: the directory's file would go through it.
        ("link-then-dir", raw_tree(bare, &[("100644", b"a", &ok), ("120000", b"x", &outside_link), ("40000", b"x", &inner)])),
    ];
    let mut refs = Vec::new();
    for (name, tree) in &refused {
        let commit = git(bare, &["commit-tree", tree, "-m", name]);
        git(bare, &["update-ref", &format!("refs/heads/{name}"), &commit]);
        refs.push(*name);
    }
    // A link out of the tree is checked out as a link, as git does, and never followed.
    let links = raw_tree(bare, &[("100644", b"a", &ok), ("120000", b"up", &up_link), ("120000", b"out", &outside_link)]);
    let commit = git(bare, &["commit-tree", &links, "-m", "links"]);
    git(bare, &["update-ref", "refs/heads/links", &commit]);
    let daemon = Daemon::start(root.path());

    // A tree bomb: 2^30 paths in 31 objects (each level names the next tree twice). Refused by
    // the budget while walking, before anything is expanded or written.
    let mut bomb = raw_tree(bare, &[("100644", b"f", &ok)]);
    for _ in 0..30 {
        bomb = raw_tree(bare, &[("40000", b"a", &bomb), ("40000", b"b", &bomb)]);
    }
    let commit = git(bare, &["commit-tree", &bomb, "-m", "bomb"]);
    git(bare, &["update-ref", "refs/heads/bomb", &commit]);
    // A submodule whose name is an absolute path outside DEST (names are the repository's to
    // choose; podinit never makes a path of one).
    let lib = Repo::new(root.path(), "lib");
    lib.commit(&[("lib.txt", "lib\n")], "lib");
    let named = Repo::new(root.path(), "named");
    named.commit(&[("top.txt", "top\n")], "top");
    git(&named.work, &["submodule", "-q", "add", &daemon.url("lib"), "lib"]);
    let section = format!("submodule.{}", outside.path().join("pwned").display());
    git(&named.work, &["config", "-f", ".gitmodules", "--rename-section", "submodule.lib", &section]);
    named.commit(&[], "lib named by an absolute path");

    for r in refs {
        let dest = tempfile::tempdir().unwrap();
        let out = clone(&[&daemon.url("evil"), s(dest.path()), "--ref", r]);
        out.code(2).stderr_has("refuses to write");
        assert!(std::fs::symlink_metadata(dest.path().join("evil")).is_err(), "--ref {r}: published");
        assert!(worktrees(dest.path()).is_empty(), "--ref {r}: {:?}", worktrees(dest.path()));
    }
    let dest = tempfile::tempdir().unwrap();
    let out = clone(&[&daemon.url("evil"), s(dest.path()), "--ref", "bomb", "--timeout", "60s"]);
    out.code(1).stderr_has("--max-files 1000000");
    assert!(worktrees(dest.path()).is_empty());
    let dest = tempfile::tempdir().unwrap();
    clone(&[&daemon.url("named"), s(dest.path()), "--submodules"]).code(0);
    assert!(published(dest.path(), "named").1.contains(&"lib/lib.txt: lib\n".to_owned()));
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "a submodule's name made a path outside DEST");
    let dest = tempfile::tempdir().unwrap();
    clone(&[&daemon.url("evil"), s(dest.path()), "--ref", "links"]).code(0);
    let tree = published(dest.path(), "evil").1;
    assert_eq!(tree, ["a: ok\n".to_owned(), "out -> ".to_owned() + s(outside.path()), "up -> ../../../../../../etc".to_owned()]);
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "something was written outside DEST");
    // A config planted in DEST/.git (the volume may be the app's to write): podinit's own is
    // written back before gix reads it, so no rewrite sends the clone elsewhere.
    let config = dest.path().join(".git/config");
    let mut planted = std::fs::read_to_string(&config).unwrap();
    planted.push_str("[url \"git://127.0.0.1:1/\"]\n\tinsteadOf = git://\n[http]\n\textraHeader = X-Planted: yes\n");
    std::fs::write(&config, planted).unwrap();
    clone(&[&daemon.url("evil"), s(dest.path()), "--ref", "links", "--link", "third"]).code(0);
    let config_now = std::fs::read_to_string(&config).unwrap();
    assert!(!config_now.contains("insteadOf") && !config_now.contains("extraHeader"), "{config_now}");
    // A link planted inside DEST/.git (gix opens paths there by name): the cache is made anew,
    // nothing is written through the link.
    let objects = dest.path().join(".git/objects");
    std::fs::remove_dir_all(&objects).unwrap();
    std::os::unix::fs::symlink(outside.path(), &objects).unwrap();
    clone(&[&daemon.url("evil"), s(dest.path()), "--ref", "dotdot", "--link", "again"]).code(2);
    assert!(!std::fs::symlink_metadata(&objects).unwrap().file_type().is_symlink(), "the planted link is still there");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "written through a link in .git");

    // Planted in DEST by another container: a link where .worktrees or .git go, a directory
    // where the link goes. Refused (exit 2), nothing written through them.
    for planted in [".worktrees", ".git"] {
        let dest = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dest.path().join(planted)).unwrap();
        clone(&[&daemon.url("evil"), s(dest.path()), "--ref", "links"]).code(2).stderr_has("not a directory of podinit's");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "{planted}: written through the link");
    }
    let dest = tempfile::tempdir().unwrap();
    std::fs::create_dir(dest.path().join("evil")).unwrap();
    std::fs::write(dest.path().join("evil/keep"), "mine").unwrap();
    clone(&[&daemon.url("evil"), s(dest.path()), "--ref", "links"]).code(2).stderr_has("choose another --link");
    assert_eq!(std::fs::read_to_string(dest.path().join("evil/keep")).unwrap(), "mine");
    clone(&[&daemon.url("evil"), s(dest.path()), "--link", "../x"]).code(2).stderr_has("--link");
    clone(&[&daemon.url("evil"), s(dest.path()), "--sparse", "../etc"]).code(2).stderr_has("--sparse");
    clone(&[&daemon.url("evil"), s(dest.path()), "--ref", "nope", "--link", "other"]).code(2).stderr_has("no branch or tag of that name");
}

#[test]
fn killed_at_any_point_the_link_shows_the_old_tree_or_the_new_one_complete() {
    let root = tempfile::tempdir().unwrap();
    let repo = Repo::new(root.path(), "site");
    let files = |version: &str| -> Vec<(String, String)> {
        (0..2000).map(|i| (format!("d{:02}/page{i:04}.html", i % 40), format!("{version} page {i} {}\n", "x".repeat(400)))).collect()
    };
    let v1: Vec<(String, String)> = files("v1");
    repo.commit(&v1.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect::<Vec<_>>(), "v1");
    let daemon = Daemon::start(root.path());
    let dest = tempfile::tempdir().unwrap();
    clone(&[&daemon.url("site"), s(dest.path())]).code(0);
    let old = published(dest.path(), "site");
    let v2: Vec<(String, String)> = files("v2");
    let new_commit = repo.commit(&v2.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect::<Vec<_>>(), "v2");
    let new_tree = git_checkout(&daemon.url("site"), None);
    // Each round starts from the old tree (put back by a run at the old commit) and kills an
    // update to the new one after another delay.
    let (mut seen_old, mut seen_new) = (0, 0);
    for delay_ms in (10..8000).step_by(60) {
        if seen_old + seen_new >= 25 && seen_new > 0 {
            break;
        }
        if published(dest.path(), "site").0 != old.0 {
            clone(&[&daemon.url("site"), s(dest.path()), "--ref", &old.0]).code(0);
        }
        let mut child = Podinit::new().args(["git-clone", &daemon.url("site"), s(dest.path())]).command().spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let (commit, tree) = published(dest.path(), "site");
        if commit == old.0 {
            assert_eq!(tree, old.1, "killed after {delay_ms} ms: the old tree is not whole");
            seen_old += 1;
        } else {
            assert_eq!(commit, new_commit);
            assert_eq!(tree, new_tree, "killed after {delay_ms} ms: the new tree is not whole");
            seen_new += 1;
        }
    }
    assert!(seen_old > 0, "no kill landed before the switch: the test proves nothing");
    assert!(seen_new > 0, "no update finished: the kills never reached the switch");
    clone(&[&daemon.url("site"), s(dest.path())]).code(0);
    assert_eq!(published(dest.path(), "site"), (new_commit.clone(), new_tree.clone()));
    assert_eq!(git(&dest.path().join(".git"), &["rev-list", "--count", &new_commit]), "1", "an update stays shallow");
    assert_eq!(worktrees(dest.path()), [new_commit]);

    // SIGTERM: exit 143 (or done before the signal), and the link names v2 or v3, whole.
    repo.commit(&[("d00/page0000.html", "v3\n")], "v3");
    let v3_tree = git_checkout(&daemon.url("site"), None);
    let child = Podinit::new().args(["git-clone", &daemon.url("site"), s(dest.path())]).command().spawn().unwrap();
    std::thread::sleep(Duration::from_millis(30));
    assert!(crate::support::cmd::sigterm(&child));
    let out = Outcome::from_output(child.wait_with_output().unwrap());
    assert!(out.code == 143 || out.code == 0, "exit {}: {}", out.code, out.stderr);
    let (_, tree) = published(dest.path(), "site");
    assert!(tree == new_tree || tree == v3_tree, "after SIGTERM the tree is neither v2 nor v3");
}
