//! The multi-call contract: applets, links, help, version, exit codes, global settings.

use std::os::unix::fs::MetadataExt as _;
use std::time::{Duration, Instant};

use crate::support::{Podinit, cmd::bin};

#[test]
fn list_prints_the_applets_one_per_line() {
    Podinit::new().arg("--list").run().code(0).stdout_is(
        "certs\nchmod\nchown\ncp\nenvsubst\ngit-clone\nhttp-get\nln\nmigrate\nmkdir\nmv\nrender\nrm\ns3-get\nsysctl\nsysfs\ntouch\ntruststore\nvault-fetch\nwait-for\n",
    );
}

#[test]
fn version_and_help() {
    let out = Podinit::new().arg("--version").run();
    // The architecture the binary was built for: the host's, or PODINIT_TEST_ARCH's when the
    // run tests another (scripts/test's arm64 run under qemu).
    let arch = std::env::var("PODINIT_TEST_ARCH").unwrap_or_else(|_| std::env::consts::ARCH.to_owned());
    out.code(0).stdout_is(&format!("podinit {} ({arch})\n", env!("CARGO_PKG_VERSION")));
    let out = Podinit::new().arg("--help").run();
    out.code(0);
    assert!(out.stdout.contains("Usage: podinit [OPTIONS] [APPLET]"), "{}", out.stdout);
    let list = Podinit::new().arg("--list").run();
    for applet in list.stdout.lines() {
        let out = Podinit::new().args([applet, "--help"]).run();
        out.code(0);
        assert!(out.stdout.contains(&format!("Usage: podinit {applet} [OPTIONS]")), "{}", out.stdout);
        assert!(out.stdout.contains("--timeout <DURATION>"), "global options belong to every applet:\n{}", out.stdout);
    }
}

#[test]
fn no_arguments_is_a_usage_error_with_help() {
    let out = Podinit::new().run();
    out.code(2);
    assert!(out.stderr.contains("Usage: podinit"), "{}", out.stderr);
}

#[test]
fn unknown_applet_exits_127_and_names_it() {
    let out = Podinit::new().args(["frobnicate", "x"]).run();
    out.code(127).stderr_has("podinit: error: unknown applet 'frobnicate'\n").stderr_has(
        "podinit: hint: applets in this build: certs, chmod, chown, cp, envsubst, git-clone, http-get, ln, migrate, mkdir, mv, render, rm, s3-get, sysctl, sysfs, touch, truststore, vault-fetch, wait-for",
    );
}

#[test]
fn usage_errors_exit_2_with_one_prefixed_error_line() {
    let out = Podinit::new().args(["sysctl", "--bogus"]).run();
    out.code(2);
    let errors: Vec<&str> = out.stderr.lines().filter(|l| l.contains("error:")).collect();
    assert_eq!(errors, ["podinit sysctl: error: unexpected argument '--bogus' found"], "{}", out.stderr);
    assert!(out.stderr.lines().all(|l| l.starts_with("podinit sysctl: ")), "every line is prefixed:\n{}", out.stderr);
}

#[test]
fn invalid_environment_values_are_usage_errors_not_defaults() {
    for (var, value, says) in [
        ("PODINIT_LOG_FORMAT", "xml", "invalid value 'xml'"),
        ("PODINIT_QUIET", "banana", "invalid value 'banana'"),
        ("PODINIT_TIMEOUT", "30", "'30' has no unit: write 30s"),
        ("PODINIT_SYSCTL_DRY_RUN", "maybe", "invalid value 'maybe'"),
    ] {
        let out = Podinit::new().env(var, value).args(["sysctl", "kernel.ostype"]).run();
        out.code(2).stderr_has(says);
        assert!(out.stdout.is_empty(), "{var}={value} must not run the applet");
    }
    // Valid boolish values are accepted.
    Podinit::new().env("PODINIT_QUIET", "yes").args(["sysctl", "kernel.ostype"]).run().code(0).stdout_is("kernel.ostype = Linux\n");
}

#[test]
fn install_makes_links_that_run_their_applet_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let hard = dir.path().join("hard");
    Podinit::new().args(["--install".as_ref(), hard.as_os_str()]).run().code(0);
    let link = hard.join("sysctl");
    assert_eq!(std::fs::metadata(&link).unwrap().ino(), std::fs::metadata(bin()).unwrap().ino(), "a hard link to the binary");
    Podinit::program(&link).args(["-n", "kernel.ostype"]).run().code(0).stdout_is("Linux\n");
    let again = Podinit::new().args(["--install".as_ref(), hard.as_os_str()]).run();
    again.code(0).stderr_has("already linked");

    let soft = dir.path().join("soft");
    Podinit::new().args(["--install".as_ref(), "-s".as_ref(), soft.as_os_str()]).run().code(0);
    assert_eq!(std::fs::read_link(soft.join("sysctl")).unwrap(), bin());
    Podinit::program(soft.join("sysctl")).args(["-n", "kernel.ostype"]).run().code(0).stdout_is("Linux\n");

    // Replacing an older podinit (a file with its marker) is atomic and leaves no temp files
    // behind. (Removed first: writing through the link would write into the binary.)
    std::fs::remove_file(soft.join("sysctl")).unwrap();
    std::fs::write(soft.join("sysctl"), b"older\0podinit multi-call binary\0build").unwrap();
    Podinit::new().args(["--install".as_ref(), "-s".as_ref(), soft.as_os_str()]).run().code(0);
    assert_eq!(std::fs::read_link(soft.join("sysctl")).unwrap(), bin());
    let mut names: Vec<String> = std::fs::read_dir(&soft).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    let listed = Podinit::new().arg("--list").run().stdout;
    assert_eq!(names, listed.lines().collect::<Vec<_>>(), "one link per applet and nothing else");
}

#[test]
fn argv0_selects_the_applet_with_one_leading_dash_stripped() {
    Podinit::new().argv0("sysctl").args(["-n", "kernel.ostype"]).run().code(0).stdout_is("Linux\n");
    Podinit::new().argv0("-sysctl").args(["-n", "kernel.ostype"]).run().code(0).stdout_is("Linux\n");
    Podinit::new().argv0("podinit-x86_64").args(["sysctl", "-n", "kernel.ostype"]).run().code(0).stdout_is("Linux\n");
}

#[test]
fn failures_write_the_termination_message() {
    let dir = tempfile::tempdir().unwrap();
    let term = dir.path().join("termination-log");
    // A usage error caught by the parser...
    Podinit::new().env("PODINIT_TERMINATION_LOG", term.as_os_str()).args(["sysctl", "--bogus"]).run().code(2);
    let text = std::fs::read_to_string(&term).unwrap();
    assert!(text.starts_with("podinit sysctl: unexpected argument '--bogus' found (exit 2)"), "{text}");
    // ...and one found by the applet.
    Podinit::new()
        .args(["--termination-log".as_ref(), term.as_os_str(), "sysctl".as_ref(), "net.core.no_such_key=1".as_ref()])
        .run()
        .code(2);
    let text = std::fs::read_to_string(&term).unwrap();
    assert!(text.starts_with("podinit sysctl: argument 1: unknown key 'net.core.no_such_key'"), "{text}");
    assert!(text.contains("\nhint: check the spelling"), "{text}");
    assert!(text.len() <= 1024);
}

#[test]
fn json_logs_are_one_object_per_line() {
    let out = Podinit::new().args(["--log-format", "json", "sysctl", "net.core.no_such_key=1"]).run();
    out.code(2);
    let lines = out.json_lines();
    let last = lines.last().unwrap();
    assert_eq!(last["level"], "error");
    assert_eq!(last["applet"], "sysctl");
    assert_eq!(last["kind"], "usage");
    assert_eq!(last["exit_code"], 2);
    assert!(last["message"].as_str().unwrap().contains("unknown key"));
}

#[test]
fn sigterm_stops_a_wait_with_143_promptly() {
    // --check --wait on a value no node has: a wait that only a signal (or deadline) ends.
    let child = Podinit::new()
        .args(["sysctl", "--check", "--wait", "--timeout", "5m", "kernel.pid_max=9223372036854775807"])
        .command()
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    assert!(crate::support::cmd::sigterm(&child));
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert!(stderr.contains("podinit sysctl: error: stopped by SIGTERM"), "{stderr}");
}

#[test]
fn deadline_ends_a_wait_with_124_naming_the_last_error() {
    let started = Instant::now();
    let out = Podinit::new().args(["sysctl", "--check", "--wait", "--timeout", "1500ms", "kernel.pid_max=9223372036854775807"]).run();
    out.code(124).stderr_has("gave up after").stderr_has("last error: kernel.pid_max is");
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
}

#[test]
fn steps_on_the_command_line_run_in_order_and_stop_at_the_first_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (term, ready, marker) = (dir.path().join("termination-log"), dir.path().join("ready"), dir.path().join("marker"));
    std::fs::write(&ready, "").unwrap();
    let file = |p: &std::path::Path| format!("file://{}", p.display());
    // All pass: the last step execs its command, `&&` after `--` included.
    let out = Podinit::new()
        .args([
            "--timeout",
            "5s",
            "sysctl",
            "kernel.ostype",
            "&&",
            "wait-for",
            &file(&ready),
            "--",
            "sh",
            "-c",
            "echo \"$0\" > \"$1\"",
            "&&",
        ])
        .arg(marker.as_os_str())
        .run();
    out.code(0).stdout_is("kernel.ostype = Linux\n");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "&&\n");
    assert!(
        out.stderr.contains("podinit sysctl: step 1/2 started") && out.stderr.contains("podinit wait-for: step 2/2 started"),
        "{}",
        out.stderr
    );
    std::fs::remove_file(&marker).unwrap();

    // The second step fails: its exit status (124), its name in the error and the
    // termination message, and the third step never runs.
    let missing = dir.path().join("missing");
    let out = Podinit::new()
        .args(["--termination-log".as_ref(), term.as_os_str()])
        .args([
            "sysctl",
            "kernel.ostype",
            "&&",
            "wait-for",
            "--timeout",
            "300ms",
            &file(&missing),
            "&&",
            "wait-for",
            &file(&ready),
            "--",
            "touch",
        ])
        .arg(marker.as_os_str())
        .run();
    out.code(124).stderr_has("podinit wait-for: error: step 2/3: 1 of 1 target not ready");
    assert!(!out.stderr.contains("step 3/3"), "{}", out.stderr);
    assert!(!marker.exists(), "the step after the failed one ran");
    let text = std::fs::read_to_string(&term).unwrap();
    assert!(text.starts_with("podinit wait-for: step 2/3: 1 of 1 target not ready"), "{text}");
    assert!(text.contains("(exit 124)"), "{text}");
}

#[test]
fn each_step_logs_and_times_out_by_its_own_options() {
    // Before the first applet: every step. After an applet: that step alone.
    let out = Podinit::new()
        .args(["--timeout", "10s", "sysctl", "kernel.ostype", "&&", "sysctl", "--log-format", "json", "kernel.ostype", "&&", "sysctl"])
        .args(["--quiet", "kernel.ostype"])
        .run();
    out.code(0);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(lines.iter().any(|l| l.starts_with("podinit sysctl: step 1/3 started")), "{}", out.stderr);
    assert!(lines.iter().any(|l| l.starts_with('{') && l.contains("step 2/3 started")), "step 2 logs JSON:\n{}", out.stderr);
    assert!(!lines.iter().any(|l| l.contains("step 3/3")), "step 3 is quiet:\n{}", out.stderr);
    assert!(!lines.iter().any(|l| l.starts_with("podinit sysctl:") && l.contains("step 2/3 done")), "{}", out.stderr);
}

#[test]
fn every_step_is_checked_before_the_first_runs() {
    // The first step would wait 5 s; the typo in the second fails the run at once.
    let started = Instant::now();
    let out = Podinit::new().args(["wait-for", "--timeout", "5s", "tcp://127.0.0.1:1", "&&", "sysctl", "--bogus"]).run();
    out.code(2).stderr_has("podinit sysctl: error: step 2/2: unexpected argument '--bogus' found");
    assert!(!out.stderr.contains("started"), "{}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(4), "the first step ran");
    // An unknown applet in a step keeps its own exit status.
    Podinit::new().args(["sysctl", "kernel.ostype", "&&", "nope"]).run().code(127).stderr_has("step 2/2: unknown applet 'nope'");
    Podinit::new().args(["sysctl", "kernel.ostype", "&&"]).run().code(2).stderr_has("step 2 of the command line is empty");
}

#[test]
fn steps_from_a_yaml_file_as_a_configmap_mounts_it() {
    let dir = tempfile::tempdir().unwrap();
    let steps = dir.path().join("steps.yaml");
    std::fs::write(
        &steps,
        "# podinit steps\nsteps:\n  - name: kernel\n    args: [sysctl, kernel.ostype]\n  - [wait-for, --timeout, 1s, 'tcp://127.0.0.1:1']\n  - [sysctl, kernel.osrelease]\n",
    )
    .unwrap();
    let out = Podinit::new().args(["--log-format".as_ref(), "json".as_ref(), "--steps".as_ref(), steps.as_os_str()]).run();
    out.code(124);
    assert_eq!(out.stdout, "kernel.ostype = Linux\n", "the third step did not run");
    let last = out.json_lines().pop().unwrap();
    assert_eq!(last["applet"], "wait-for");
    assert!(last["message"].as_str().unwrap().starts_with("step 2/3: "), "{last}");
    let first = &out.json_lines()[0];
    assert_eq!(first["message"], "step 1/3 \"kernel\" started");

    std::fs::write(&steps, "steps:\n  - [sysctl, kernel.ostype]\n  - sysctl kernel.osrelease\n").unwrap();
    Podinit::new()
        .args(["--steps".as_ref(), steps.as_os_str()])
        .run()
        .code(2)
        .stderr_has("step 2: is 'sysctl kernel.osrelease', not a list of arguments");
    Podinit::new()
        .args(["--steps", "/nonexistent/steps.yaml"])
        .run()
        .code(2)
        .stderr_has("cannot read the steps file /nonexistent/steps.yaml");
    Podinit::new()
        .args(["--steps".as_ref(), steps.as_os_str(), "sysctl".as_ref()])
        .run()
        .code(2)
        .stderr_has("--steps and the applet 'sysctl'");
}

#[test]
fn boolean_variables_take_the_same_values_in_every_applet() {
    // s3-get took only true/false: `1` and `yes` were refused.
    for yes in ["1", "yes", "true", "on"] {
        let out = Podinit::new().env("PODINIT_S3_EXTRACT", yes).args(["s3-get", "s3://b/prefix/", "/tmp/podinit-never"]).run();
        out.code(2).stderr_has("is a prefix; --extract and --sha256 take one object");
        let out = Podinit::new()
            .env("PODINIT_SYSCTL_CHECK", yes)
            .env("PODINIT_SYSCTL_DRY_RUN", yes)
            .args(["sysctl", "kernel.ostype=Linux"])
            .run();
        out.code(2).stderr_has("cannot be used with");
    }
    for applet_var in ["PODINIT_S3_FORCE", "PODINIT_SYSCTL_DRY_RUN", "PODINIT_WAIT_FOR_ONCE", "PODINIT_MIGRATE_STRICT", "PODINIT_QUIET"] {
        let applet = match applet_var {
            "PODINIT_S3_FORCE" => "s3-get",
            "PODINIT_WAIT_FOR_ONCE" => "wait-for",
            "PODINIT_MIGRATE_STRICT" => "migrate",
            _ => "sysctl",
        };
        let args: &[&str] = if applet == "migrate" { &["migrate"] } else { &[applet, "x"] };
        Podinit::new().env(applet_var, "maybe").args(args).run().code(2).stderr_has("'maybe'");
    }
}

/// The text of README.md and every page of docs/.
fn all_docs() -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(root.join("README.md")).unwrap();
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            text.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
    text
}

#[test]
fn every_option_and_variable_is_documented_outside_help() {
    let docs = all_docs();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut missing = Vec::new();
    let applets = Podinit::new().arg("--list").run().stdout;
    for applet in std::iter::once("").chain(applets.lines()) {
        let args: Vec<&str> = if applet.is_empty() { vec!["--help"] } else { vec![applet, "--help"] };
        let help = Podinit::new().args(args).env("COLUMNS", "1000").run().stdout;
        let page = if applet.is_empty() { docs.clone() } else { applet_page(root, applet) };
        // Words of the help text, without an example's own command after a `--`.
        let words = help.lines().flat_map(|line| {
            line.split(" -- ")
                .next()
                .unwrap_or_default()
                .split(|c: char| c.is_whitespace() || matches!(c, ',' | '[' | ']' | '(' | ')' | '=' | '/' | '`' | '\''))
        });
        for word in words {
            let word = word.trim_end_matches(['.', ':', ';']);
            let is_flag = word.starts_with("--") && word.len() > 2 && word[2..].chars().all(|c| c.is_ascii_lowercase() || c == '-');
            let is_var = word.starts_with("PODINIT_") || ((word.starts_with("VAULT_") || word.starts_with("BAO_")) && word.len() > 6);
            if word == "--help" || word == "--version" {
                continue;
            }
            if is_flag && !mentions(&page, word) && !mentions(&docs, word) {
                missing.push(format!("{applet} {word}"));
            }
            if is_var && !mentions(&docs, word) {
                missing.push(format!("{applet} {word}"));
            }
        }
    }
    missing.sort();
    missing.dedup();
    assert!(missing.is_empty(), "documented only in --help: {missing:?}");
}

/// An applet's own page, `docs/APPLET.md`, or its section (`## \`APPLET\``) of a page shared
/// by several applets (docs/volume.md, docs/certs.md).
fn applet_page(root: &std::path::Path, applet: &str) -> String {
    if let Ok(page) = std::fs::read_to_string(root.join(format!("docs/{applet}.md"))) {
        return page;
    }
    let heading = format!("\n## `{applet}`");
    for shared in ["docs/volume.md", "docs/certs.md", "docs/render.md"] {
        let shared = std::fs::read_to_string(root.join(shared)).unwrap();
        if let Some(start) = shared.find(&heading) {
            let rest = &shared[start + heading.len()..];
            return rest[..rest.find("\n## ").unwrap_or(rest.len())].to_owned();
        }
    }
    panic!("no docs/{applet}.md, nor a section {heading:?} in docs/volume.md, docs/certs.md or docs/render.md")
}

/// Whether `text` has `word` as a whole word (not a prefix of a longer flag or variable).
fn mentions(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| !text[i + word.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
}
