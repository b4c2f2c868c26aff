//! The volume applets side by side with GNU coreutils and busybox: each form a chart's init
//! container carries runs on three copies of one tree (GNU's and busybox's through `sh -c`,
//! so their globs are the shell's; podinit's through a link named after the applet, with no
//! shell), and the trees after (`find`'s `%p %m %u %g %y %l`, modification times where the
//! form keeps them), the exit codes and, for `-v`, the lines printed are compared. Each form
//! says what podinit should do (as GNU, as busybox, refuse it with a hint, or differ as
//! documented); the table in docs/volume.md is generated from the runs and checked here.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::Outcome;
use crate::support::cmd::{bin, s};

/// What podinit should do with a form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// The same files, exit code (and `-v` lines) as GNU coreutils.
    Gnu,
    /// As busybox, where GNU refuses the form.
    Busybox,
    /// Refused with exit 2 and a hint, nothing changed.
    Refused,
    /// A difference docs/volume.md explains.
    Differs,
}

/// One form: its words, what podinit should do, whether times and `-v` lines are compared.
struct Form {
    words: &'static [&'static str],
    want: Want,
    times: bool,
    lines: bool,
}

const fn form(words: &'static [&'static str], want: Want) -> Form {
    Form { words, want, times: false, lines: false }
}

const fn timed(words: &'static [&'static str], want: Want) -> Form {
    Form { words, want, times: true, lines: false }
}

const fn verbose(words: &'static [&'static str]) -> Form {
    Form { words, want: Want::Gnu, times: false, lines: true }
}

/// The forms, in the order of the table.
const FORMS: &[Form] = &[
    form(&["cp", "src/a.txt", "copy.txt"], Want::Gnu),
    form(&["cp", "-r", "src", "copy"], Want::Gnu),
    form(&["cp", "-R", "src/.", "data/"], Want::Gnu),
    timed(&["cp", "-a", "src", "copy"], Want::Gnu),
    timed(&["cp", "-a", "src/.", "data/"], Want::Gnu),
    timed(&["cp", "-rp", "src", "copy"], Want::Gnu),
    timed(&["cp", "-dR", "src", "copy"], Want::Gnu),
    timed(&["cp", "-p", "src/a.txt", "data/"], Want::Gnu),
    form(&["cp", "-rL", "src", "copy"], Want::Gnu),
    form(&["cp", "certs/*.key", "data/"], Want::Gnu),
    form(&["cp", "-n", "src/a.txt", "src/run.sh"], Want::Gnu),
    form(&["cp", "-u", "old/new.txt", "src/a.txt"], Want::Gnu),
    form(&["cp", "-u", "src/a.txt", "old/new.txt"], Want::Gnu),
    form(&["cp", "-f", "src/a.txt", "src/run.sh"], Want::Gnu),
    form(&["cp", "src/sub", "copy"], Want::Refused),
    form(&["cp", "-i", "src/a.txt", "copy.txt"], Want::Refused),
    verbose(&["cp", "-v", "src/a.txt", "copy.txt"]),
    form(&["chown", "1001:1001", "src/a.txt"], Want::Gnu),
    form(&["chown", "-R", "1001:2000", "data"], Want::Gnu),
    form(&["chown", "-R", "1001:1001", "src"], Want::Gnu),
    form(&["chown", ":2000", "src/a.txt"], Want::Gnu),
    form(&["chown", "1001.2000", "src/a.txt"], Want::Gnu),
    form(&["chown", "-h", "1001", "src/link"], Want::Gnu),
    form(&["chown", "1001", "certs/*.key"], Want::Gnu),
    form(&["chown", "-R", "1001:", "data"], Want::Busybox),
    form(&["chmod", "600", "certs/tls.key"], Want::Gnu),
    form(&["chmod", "-R", "u=rwX,g=rX,o=", "src"], Want::Gnu),
    form(&["chmod", "-R", "0775", "data"], Want::Gnu),
    form(&["chmod", "g+s", "src/sub"], Want::Gnu),
    form(&["chmod", "+x", "src/a.txt"], Want::Gnu),
    form(&["chmod", "600", "certs/*.key"], Want::Gnu),
    form(&["chmod", "-R", "go-rwx", "src/link"], Want::Differs),
    verbose(&["chmod", "-v", "640", "src/a.txt"]),
    form(&["mkdir", "-p", "data/a/b/c"], Want::Gnu),
    form(&["mkdir", "-p", "-m", "0700", "private"], Want::Gnu),
    form(&["mkdir", "fresh"], Want::Gnu),
    form(&["mkdir", "src"], Want::Gnu),
    form(&["mkdir", "-p", "src"], Want::Gnu),
    verbose(&["mkdir", "-pv", "data/x/y"]),
    form(&["ln", "-s", "src/a.txt", "lnk"], Want::Gnu),
    form(&["ln", "-sf", "run.sh", "src/link"], Want::Gnu),
    form(&["ln", "-sfn", "data", "current"], Want::Gnu),
    form(&["ln", "src/a.txt", "hard"], Want::Gnu),
    form(&["ln", "-s", "old/*.jar", "data/"], Want::Gnu),
    form(&["ln", "-s", "a.txt", "src/link"], Want::Differs),
    verbose(&["ln", "-sv", "src/a.txt", "lnk"]),
    form(&["touch", "fresh"], Want::Gnu),
    form(&["touch", "-c", "missing"], Want::Gnu),
    timed(&["touch", "-d", "2021-05-06 07:08:09", "src/a.txt"], Want::Gnu),
    timed(&["touch", "-t", "202105060708.09", "src/a.txt"], Want::Gnu),
    timed(&["touch", "-r", "old/new.txt", "src/a.txt"], Want::Gnu),
    timed(&["touch", "-h", "-d", "2021-05-06", "src/link"], Want::Gnu),
    form(&["touch", "-d", "yesterday", "src/a.txt"], Want::Refused),
    form(&["rm", "src/a.txt"], Want::Gnu),
    form(&["rm", "-f", "missing"], Want::Gnu),
    form(&["rm", "missing"], Want::Gnu),
    form(&["rm", "-r", "src"], Want::Gnu),
    form(&["rm", "-rf", "old/*.jar"], Want::Gnu),
    form(&["rm", "-rf", "src/link"], Want::Gnu),
    form(&["rm", "src/sub"], Want::Gnu),
    form(&["rm", "-d", "data/lost+found"], Want::Gnu),
    form(&["rm", "-rf", "data/*"], Want::Gnu),
    form(&["rm", "-rf", "."], Want::Refused),
    verbose(&["rm", "-v", "src/a.txt"]),
    form(&["mv", "src/a.txt", "moved.txt"], Want::Gnu),
    form(&["mv", "src", "moved"], Want::Gnu),
    form(&["mv", "old/*.jar", "data/"], Want::Gnu),
    form(&["mv", "-n", "src/a.txt", "src/run.sh"], Want::Gnu),
    form(&["mv", "-f", "src/run.sh", "src/a.txt"], Want::Gnu),
    form(&["mv", "-T", "src/sub", "data/db"], Want::Gnu),
    verbose(&["mv", "-v", "src/a.txt", "moved.txt"]),
];

/// The times of the fixture (2020-01-01): a time kept shows as itself, a new one as `now`.
const FIXTURE_TIME: i64 = 1_577_836_800;

/// The tree every form runs on, made afresh for each run.
fn fixture(root: &Path) {
    let write = |rel: &str, text: &str, mode: u32| {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    write("src/a.txt", "a\n", 0o644);
    write("src/run.sh", "#!/bin/sh\n", 0o755);
    write("src/.hidden", "h\n", 0o600);
    write("src/sub/b.txt", "b\n", 0o640);
    std::os::unix::fs::symlink("a.txt", root.join("src/link")).unwrap();
    write("certs/tls.key", "k\n", 0o600);
    write("certs/ca.key", "c\n", 0o600);
    write("certs/tls.crt", "t\n", 0o644);
    write("certs/.old.key", "o\n", 0o600);
    write("data/db/x", "x\n", 0o644);
    std::fs::create_dir(root.join("data/lost+found")).unwrap();
    write("old/a.jar", "1\n", 0o644);
    write("old/b.jar", "2\n", 0o644);
    write("old/new.txt", "n\n", 0o644);
    std::fs::set_permissions(root.join("src/sub"), std::fs::Permissions::from_mode(0o750)).unwrap();
    // Every entry at the fixture time; old/new.txt a day later (for -u and -r).
    let out = Command::new("find").arg(root).args(["-exec", "touch", "-h", "-d", "2020-01-01T00:00:00Z", "{}", "+"]).output().unwrap();
    assert!(out.status.success());
    let out = Command::new("touch").args(["-d", "2020-01-02T00:00:00Z"]).arg(root.join("old/new.txt")).output().unwrap();
    assert!(out.status.success());
}

/// The tree as `find` lists it, with modification times when asked.
fn snapshot(root: &Path, times: bool) -> String {
    let out = Command::new("find").arg(".").args(["-printf", "%p %m %u %g %y %l %T@\n"]).current_dir(root).output().unwrap();
    let mut lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let (rest, time) = line.rsplit_once(' ').unwrap();
            if !times {
                return rest.to_owned();
            }
            let secs: f64 = time.parse().unwrap();
            // A time the form kept (the fixture's, a day later, or one it was told) shows
            // as itself; a time of the run as `now`.
            if (secs as i64) < FIXTURE_TIME + 2 * 365 * 86_400 { format!("{rest} {time}") } else { format!("{rest} now") }
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

/// What one tool did with a form.
#[derive(Debug)]
struct Run {
    code: i64,
    tree: String,
    lines: Vec<String>,
    stderr: String,
}

/// Runs a form with `tool` (`gnu`, `busybox`, `podinit`) on a fresh fixture.
fn run(tool: &str, form: &Form, links: &Path) -> Run {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let quoted: Vec<String> =
        form.words[1..].iter().map(|w| if w.contains(['*', '?', '[']) { (*w).to_owned() } else { format!("'{w}'") }).collect();
    let out = match tool {
        "gnu" => Command::new("/bin/sh")
            .args(["-c", &format!("/usr/bin/{} {}", form.words[0], quoted.join(" "))])
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .output(),
        "busybox" => Command::new("/bin/sh")
            .args(["-c", &format!("/bin/busybox {} {}", form.words[0], quoted.join(" "))])
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .output(),
        _ => Command::new(links.join(form.words[0])).args(&form.words[1..]).current_dir(dir.path()).env_clear().output(),
    }
    .unwrap();
    let out = Outcome::from_output(out);
    // GNU's mkdir -v names itself as invoked (`/usr/bin/mkdir: created …`); in a pod, `mkdir`.
    let mut lines: Vec<String> = out.stdout.lines().map(|l| l.trim_start_matches("/usr/bin/").to_owned()).collect();
    lines.sort();
    Run { code: out.code, tree: snapshot(dir.path(), form.times), lines, stderr: out.stderr }
}

fn same(a: &Run, b: &Run, form: &Form) -> bool {
    a.code == b.code && a.tree == b.tree && (!form.lines || a.lines == b.lines)
}

/// Links named after the applets, as the image has them.
fn applet_links() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for applet in ["cp", "chown", "chmod", "mkdir", "ln", "touch", "rm", "mv"] {
        std::os::unix::fs::symlink(bin(), dir.path().join(applet)).unwrap();
    }
    dir
}

#[test]
fn each_form_does_what_gnu_or_busybox_does_or_is_refused_with_a_hint() {
    let links = applet_links();
    let mut table = vec!["| form | GNU coreutils | busybox | podinit |".to_owned(), "|---|---|---|---|".to_owned()];
    let mut wrong = Vec::new();
    let unchanged = {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path());
        (snapshot(dir.path(), false), snapshot(dir.path(), true))
    };
    for form in FORMS {
        let gnu = run("gnu", form, links.path());
        let busybox = run("busybox", form, links.path());
        let podinit = run("podinit", form, links.path());
        let as_gnu = same(&podinit, &gnu, form);
        let as_busybox = same(&podinit, &busybox, form);
        let nothing_changed = &podinit.tree == if form.times { &unchanged.1 } else { &unchanged.0 };
        let (cell, ok) = match form.want {
            Want::Gnu => ("as GNU".to_owned(), as_gnu),
            Want::Busybox => ("as busybox".to_owned(), as_busybox && !as_gnu),
            Want::Refused => {
                // The error line, and its hint when there is one.
                let said: Vec<&str> = podinit
                    .stderr
                    .lines()
                    .filter_map(|l| l.split_once(": error: ").or_else(|| l.split_once(": hint: ")).map(|(_, m)| m))
                    .collect();
                let refused = podinit.code == 2 && nothing_changed && !said.is_empty();
                (format!("exit 2, nothing changed: {}", said.join("; ")), refused)
            }
            Want::Differs => ("differs: see below".to_owned(), !as_gnu),
        };
        if !ok {
            wrong.push(format!(
                "{}: wanted {:?}\n  gnu: {gnu:?}\n  busybox: {busybox:?}\n  podinit: {podinit:?}",
                form.words.join(" "),
                form.want
            ));
        }
        let peer = |run: &Run, is_gnu: bool| {
            let mut cell = format!("exit {}", run.code);
            if !is_gnu {
                cell.push_str(if same(run, &gnu, form) {
                    ", as GNU"
                } else if run.tree == gnu.tree {
                    ", GNU's files"
                } else {
                    ", other files"
                });
            }
            cell
        };
        let words: Vec<String> = form.words.iter().map(|w| if w.contains(' ') { format!("'{w}'") } else { (*w).to_owned() }).collect();
        table.push(format!(
            "| `{}` | {} | {} | {} |",
            words.join(" ").replace('|', "\\|"),
            peer(&gnu, true),
            peer(&busybox, false),
            cell.replace('|', "\\|")
        ));
    }
    assert!(wrong.is_empty(), "{} of {} forms are not as wanted:\n{}", wrong.len(), FORMS.len(), wrong.join("\n"));
    let table = table.join("\n");
    let docs = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/volume.md")).unwrap();
    let (begin, end) = ("<!-- forms: generated by tests/it/dropin.rs -->\n", "\n<!-- forms: end -->");
    let shown = docs.split_once(begin).and_then(|(_, rest)| rest.split_once(end)).map(|(table, _)| table);
    if shown != Some(table.as_str()) {
        let fresh = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dropin-table.md");
        std::fs::write(&fresh, &table).unwrap();
        panic!("docs/volume.md's table of forms is not what the runs show: put {} between its markers", s(&fresh));
    }
}
