//! `render` on real files: Go templates and envsubst, strictness (nothing written on any
//! error), unchanged output left alone (inode and mtime), the kubelet's ConfigMap layout as
//! SRC, `.Data` from a directory, and links planted in DEST.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

use crate::support::cmd::s;
use crate::support::{Outcome, Podinit};

fn render(env: &[(&str, &str)], args: &[&str]) -> Outcome {
    let mut cmd = Podinit::new().arg("render").args(args);
    for (k, v) in env {
        cmd = cmd.env(k, *v);
    }
    cmd.run()
}

/// A ConfigMap volume as the kubelet writes it: a timestamped directory, `..data` linking to
/// it, and each key a link through `..data`.
fn configmap(dir: &Path, files: &[(&str, &str)]) {
    let stamp = dir.join("..2026_12_02_06_00_00.000000001");
    std::fs::create_dir_all(&stamp).unwrap();
    for (name, text) in files {
        std::fs::write(stamp.join(name), text).unwrap();
        std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).unwrap();
    }
    std::os::unix::fs::symlink(stamp.file_name().unwrap(), dir.join("..data")).unwrap();
}

#[test]
fn go_template_renders_once_and_a_rerun_leaves_the_file_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dest) = (tmp.path().join("app.yaml.tmpl"), tmp.path().join("app.yaml"));
    std::fs::write(
        &src,
        "db: postgres://{{ .Env.DB_USER }}@{{ env \"DB_HOST\" }}:{{ .Env.DB_PORT | default \"5432\" }}/app\n\
         hosts:\n{{- range split \",\" .Env.HOSTS }}\n  - {{ . | quote }}\n{{- end }}\n",
    )
    .unwrap();
    let env = [("DB_USER", "app"), ("DB_HOST", "db.internal"), ("HOSTS", "a,b")];
    render(&env, &["--mode", "0640", s(&src), s(&dest)]).code(0).stderr_has("render: 1 written, 0 unchanged in");
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "db: postgres://app@db.internal:5432/app\nhosts:\n  - \"a\"\n  - \"b\"\n");
    let first = std::fs::metadata(&dest).unwrap();
    assert_eq!(first.mode() & 0o7777, 0o640);
    std::thread::sleep(std::time::Duration::from_millis(20));
    render(&env, &["--mode", "0640", s(&src), s(&dest)]).code(0).stderr_has("render: 0 written, 1 unchanged in");
    let again = std::fs::metadata(&dest).unwrap();
    assert_eq!(
        (again.ino(), again.mtime_nsec(), again.mtime()),
        (first.ino(), first.mtime_nsec(), first.mtime()),
        "a rerun rewrote the file"
    );
    // A changed value replaces the file (a new inode: renamed into place, never rewritten in place).
    render(&[("DB_USER", "app"), ("DB_HOST", "db2"), ("HOSTS", "a")], &["--mode", "0640", s(&src), s(&dest)]).code(0);
    let changed = std::fs::metadata(&dest).unwrap();
    assert_ne!(changed.ino(), first.ino());
    assert!(std::fs::read_to_string(&dest).unwrap().contains("@db2:5432"));
}

#[test]
fn a_missing_value_fails_with_file_line_and_name_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("app.conf");
    std::fs::write(&src, "listen 8080\nupstream {{ .Env.BACKEND }}\n").unwrap();
    let dest = tmp.path().join("out.conf");
    let termination = tmp.path().join("termination");
    let out = render(&[], &["--termination-log", s(&termination), s(&src), s(&dest)]);
    let why = format!("{}:2: map has no entry for key \"BACKEND\" (in .Env.BACKEND)", src.display());
    out.code(2).stderr_has(&why);
    assert!(std::fs::read_to_string(&termination).unwrap().contains(&why), "kubectl describe would not say why");
    std::fs::remove_file(&termination).unwrap();
    assert!(!dest.exists(), "DEST was created on a failed render");
    // An existing DEST is left exactly as it was.
    std::fs::write(&dest, "old\n").unwrap();
    render(&[], &[s(&src), s(&dest)]).code(2);
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "old\n");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 2, "a temp file was left behind");
    // envsubst is as strict, and --allow-missing is the way out.
    std::fs::write(&src, "a\nb ${REGION:?set REGION to the cloud region}\n").unwrap();
    render(&[], &["--syntax", "envsubst", s(&src), s(&dest)]).code(2).stderr_has(":2: REGION: set REGION to the cloud region");
    std::fs::write(&src, "x=$UNSET.\n").unwrap();
    render(&[], &["--syntax", "envsubst", "--allow-missing", s(&src), s(&dest)]).code(0);
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "x=.\n");
    // A template that does not parse is a usage error too, naming the line.
    std::fs::write(&src, "ok\n{{ if .Env.X }}\n").unwrap();
    render(&[], &[s(&src), s(&dest)]).code(2).stderr_has(":2: unexpected EOF: {{if}} without {{end}}");
}

#[test]
fn envsubst_with_a_variable_list_leaves_nginx_variables_alone() {
    let nginx = "server {\n  listen ${PORT};\n  location / { proxy_pass http://$BACKEND; proxy_set_header Host $host; }\n}\n";
    let out = Podinit::new()
        .args(["render", "--syntax", "envsubst", "--variables", "$PORT ${BACKEND}", "-", "-"])
        .env("PORT", "8080")
        .env("BACKEND", "api:9000")
        .stdin(nginx)
        .run();
    out.code(0).stdout_is("server {\n  listen 8080;\n  location / { proxy_pass http://api:9000; proxy_set_header Host $host; }\n}\n");
    // Without the list every $NAME must be set: $host is not, and the error says so.
    Podinit::new()
        .args(["render", "--syntax", "envsubst", "-", "-"])
        .env("PORT", "8080")
        .env("BACKEND", "b")
        .stdin(nginx)
        .run()
        .code(2)
        .stderr_has("stdin:3: variable \"host\" is not set");
}

#[test]
fn a_configmap_directory_renders_into_a_directory_all_or_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dest) = (tmp.path().join("templates"), tmp.path().join("config"));
    std::fs::create_dir_all(&src).unwrap();
    configmap(
        &src,
        &[
            ("_helpers.tpl", "{{ define \"url\" }}https://{{ .Env.HOST }}{{ end }}"),
            ("app.yaml.tmpl", "url: {{ template \"url\" . }}/app\n"),
            ("web.yaml.tmpl", "url: {{ template \"url\" . }}/web\n"),
        ],
    );
    render(&[("HOST", "example.org")], &["--strip-suffix", ".tmpl", s(&src), s(&dest)]).code(0).stderr_has("2 written");
    let mut names: Vec<String> = std::fs::read_dir(&dest).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["app.yaml", "web.yaml"], "the kubelet's ..data entries and the _helpers partial are not outputs");
    assert_eq!(std::fs::read_to_string(dest.join("web.yaml")).unwrap(), "url: https://example.org/web\n");
    // One template failing means no file changes at all.
    std::fs::write(src.join("..data/web.yaml.tmpl"), "url: {{ .Env.NOPE }}\n").unwrap();
    render(&[("HOST", "changed.org")], &["--strip-suffix", ".tmpl", s(&src), s(&dest)]).code(2).stderr_has("web.yaml.tmpl:1:");
    assert_eq!(std::fs::read_to_string(dest.join("app.yaml")).unwrap(), "url: https://example.org/app\n");
    // Two templates that would write one file: refused, not one silently over the other.
    let two = tmp.path().join("two");
    std::fs::create_dir_all(&two).unwrap();
    std::fs::write(two.join("a.conf"), "1").unwrap();
    std::fs::write(two.join("a.conf.tmpl"), "2").unwrap();
    render(&[], &["--strip-suffix", ".tmpl", s(&two), s(&tmp.path().join("two-out"))]).code(2).stderr_has("would both write a.conf");
    assert!(!tmp.path().join("two-out").exists(), "DEST was created on a failed render");
}

#[test]
fn links_planted_in_dest_never_send_output_outside() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dest, outside) = (tmp.path().join("t"), tmp.path().join("out"), tmp.path().join("outside"));
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/app.conf"), "x={{ .Env.X }}\n").unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("victim"), "victim\n").unwrap();
    // A directory below DEST planted as a link to outside: refused, nothing written there.
    std::fs::create_dir_all(&dest).unwrap();
    std::os::unix::fs::symlink(&outside, dest.join("sub")).unwrap();
    render(&[("X", "1")], &[s(&src), s(&dest)]).code(1).stderr_has("sub");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
    // DEST itself a link to a file outside: the link is replaced, the file it named is untouched.
    let single = tmp.path().join("single.conf");
    std::os::unix::fs::symlink(outside.join("victim"), &single).unwrap();
    render(&[("X", "2")], &[s(&src.join("sub/app.conf")), s(&single)]).code(0);
    assert!(std::fs::symlink_metadata(&single).unwrap().is_file());
    assert_eq!(std::fs::read_to_string(&single).unwrap(), "x=2\n");
    assert_eq!(std::fs::read_to_string(outside.join("victim")).unwrap(), "victim\n");
}

#[test]
fn data_dir_exposes_vault_fetch_output_and_a_bare_dest_name_works() {
    let tmp = tempfile::tempdir().unwrap();
    let secrets = tmp.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    // vault-fetch's layout: visible names linking into ..data.
    configmap(&secrets, &[("username", "app"), ("password", "s3cr3t")]);
    let src = tmp.path().join("dsn.tmpl");
    std::fs::write(&src, "postgres://{{ .Data.username }}:{{ .Data.password | urlquery }}@db/app\n").unwrap();
    let mut cmd = Podinit::new().args(["render", "--mode", "0600", "--data-dir", s(&secrets), s(&src), "dsn"]).command();
    cmd.current_dir(tmp.path());
    let out = Outcome::from_output(cmd.output().unwrap());
    out.code(0);
    assert!(!out.stderr.contains("s3cr3t"), "a secret reached the log: {}", out.stderr);
    assert_eq!(std::fs::read_to_string(tmp.path().join("dsn")).unwrap(), "postgres://app:s3cr3t@db/app\n");
    assert_eq!(std::fs::metadata(tmp.path().join("dsn")).unwrap().permissions().mode() & 0o777, 0o600);
    // A binary file next to the secrets (a keystore) fails only a template that uses it.
    std::fs::write(secrets.join("keystore.p12"), [0xff, 0xfe, 0x00]).unwrap();
    render(&[], &["--data-dir", s(&secrets), s(&src), s(&tmp.path().join("y"))]).code(0);
    std::fs::write(&src, "{{ index .Data \"keystore.p12\" }}").unwrap();
    render(&[], &["--data-dir", s(&secrets), s(&src), s(&tmp.path().join("y"))]).code(2).stderr_has("keystore.p12 is not UTF-8 text");
    // A missing key in .Data names the key, never a value.
    std::fs::write(&src, "{{ .Data.token }}").unwrap();
    let out = render(&[], &["--data-dir", s(&secrets), s(&src), s(&tmp.path().join("x"))]);
    out.code(2).stderr_has("map has no entry for key \"token\" (in .Data.token)");
    assert!(!out.stderr.contains("s3cr3t"));
}

/// Inputs charts feed envsubst, and the edges GNU gettext's envsubst passes through as they
/// are (its envsubst.c reads `$NAME` and `${NAME}` only).
const ENVSUBST_INPUTS: &[&[u8]] = &[
    b"listen $PORT;\nserver_name ${HOST};\n",
    b"proxy_pass http://$BACKEND:$PORT$REQUEST_PATH;",
    b"$HOST$PORT${HOST}${PORT}",
    b"a ${HOST b",
    b"${}",
    b"${ HOST }",
    b"${1A} $1 $9x",
    b"$$ $$HOST $$$HOST",
    b"$",
    b"end$",
    b"$-x $@ $* $# $? $!",
    b"${HOST:-fallback} ${HOST-x} ${HOST:+y} ${#HOST}",
    b"${HOST}}} {{$HOST}}",
    b"\xc3\xa9t\xc3\xa9 $\xc3\xa9t\xc3\xa9 ${\xc3\xa9}",
    b"\xff\xfe $HOST \x80\n",
    b"$HOST_NAME $HOST-NAME $HOST.NAME ${HOST}_NAME",
    b"$_ $_X ${_} ${__}",
    b"$EMPTY|${EMPTY}|",
    b"tab\t$HOST\r\n$PORT\r\n",
    b"",
    b"no variables at all\n",
    b"$HOST\n$HOST\n$HOST\n",
    b"${HOST",
    b"$ {HOST}",
    b"\\$HOST \\${PORT}",
    b"'$HOST' \"${PORT}\" `$HOST`",
    b"${HOST}${",
    b"$HOSTx ${HOSTx}",
    b"x=${VALUE_WITH_DOLLAR}",
    b"${MULTI}",
];

const ENVSUBST_ENV: &[(&str, &str)] = &[
    ("HOST", "db.example"),
    ("PORT", "5432"),
    ("BACKEND", "api"),
    ("REQUEST_PATH", "/v1"),
    ("HOST_NAME", "hn"),
    ("HOSTx", "hx"),
    ("_", "underscore"),
    ("_X", "ux"),
    ("__", "uu"),
    ("EMPTY", ""),
    ("VALUE_WITH_DOLLAR", "a$HOST${PORT}b"),
    ("MULTI", "line 1\nline 2"),
];

fn gnu_envsubst(input: &[u8], args: &[&str]) -> Outcome {
    let mut cmd = std::process::Command::new("envsubst");
    cmd.args(args).env_clear().env("PATH", "/usr/bin:/bin");
    for (k, v) in ENVSUBST_ENV {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("GNU envsubst (gettext-base; scripts/ensure-tools installs it)");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input).unwrap();
    Outcome::from_output(child.wait_with_output().unwrap())
}

fn podinit_envsubst(input: &[u8], args: &[&str]) -> Outcome {
    let mut cmd = Podinit::new().argv0("envsubst").args(args).stdin(input.to_vec());
    for (k, v) in ENVSUBST_ENV {
        cmd = cmd.env(k, *v);
    }
    cmd.run()
}

#[test]
fn an_envsubst_link_writes_what_gnu_envsubst_writes() {
    // Every input, with every variable it names set: the same bytes out, with and without a
    // SHELL-FORMAT (GNU's forms: `$A ${B}`, a list with other words, words without `$`).
    for input in ENVSUBST_INPUTS {
        for args in [&[][..], &["$HOST ${PORT}"], &["HOST, and $BACKEND only"], &["HOST PORT"]] {
            let gnu = gnu_envsubst(input, args);
            let ours = podinit_envsubst(input, args);
            assert_eq!(gnu.code, 0, "GNU envsubst {args:?} on {:?}: {}", String::from_utf8_lossy(input), gnu.stderr);
            ours.code(0);
            assert_eq!(ours.stdout, gnu.stdout, "envsubst {args:?} on {:?}", String::from_utf8_lossy(input));
        }
    }
    // -v lists what SHELL-FORMAT names, as GNU does.
    let format = "$HOST ${PORT} $HOST $1 ${BAD ${OK}";
    assert_eq!(podinit_envsubst(b"", &["-v", format]).stdout, gnu_envsubst(b"", &["-v", format]).stdout);
    // The one difference: a variable that is not set. GNU writes an empty string; podinit
    // refuses (exit 2, nothing written) unless --allow-missing, which then writes what GNU does.
    let input = b"host=$HOST missing=$NOT_SET_ANYWHERE end\n";
    let gnu = gnu_envsubst(input, &[]);
    podinit_envsubst(input, &[]).code(2).stdout_is("").stderr_has("stdin:1: NOT_SET_ANYWHERE is not set").stderr_has("--allow-missing");
    assert_eq!(podinit_envsubst(input, &["--allow-missing"]).stdout, gnu.stdout);
    // Not listed in SHELL-FORMAT: not a variable, so not missing either.
    podinit_envsubst(input, &["$HOST"]).code(0).stdout_is("host=db.example missing=$NOT_SET_ANYWHERE end\n");
}

#[test]
fn envsubst_input_past_its_budget_is_refused_and_nothing_is_written() {
    let big = vec![b'x'; (64 << 20) + 1];
    podinit_envsubst(&big, &[]).code(2).stdout_is("").stderr_has("stdin is larger than 64 MiB");
}
