//! The volume applets (`chown`, `chmod`, `mkdir`, `cp`, `ln`, `touch`) against the real kernel
//! and file systems: as root and as a non-root user, with links planted to files and
//! directories outside, the kubelet's ConfigMap and Secret layout, `lost+found`, a read-only
//! file system and a tmpfs mounted inside a tree.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::support::cmd::s;
use crate::support::{Outcome, Podinit};

const NON_ROOT: &[&str] = &["/usr/bin/setpriv", "--reuid", "65532", "--regid", "65532", "--clear-groups"];

fn podinit(args: &[&str]) -> Outcome {
    Podinit::new().args(args).run()
}

fn owner(path: impl AsRef<Path>) -> (u32, u32) {
    let m = std::fs::symlink_metadata(path).unwrap();
    (m.uid(), m.gid())
}

fn mode(path: impl AsRef<Path>) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// A tree: `root/{a/f1, a/b/f2, top}` plus links planted to a file and a directory outside.
fn tree(root: &Path, outside: &Path) {
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    std::fs::write(root.join("a/f1"), "1").unwrap();
    std::fs::write(root.join("a/b/f2"), "2").unwrap();
    std::fs::write(root.join("top"), "t").unwrap();
    std::fs::create_dir_all(outside.join("dir")).unwrap();
    std::fs::write(outside.join("file"), "victim").unwrap();
    std::fs::write(outside.join("dir/inner"), "victim").unwrap();
    std::os::unix::fs::symlink(outside.join("file"), root.join("a/to-file")).unwrap();
    std::os::unix::fs::symlink(outside.join("dir"), root.join("a/b/to-dir")).unwrap();
}

#[test]
fn planted_links_never_lead_a_recursive_chown_or_chmod_outside() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, outside) = (tmp.path().join("vol"), tmp.path().join("outside"));
    tree(&root, &outside);
    for p in ["file", "dir", "dir/inner"] {
        std::fs::set_permissions(outside.join(p), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    podinit(&["chown", "-R", "1001:2000", s(&root)]).code(0).stderr_has("chown 1001:2000");
    podinit(&["chmod", "-R", "u=rwX,g=rX,o=", s(&root)]).code(0);
    for p in ["", "a", "a/f1", "a/b", "a/b/f2", "top"] {
        assert_eq!(owner(root.join(p)), (1001, 2000), "{p}");
    }
    assert_eq!(mode(root.join("a/f1")), 0o640);
    assert_eq!(mode(root.join("a/b")), 0o750);
    // The links themselves changed owner; what they point at did not change at all.
    assert_eq!(owner(root.join("a/to-file")), (1001, 2000));
    for p in ["file", "dir", "dir/inner"] {
        assert_eq!(owner(outside.join(p)), (0, 0), "{p} outside");
        assert_eq!(mode(outside.join(p)), 0o644, "{p} outside");
    }
    // The app replaced a directory the init container names with a link: -R does not
    // follow it (chown changes the link itself, chmod leaves it).
    std::fs::remove_dir_all(root.join("a/b")).unwrap();
    std::os::unix::fs::symlink(outside.join("dir"), root.join("a/b")).unwrap();
    podinit(&["chown", "-R", "1002", s(&root.join("a/b"))]).code(0);
    podinit(&["chmod", "-R", "0700", s(&root.join("a/b"))]).code(0).stderr_has("-R does not follow it");
    assert_eq!(owner(root.join("a/b")), (1002, 0), "the link itself");
    for p in ["dir", "dir/inner"] {
        assert_eq!(owner(outside.join(p)), (0, 0), "{p} outside");
        assert_eq!(mode(outside.join(p)), 0o644, "{p} outside");
    }
}

/// The number of calls of these syscalls that one run makes (strace). Every call is traced and
/// counted by name, as Debian's strace 6.1 predates fchmodat2 (syscall 452, shown by number).
fn syscalls(args: &[&str], calls: &str) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let out = Podinit::new().wrapped(&["/usr/bin/strace", "-f", "-qq", "-o", s(&trace)]).args(args).run();
    out.code(0);
    let names: Vec<String> = calls.split(',').map(|c| if c == "fchmodat2" { "syscall_0x1c4(".into() } else { format!("{c}(") }).collect();
    let trace = std::fs::read_to_string(&trace).unwrap();
    // A line per call; a call interrupted by another thread's is resumed on a second line.
    trace
        .lines()
        .filter(|l| !l.contains("resumed>") && names.iter().any(|n| l.contains(&format!(" {n}")) || l.starts_with(n.as_str())))
        .count()
}

#[test]
fn a_rerun_on_a_matching_tree_makes_no_chown_or_chmod_call() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("vol");
    for d in 0..10 {
        std::fs::create_dir_all(root.join(format!("d{d}"))).unwrap();
        for f in 0..50 {
            std::fs::write(root.join(format!("d{d}/f{f}")), "x").unwrap();
        }
    }
    let chown = ["chown", "-R", "1001:1001", s(&root)];
    assert!(syscalls(&chown, "fchownat,chown,lchown,fchown") >= 511, "the first run changes every entry");
    assert_eq!(syscalls(&chown, "fchownat,chown,lchown,fchown"), 0, "a rerun makes no chown call");
    let chmod = ["chmod", "-R", "g+w", s(&root)];
    assert!(syscalls(&chmod, "fchmodat,chmod,fchmod,fchmodat2") >= 511);
    assert_eq!(syscalls(&chmod, "fchmodat,chmod,fchmod,fchmodat2"), 0, "a rerun makes no chmod call");
}

#[test]
fn if_root_mismatch_exclude_and_one_file_system() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("vol");
    std::fs::create_dir_all(root.join("lost+found")).unwrap();
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::write(root.join("data/f"), "x").unwrap();
    std::fs::create_dir_all(root.join("mnt")).unwrap();
    let mounted = std::process::Command::new("mount").args(["-t", "tmpfs", "tmpfs", s(&root.join("mnt"))]).status().unwrap();
    assert!(mounted.success());
    std::fs::write(root.join("mnt/other-fs"), "x").unwrap();
    let run = podinit(&["chown", "-R", "--exclude", "lost+found", "1001:1001", s(&root)]);
    // The tmpfs's root is an entry of the tree (changed); below it is another file system.
    let (mount_root, below) = (owner(root.join("mnt")), owner(root.join("mnt/other-fs")));
    let _ = std::process::Command::new("umount").arg(root.join("mnt")).status();
    run.code(0);
    assert_eq!(owner(root.join("data/f")), (1001, 1001));
    assert_eq!(owner(root.join("lost+found")), (0, 0), "excluded");
    assert_eq!((mount_root, below), ((1001, 1001), (0, 0)), "not descended into another file system");

    // The root matches already: --if-root-mismatch leaves the tree alone, as the kubelet's
    // OnRootMismatch does; without it the walk fixes what differs.
    std::os::unix::fs::chown(root.join("data/f"), Some(0), Some(0)).unwrap();
    podinit(&["chown", "-R", "--if-root-mismatch", "1001:1001", s(&root)]).code(0).stderr_has("the tree is left alone");
    assert_eq!(owner(root.join("data/f")), (0, 0));
    podinit(&["chown", "-R", "1001:1001", s(&root)]).code(0);
    assert_eq!(owner(root.join("data/f")), (1001, 1001));
}

#[test]
fn one_failing_entry_is_counted_and_the_walk_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("vol");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    for f in ["a", "b", "sub/c"] {
        std::fs::write(root.join(f), "x").unwrap();
    }
    std::os::unix::fs::chown(&root, Some(65532), Some(65532)).unwrap();
    std::os::unix::fs::chown(root.join("a"), Some(65532), Some(65532)).unwrap();
    // As the image's non-root user: it may chmod its own files only.
    let logs = tmp.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::os::unix::fs::chown(&logs, Some(65532), Some(65532)).unwrap();
    let term = logs.join("termination-log");
    let run = Podinit::new().wrapped(NON_ROOT).args(["--termination-log", s(&term), "chmod", "-R", "o-r", s(&root)]).run();
    run.code(77).stderr_has("3 of 5 entries failed; the first:").stderr_has("hint: changing owners needs root");
    assert_eq!(mode(root.join("a")), 0o640, "its own file changed all the same");
    assert!(std::fs::read_to_string(&term).unwrap().contains("(exit 77)"));
    // A read-only file system: exit 1, naming the file and the cause.
    let ro = tmp.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    assert!(std::process::Command::new("mount").args(["-t", "tmpfs", "tmpfs", s(&ro)]).status().unwrap().success());
    std::fs::write(ro.join("f"), "x").unwrap();
    assert!(std::process::Command::new("mount").args(["-o", "remount,ro", s(&ro)]).status().unwrap().success());
    let run = podinit(&["chmod", "-R", "0600", s(&ro)]);
    let _ = std::process::Command::new("umount").arg(&ro).status();
    run.code(1).stderr_has("read-only file system");
}

/// A ConfigMap or Secret volume as the kubelet lays it out: files in a timestamped directory,
/// `..data` linking to it, visible names linking into `..data`.
fn kubelet_volume(dir: &Path, files: &[(&str, &str)]) {
    let data = dir.join("..2026_12_01_10_00_00.123");
    for (name, text) in files {
        let path = data.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        let top = Path::new(name).components().next().unwrap().as_os_str().to_owned();
        let _ = std::os::unix::fs::symlink(Path::new("..data").join(&top), dir.join(&top));
    }
    std::os::unix::fs::symlink("..2026_12_01_10_00_00.123", dir.join("..data")).unwrap();
}

fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in walk(dir) {
        out.push(entry.strip_prefix(dir).unwrap().display().to_string());
    }
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn cp_copies_a_configmap_or_secret_volume_as_the_app_sees_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, secret) = (tmp.path().join("config"), tmp.path().join("secret"));
    std::fs::create_dir_all(&config).unwrap();
    std::fs::create_dir_all(&secret).unwrap();
    kubelet_volume(&config, &[("app.conf", "listen 8080\n"), ("logging.yaml", "level: info\n")]);
    kubelet_volume(&secret, &[("tls.key", "KEY"), ("nested/token", "TOKEN")]);
    for flags in [&["-rL"][..], &["-r"]] {
        let dest = tmp.path().join(format!("dest{}", flags[0]));
        let contents = format!("{}/.", config.display());
        let mut args = vec!["cp"];
        args.extend_from_slice(flags);
        args.extend([contents.as_str(), s(&dest)]);
        podinit(&args).code(0);
        assert_eq!(listing(&dest), ["app.conf", "logging.yaml"], "{flags:?}: the visible files, not ..data");
        assert_eq!(std::fs::read_to_string(dest.join("app.conf")).unwrap(), "listen 8080\n");
        assert!(std::fs::symlink_metadata(dest.join("app.conf")).unwrap().is_file(), "content, not a link");
        // A rerun finds everything in place: same inode.
        let inode = std::fs::metadata(dest.join("app.conf")).unwrap().ino();
        podinit(&args).code(0).stderr_has("0 changed");
        assert_eq!(std::fs::metadata(dest.join("app.conf")).unwrap().ino(), inode);
    }
    // A key from a Secret, readable by its owner only.
    let certs = tmp.path().join("certs");
    podinit(&["cp", "-rL", "--mode", "0600", &format!("{}/.", secret.display()), s(&certs)]).code(0);
    assert_eq!(listing(&certs), ["nested", "nested/token", "tls.key"]);
    assert_eq!(mode(certs.join("tls.key")), 0o600);
    assert_eq!(std::fs::read_to_string(certs.join("nested/token")).unwrap(), "TOKEN");
}

#[test]
fn cp_never_writes_through_a_link_in_the_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dest, outside) = (tmp.path().join("src"), tmp.path().join("dest"), tmp.path().join("outside"));
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/file"), "new").unwrap();
    std::fs::write(src.join("app.conf"), "new").unwrap();
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("victim"), "victim").unwrap();
    // Planted: a directory link and a file link, both leading outside.
    std::os::unix::fs::symlink(&outside, dest.join("sub")).unwrap();
    std::os::unix::fs::symlink(outside.join("victim"), dest.join("app.conf")).unwrap();
    let run = podinit(&["cp", "-r", &format!("{}/.", src.display()), s(&dest)]);
    run.code(1).stderr_has("is a symbolic link").stderr_has("entries failed");
    assert!(!outside.join("file").exists(), "nothing written through the directory link");
    assert_eq!(std::fs::read_to_string(outside.join("victim")).unwrap(), "victim", "nor through the file link");
    // The file link itself was replaced by the copied file.
    assert!(std::fs::symlink_metadata(dest.join("app.conf")).unwrap().is_file());
    assert_eq!(std::fs::read_to_string(dest.join("app.conf")).unwrap(), "new");

    // `cp -r src dest/`: the directory named after SRC inside DEST is the volume's name, and a
    // link planted there is refused, not written through.
    std::os::unix::fs::symlink(&outside, dest.join("src")).unwrap();
    podinit(&["cp", "-r", s(&src), s(&dest)]).code(1).stderr_has("is a symbolic link");
    assert!(!outside.join("app.conf").exists() && !outside.join("sub").exists(), "nothing copied into the link's target");

    // A source that only looks like a kubelet volume (`..data` leading out, a visible link
    // through it) is copied as what it is: links stay links, nothing outside is read.
    let fake = tmp.path().join("fake");
    std::fs::create_dir_all(&fake).unwrap();
    std::os::unix::fs::symlink(&outside, fake.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/victim", fake.join("stolen")).unwrap();
    let copy = tmp.path().join("copy");
    podinit(&["cp", "-r", &format!("{}/.", fake.display()), s(&copy)]).code(0);
    assert!(std::fs::symlink_metadata(copy.join("stolen")).unwrap().file_type().is_symlink(), "a link, not the victim's bytes");

    // A directory copied into itself is refused before anything is written.
    podinit(&["cp", "-r", s(&src), s(&src.join("sub/deeper"))]).code(2).stderr_has("into itself");
    assert!(!src.join("sub/deeper").exists());
}

#[test]
fn touch_never_creates_through_a_planted_link_and_cp_n_keeps_what_is_there() {
    let tmp = tempfile::tempdir().unwrap();
    let (vol, outside) = (tmp.path().join("vol"), tmp.path().join("outside"));
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(outside.join("created"), vol.join(".initialized")).unwrap();
    podinit(&["touch", s(&vol.join(".initialized"))]).code(1).stderr_has(".initialized");
    assert!(!outside.join("created").exists(), "no file made where the dangling link points");

    let (a, b) = (tmp.path().join("a"), vol.join("b"));
    std::fs::write(&a, "new").unwrap();
    std::fs::write(&b, "kept").unwrap();
    podinit(&["cp", "-n", s(&a), s(&b)]).code(0);
    assert_eq!(std::fs::read_to_string(&b).unwrap(), "kept");
}

#[test]
fn cp_replaces_a_file_whole_while_it_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let (v1, v2, dest) = (tmp.path().join("v1"), tmp.path().join("v2"), tmp.path().join("model.bin"));
    std::fs::write(&v1, vec![1u8; 8 << 20]).unwrap();
    std::fs::write(&v2, vec![2u8; 8 << 20]).unwrap();
    podinit(&["cp", s(&v1), s(&dest)]).code(0);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (stop, dest) = (stop.clone(), dest.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let bytes = std::fs::read(&dest).unwrap();
                assert!(
                    bytes.len() == 8 << 20 && (bytes.iter().all(|b| *b == 1) || bytes.iter().all(|b| *b == 2)),
                    "a half-copied file was seen"
                );
                reads += 1;
            }
            reads
        })
    };
    for i in 0..6 {
        podinit(&["cp", s(if i % 2 == 0 { &v2 } else { &v1 }), s(&dest)]).code(0);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
}

#[test]
fn mkdir_ln_touch_are_idempotent_and_refuse_bad_input_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("a/b/c");
    podinit(&["mkdir", "-p", "-m", "0750", s(&d)]).code(0);
    assert_eq!(mode(&d), 0o750);
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    podinit(&["mkdir", "-p", "-m", "0750", s(&d)]).code(0);
    assert_eq!(mode(&d), 0o700, "an existing directory keeps its mode, as GNU mkdir -p");
    podinit(&["mkdir", s(&d)]).code(1).stderr_has("it exists").stderr_has("add -p");

    let link = tmp.path().join("current");
    podinit(&["ln", "-s", "v3", s(&link)]).code(0);
    let inode = std::fs::symlink_metadata(&link).unwrap().ino();
    podinit(&["ln", "-s", "v3", s(&link)]).code(0);
    assert_eq!(std::fs::symlink_metadata(&link).unwrap().ino(), inode, "already as asked: untouched");
    podinit(&["ln", "-s", "v4", s(&link)]).code(1).stderr_has("add -f");
    podinit(&["ln", "-sfn", "v4", s(&link)]).code(0);
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("v4"));

    let file = tmp.path().join("stamp");
    podinit(&["touch", "-c", s(&file)]).code(0);
    assert!(!file.exists(), "-c creates nothing");
    std::fs::write(&file, "keep").unwrap();
    podinit(&["touch", s(&file)]).code(0);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep", "touch never truncates");

    // Bad input: one line, exit 2, nothing changed.
    std::fs::write(tmp.path().join("x"), "x").unwrap();
    for (args, says) in [
        (&["chmod", "0999", "x"][..], "MODE '0999' is not a mode"),
        (&["chmod", "u+q", "x"], "is not a mode"),
        (&["chown", "nobody-here", "x"], "numeric uid"),
        (&["chown", "--bogus", "0", "x"], "--bogus"),
        (&["cp", "-Z", "x", "y"], "-Z"),
        (&["cp", "a", "b", "not-a-dir"], "needs DEST to be a directory"),
        (&["cp", "--preserve", "xattr", "x", "y"], "xattr"),
    ] {
        let out = Podinit::new().args(args).run();
        out.code(2).stderr_has(says);
        assert_eq!(out.stderr.lines().filter(|l| l.contains("error:")).count(), 1, "{args:?}: {}", out.stderr);
    }
    std::fs::set_permissions(tmp.path().join("x"), std::fs::Permissions::from_mode(0o640)).unwrap();
    Podinit::new().args(["chmod", "0999", s(&tmp.path().join("x"))]).run().code(2);
    assert_eq!(mode(tmp.path().join("x")), 0o640, "a refused line changes nothing");
}

#[test]
fn a_non_root_user_prepares_its_own_volume() {
    let tmp = tempfile::tempdir().unwrap();
    let vol = tmp.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::os::unix::fs::chown(&vol, Some(65532), Some(65532)).unwrap();
    let src = tmp.path().join("conf");
    std::fs::write(&src, "c").unwrap();
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o644)).unwrap();
    let as_user = |args: &[&str]| Podinit::new().wrapped(NON_ROOT).args(args).run();
    as_user(&["mkdir", "-p", s(&vol.join("cache/x"))]).code(0);
    as_user(&["cp", s(&src), s(&vol.join("cache/app.conf"))]).code(0);
    as_user(&["touch", s(&vol.join(".initialized"))]).code(0);
    as_user(&["ln", "-s", "cache", s(&vol.join("current"))]).code(0);
    as_user(&["chmod", "-R", "go-rwx", s(&vol)]).code(0);
    assert_eq!(owner(vol.join("cache/app.conf")), (65532, 65532));
    assert_eq!(mode(vol.join("cache/app.conf")), 0o600);
    assert_eq!(mode(vol.join("cache")), 0o700);
    // A read-only directory is copied as read-only, its files in it all the same.
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(tree.join("ro")).unwrap();
    std::fs::write(tree.join("ro/f"), "f").unwrap();
    std::fs::set_permissions(tree.join("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
    as_user(&["cp", "-r", s(&tree), s(&vol)]).code(0);
    assert_eq!(std::fs::read_to_string(vol.join("tree/ro/f")).unwrap(), "f");
    assert_eq!(mode(vol.join("tree/ro")), 0o555);
    as_user(&["cp", "-r", &format!("{}/.", tree.display()), s(&vol.join("tree"))]).code(0).stderr_has("0 changed");
}

#[test]
fn install_never_shadows_an_images_own_tools() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(bin.join("cp"), "#!/bin/sh\necho the image's own cp\n").unwrap();
    podinit(&["--install", "-s", s(&bin)]).code(0).stderr_has("kept (not podinit)");
    assert_eq!(std::fs::read_to_string(bin.join("cp")).unwrap(), "#!/bin/sh\necho the image's own cp\n");
    assert!(std::fs::read_link(bin.join("chown")).is_ok());
    podinit(&["--install", "-s", s(&bin), "--force"]).code(0);
    assert!(std::fs::read_link(bin.join("cp")).is_ok(), "--force replaces it");
    // A subset: only wait-for, e.g. in an app image.
    let only = tmp.path().join("only");
    podinit(&["--install", s(&only), "--applets", "wait-for"]).code(0);
    assert_eq!(listing(&only), ["wait-for"]);
    podinit(&["--install", s(&only), "--applets", "rsync"]).code(2).stderr_has("'rsync' is not an applet");
}

/// Runs `script` with `sh` in a fresh mount namespace (tmpfs mounts there stay there), `$0`
/// being the podinit binary.
fn in_mount_namespace(script: &str) -> Outcome {
    crate::support::cmd::unshared(&["--mount", "--propagation", "private"], script)
}

#[test]
fn rm_removes_links_never_their_targets_and_refuses_roots_before_anything() {
    let dir = tempfile::tempdir().unwrap();
    let (root, outside) = (dir.path().join("vol"), dir.path().join("outside"));
    tree(&root, &outside);
    // A pattern matching a planted link removes the link, never the directory it leads to.
    podinit(&["rm", "-rf", s(&root.join("a/b/*"))]).code(0);
    assert!(!root.join("a/b/to-dir").exists() && !root.join("a/b/f2").exists());
    podinit(&["rm", "-r", s(&root)]).code(0);
    assert!(!root.exists());
    assert_eq!(std::fs::read_to_string(outside.join("file")).unwrap(), "victim");
    assert_eq!(std::fs::read_to_string(outside.join("dir/inner")).unwrap(), "victim");
    // A rerun: -f accepts what is gone; without it, one line and exit 1.
    podinit(&["rm", "-rf", s(&root)]).code(0);
    let out = podinit(&["rm", s(&root)]);
    out.code(1).stderr_has("not found").stderr_has("hint: add -f");
    // `/`, `.` and `..` are refused before any operand is removed.
    std::fs::write(dir.path().join("keep"), "k").unwrap();
    for bad in ["/", ".", &format!("{}/..", s(&outside))] {
        podinit(&["rm", "-rf", s(&dir.path().join("keep")), bad]).code(2);
        assert!(dir.path().join("keep").exists(), "{bad}: nothing removed");
    }
    // A directory without -r: exit 1 with the hint, untouched.
    podinit(&["rm", s(&outside)]).code(1).stderr_has("hint: add -r");
    assert!(outside.join("dir/inner").exists());
}

#[test]
fn rm_stops_at_a_mount_below_and_refuses_the_mount_point() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("m")).unwrap();
    std::fs::write(tree.join("f"), "f").unwrap();
    let script = format!(
        "mount -t tmpfs none {t}/m && echo keep > {t}/m/keep && \
         \"$0\" rm -rf {t}; echo \"rc=$?\"; cat {t}/m/keep; \"$0\" rm -rf {t}/m; echo \"rc=$?\"; cat {t}/m/keep",
        t = s(&tree)
    );
    let out = in_mount_namespace(&script);
    assert_eq!(out.stdout, "rc=1\nkeep\nrc=2\nkeep\n", "{}", out.stderr);
    assert!(out.stderr.contains("another file system is mounted there"), "{}", out.stderr);
    assert!(out.stderr.contains("is a mount point") && out.stderr.contains("hint: to empty it"), "{}", out.stderr);
}

#[test]
fn mv_across_file_systems_puts_a_whole_tree_in_place_and_a_rerun_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    std::fs::create_dir_all(src.join("tree/sub")).unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::write(src.join("tree/sub/f"), "data").unwrap();
    std::fs::set_permissions(src.join("tree/sub/f"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("sub/f", src.join("tree/link")).unwrap();
    let script = format!(
        "mount -t tmpfs none {d} && \"$0\" mv -v {s}/tree {d}/ && find {d} -printf '%P %m %y %l\\n' | sort && \
         \"$0\" mv {s}/tree {d}/; echo \"rc=$?\"; ls -a {d}",
        s = s(&src),
        d = s(&dst)
    );
    let out = in_mount_namespace(&script);
    let want = format!(
        "renamed '{}/tree' -> '{}/tree'\n 1777 d \ntree 755 d \ntree/link 777 l sub/f\ntree/sub 755 d \ntree/sub/f 640 f \nrc=0\n.\n..\ntree\n",
        s(&src),
        s(&dst)
    );
    assert_eq!(out.stdout, want, "{}", out.stderr);
    assert!(!src.join("tree").exists(), "the source is removed once the copy is in place");
}

#[test]
fn mv_replaces_a_planted_link_at_dest_never_writes_through_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("victim"), "victim").unwrap();
    std::os::unix::fs::symlink(dir.path().join("victim"), dir.path().join("config")).unwrap();
    std::fs::write(dir.path().join("new"), "new").unwrap();
    podinit(&["mv", "-T", s(&dir.path().join("new")), s(&dir.path().join("config"))]).code(0);
    assert_eq!(std::fs::read_to_string(dir.path().join("victim")).unwrap(), "victim");
    assert!(!std::fs::symlink_metadata(dir.path().join("config")).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(dir.path().join("config")).unwrap(), "new");
}

#[test]
fn patterns_expand_as_sh_does_and_what_they_find_is_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let (root, outside) = (dir.path().join("vol"), dir.path().join("outside"));
    tree(&root, &outside);
    std::fs::write(root.join("a/.dot"), "d").unwrap();
    // chown -R through a pattern: the planted link to a directory is changed itself.
    podinit(&["chown", "-R", "1001:1001", s(&root.join("a/*"))]).code(0);
    assert_eq!(owner(root.join("a/b/f2")), (1001, 1001));
    assert_eq!(owner(root.join("a/to-file")), (1001, 1001));
    assert_eq!(owner(outside.join("file")), (0, 0));
    assert_eq!(owner(root.join("a/.dot")), (0, 0), "a dot file only when the pattern starts with a dot");
    // No match: the operand as written, and the applet's own error names it.
    podinit(&["chmod", "600", s(&root.join("a/*.nothing"))]).code(1).stderr_has("a/*.nothing");
    // A link a pattern finds that leads out of the directory listed is left out, with or
    // without -R, as a last component or before a trailing `/`.
    std::os::unix::fs::symlink(outside.join("file"), root.join("a/evil")).unwrap();
    std::os::unix::fs::symlink(outside.join("dir"), root.join("a/evil-dir")).unwrap();
    podinit(&["chmod", "600", s(&root.join("a/*"))]).code(0).stderr_has("a/evil: a link leading outside");
    assert_eq!(mode(outside.join("file")), 0o644);
    podinit(&["chown", "-R", "2000:2000", &format!("{}/", s(&root.join("a/*")))]).code(0);
    assert_eq!(owner(root.join("a/b")), (2000, 2000), "a directory the pattern found");
    assert_eq!(owner(outside.join("dir/inner")), (0, 0), "never the one a planted link leads to");
    podinit(&["rm", "-rf", s(&root.join("a/*/inner"))]).code(0);
    assert!(outside.join("dir/inner").exists());
    // A file literally named with a `*` is that file.
    std::fs::write(root.join("star*"), "s").unwrap();
    podinit(&["chmod", "600", s(&root.join("star*"))]).code(0);
    assert_eq!(mode(root.join("star*")), 0o600);
}

#[test]
fn cp_a_keeps_times_of_directories_and_links_and_a_rerun_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    std::fs::create_dir_all(src.join("d/e")).unwrap();
    std::fs::write(src.join("d/e/f"), "f").unwrap();
    std::os::unix::fs::symlink("e/f", src.join("d/l")).unwrap();
    let set = crate::support::cmd::tool("find", &[s(&src), "-exec", "touch", "-h", "-d", "2020-01-01T00:00:00Z", "{}", "+"]);
    set.code(0);
    podinit(&["cp", "-a", s(&src), s(&dst)]).code(0);
    for rel in ["", "d", "d/e", "d/e/f", "d/l"] {
        assert_eq!(std::fs::symlink_metadata(dst.join(rel)).unwrap().mtime(), 1_577_836_800, "{rel}");
    }
    // The same copy again (into DEST itself now that it exists): nothing to change.
    let again = podinit(&["cp", "-a", &format!("{}/.", s(&src)), s(&dst)]);
    again.code(0).stderr_has("0 changed");
    assert_eq!(std::fs::metadata(&dst).unwrap().mtime(), 1_577_836_800);
}

#[test]
fn sysfs_sets_a_namespaced_attribute_checks_and_reruns_without_writing() {
    // A fresh network namespace with its own sysfs: lo's mtu is that namespace's only.
    let script = "mount -t sysfs none /sys && \"$0\" sysfs class/net/lo/mtu=1400 && cat /sys/class/net/lo/mtu && \
                  \"$0\" sysfs /sys/class/net/lo/mtu=1400 && \"$0\" sysfs --check class/net/lo/mtu=1400 && \
                  \"$0\" sysfs --check class/net/lo/mtu=1500; echo \"rc=$?\"; \"$0\" sysfs class/net/lo/mtu=1500 ../x=1; echo \"rc=$?\"; \
                  \"$0\" sysfs class/net/lo/mtu=1500 class/net/lo/nope=1; echo \"rc=$?\"; cat /sys/class/net/lo/mtu";
    let out = crate::support::cmd::unshared(&["--net", "--mount", "--propagation", "private"], script);
    assert_eq!(out.stdout, "1400\nrc=1\nrc=2\nrc=2\n1400\n", "{}", out.stderr);
    out.stderr_has("set 1400 (was").stderr_has("unchanged 1400").stderr_has("is 1400, wants 1500").stderr_has("no such attribute");
}

#[tokio::test]
async fn sysfs_in_an_unprivileged_container_exits_77_with_a_hint() {
    use testcontainers::ImageExt as _;
    let image = crate::support::docker::podinit_image().await;
    // Docker mounts /sys read-only; the attribute is the container's own network's.
    let out = crate::support::docker::run_to_exit(image.with_cmd(["sysfs", "class/net/lo/mtu=1400"]).with_user("0:0")).await;
    out.code(77).stderr_has("hint: /sys is read-only in an unprivileged container");
}

#[test]
fn rm_and_chown_stop_at_a_bind_mount_of_the_same_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (tree, other) = (dir.path().join("tree"), dir.path().join("other"));
    std::fs::create_dir_all(tree.join("b")).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("keep"), "keep").unwrap();
    // The same device on both sides: only the mount table tells the bind mount apart.
    let script = format!(
        "mount --bind {o} {t}/b && \"$0\" chown -R 1001 {t} && stat -c %u {o}/keep && \"$0\" rm -rf {t}; echo \"rc=$?\"; \
         cat {t}/b/keep; \"$0\" rm -rf {t}/b; echo \"rc=$?\"",
        t = s(&tree),
        o = s(&other)
    );
    let out = in_mount_namespace(&script);
    assert_eq!(out.stdout, "0\nrc=1\nkeeprc=2\n", "{}", out.stderr);
    assert!(out.stderr.contains("another file system is mounted there"), "{}", out.stderr);
}

#[test]
fn mv_finishes_a_move_across_file_systems_that_was_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    // What a stopped move leaves: SRC set aside under its moving name, DEST not there yet.
    std::fs::create_dir_all(src.join(".tree.podinit-moving/sub")).unwrap();
    std::fs::write(src.join(".tree.podinit-moving/sub/f"), "data").unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    podinit(&["mv", s(&src.join("tree")), &format!("{}/", s(&dst))]).code(0).stderr_has("finishing a move");
    assert_eq!(std::fs::read_to_string(dst.join("tree/sub/f")).unwrap(), "data");
    assert!(!src.join(".tree.podinit-moving").exists());
    // And a rerun of the same line is done.
    podinit(&["mv", s(&src.join("tree")), &format!("{}/", s(&dst))]).code(0).stderr_has("moved already");
}

#[test]
fn sysfs_reads_the_bracketed_choice_and_takes_the_nodes_sysfs_mounted_elsewhere() {
    // A tree shaped as /sys is, as a hostPath of the node's /sys would be at /host-sys.
    let root = tempfile::tempdir().unwrap();
    let thp = root.path().join("kernel/mm/transparent_hugepage");
    std::fs::create_dir_all(&thp).unwrap();
    std::fs::write(thp.join("enabled"), "always madvise [never]\n").unwrap();
    std::fs::write(thp.join("defrag"), "[always] defer madvise never\n").unwrap();
    let sysfs = |args: &[&str]| Podinit::new().arg("sysfs").arg("--root").arg(root.path()).args(args).run();
    sysfs(&["kernel/mm/transparent_hugepage/enabled=never"]).code(0).stderr_has("unchanged never");
    assert_eq!(std::fs::read_to_string(thp.join("enabled")).unwrap(), "always madvise [never]\n", "no write");
    sysfs(&["--check", "kernel/mm/transparent_hugepage/defrag=never"]).code(1).stderr_has("is always, wants never");
    // The shell line's own path, below the root's: written, read back.
    let line = format!("{}=madvise", s(&thp.join("defrag")));
    sysfs(&[&line]).code(0).stderr_has("set madvise (was always)");
    assert_eq!(std::fs::read_to_string(thp.join("defrag")).unwrap(), "madvise\n");
    sysfs(&["kernel/mm/transparent_hugepage/enabled"]).code(0).stdout_is("kernel/mm/transparent_hugepage/enabled = never\n");
    // A typo stops the run before anything is written.
    sysfs(&["kernel/mm/transparent_hugepage/defrag=never", "kernel/mm/nope=1"]).code(2).stderr_has("no such attribute");
    assert_eq!(std::fs::read_to_string(thp.join("defrag")).unwrap(), "madvise\n");
}

#[test]
fn mv_renaming_a_directory_twice_is_done_the_second_time() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("old")).unwrap();
    std::fs::write(dir.path().join("old/f"), "f").unwrap();
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    podinit(&["mv", s(&old), s(&new)]).code(0);
    // The rerun finds DEST a directory (the one it made) and SRC gone: done, not `new/old`.
    podinit(&["mv", s(&old), s(&new)]).code(0).stderr_has("moved already");
    assert_eq!(listing(&new), ["f"]);
    // A source that never was, to a DEST that is not there either, is an error.
    podinit(&["mv", s(&dir.path().join("nothing")), s(&dir.path().join("nowhere"))]).code(1).stderr_has("not found");
}

#[test]
fn cp_a_as_a_non_root_user_copies_root_owned_trees_as_its_own() {
    // GNU cp -p keeps owners only as root; as anyone else the copy is the copier's (EPERM
    // accepted), for files, directories and links alike.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::create_dir_all(dir.path().join("src/d")).unwrap();
    std::fs::write(dir.path().join("src/d/f"), "f").unwrap();
    std::os::unix::fs::symlink("d/f", dir.path().join("src/l")).unwrap();
    let dst = dir.path().join("dst");
    Podinit::new().wrapped(NON_ROOT).args(["cp", "-a", s(&dir.path().join("src")), s(&dst)]).run().code(0);
    for rel in ["", "d", "d/f", "l"] {
        assert_eq!(owner(dst.join(rel)), (65532, 65532), "{rel}");
    }
}
