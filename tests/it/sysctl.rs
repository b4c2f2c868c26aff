//! `podinit sysctl` against the real kernel, never changing the host.
//!
//! Pod-scoped keys are changed only inside fresh namespaces: `unshare --net --ipc` around
//! the dev binary, or a container from the podinit image with a writable /proc/sys
//! (`systempaths=unconfined` + `CAP_SYS_ADMIN`, what a privileged init container gets).
//! Node-wide keys are only read, checked, or "set" to values the never-lower rule keeps.

use std::path::Path;

use testcontainers::core::Mount;
use testcontainers::{ContainerRequest, GenericImage, ImageExt as _};

use crate::support::cmd::host_sysctl;
use crate::support::docker::{podinit_image, run_to_exit};
use crate::support::{Outcome, Podinit};

const UNSHARE: &[&str] = &["/usr/bin/unshare", "--net", "--ipc"];

fn in_fresh_namespaces() -> Podinit {
    Podinit::new().wrapped(UNSHARE)
}

/// Runs a shell script in fresh net+IPC namespaces, `$0` being the podinit binary.
fn in_namespace_script(script: &str) -> Outcome {
    crate::support::cmd::unshared(&["--net", "--ipc"], script)
}

#[test]
fn sets_pod_scoped_keys_exactly_and_verifies() {
    let before = host_sysctl("net/core/somaxconn");
    let out = in_fresh_namespaces()
        .args([
            "--log-format",
            "json",
            "sysctl",
            "net.core.somaxconn=1234",
            "net.ipv4.tcp_rmem=4096 131072 6291456",
            "kernel.msgmax=16384",
            "net.core.somaxconn",
            "net.ipv4.tcp_rmem",
        ])
        .run();
    // Writes echo `key = value` (the value the kernel holds), then the two reads.
    out.code(0).stdout_is(
        "net.core.somaxconn = 1234\nnet.ipv4.tcp_rmem = 4096\t131072\t6291456\nkernel.msgmax = 16384\n\
         net.core.somaxconn = 1234\nnet.ipv4.tcp_rmem = 4096\t131072\t6291456\n",
    );
    let lines = out.json_lines();
    let actions: Vec<(&str, &str)> = lines.iter().filter_map(|l| Some((l["key"].as_str()?, l["action"].as_str()?))).collect();
    assert_eq!(actions, [("net.core.somaxconn", "changed"), ("net.ipv4.tcp_rmem", "changed"), ("kernel.msgmax", "changed")]);
    assert!(lines.iter().all(|l| l.get("scope").is_none_or(|s| s == "pod")));
    assert_eq!(host_sysctl("net/core/somaxconn"), before, "the host's namespace is untouched");
}

#[test]
fn reruns_change_nothing() {
    let out = in_fresh_namespaces().args(["sysctl", "net.core.somaxconn=4096", "net.ipv4.tcp_rmem=4096 131072  6291456"]).run();
    // In a fresh netns somaxconn is already 4096: reported unchanged, no write needed.
    out.code(0).stderr_has("net.core.somaxconn: unchanged 4096");
}

#[test]
fn a_rerun_reads_each_key_once_and_writes_none() {
    // What a pod restart does with a sysctl.d file already applied: one open per key (a read
    // that finds the value set), no write, no second read to print (-q). Counted with strace
    // in fresh namespaces, the file made there from the values the keys hold.
    let keys = [
        "net/core/somaxconn",
        "net/ipv4/ip_default_ttl",
        "net/ipv4/tcp_syncookies",
        "net/ipv4/tcp_fin_timeout",
        "net/ipv4/tcp_keepalive_time",
        "net/ipv4/tcp_keepalive_intvl",
        "net/ipv4/tcp_keepalive_probes",
        "net/ipv4/tcp_max_syn_backlog",
    ];
    let dir = tempfile::tempdir().unwrap();
    let (conf, trace) = (dir.path().join("rerun.conf"), dir.path().join("trace"));
    let script = format!(
        "for k in {keys}; do echo \"$(echo $k | tr / .) = $(cat /proc/sys/$k)\"; done > {conf} && \
         strace -f -qq -e trace=openat,write -o {trace} \"$0\" sysctl -q -p {conf}",
        keys = keys.join(" "),
        conf = conf.display(),
        trace = trace.display(),
    );
    in_namespace_script(&script).code(0);
    let trace = std::fs::read_to_string(&trace).unwrap();
    let opens = trace.lines().filter(|l| l.contains("openat(") && l.contains("\"/proc/sys/net/")).count();
    assert_eq!(opens, keys.len(), "one open per key:\n{trace}");
    assert!(!trace.lines().any(|l| l.contains("write(") && !l.contains("write(2,")), "nothing written but logs:\n{trace}");
}

#[test]
fn lowering_pod_scoped_keys_is_allowed() {
    in_fresh_namespaces().args(["sysctl", "net.core.somaxconn=128"]).run().code(0).stderr_has("net.core.somaxconn: changed 4096 → 128");
}

#[test]
fn interface_names_with_dots_work_in_both_notations() {
    // An interface named like a VLAN (eth0.100), made in a fresh network namespace.
    let out = in_namespace_script(
        "ip link add eth0.100 type veth peer name peer0 && \"$0\" sysctl -q net.ipv4.conf.eth0/100.rp_filter=2 && \"$0\" sysctl -n net/ipv4/conf/eth0.100/rp_filter",
    );
    out.code(0).stdout_is("2\n");
}

#[test]
fn sysctl_d_file_from_stdin_with_comments_and_optional_keys() {
    let conf =
        "# tuned for the app\n; another comment\n\nnet.core.somaxconn = 2048\n-net.ipv4.conf.nosuchif.rp_filter = 1\nkernel.shmmni=8192\n";
    let out = in_fresh_namespaces().args(["sysctl", "-p", "-"]).stdin(conf).run();
    out.code(0).stdout_is("net.core.somaxconn = 2048\nkernel.shmmni = 8192\n");
    out.stderr_has("net.ipv4.conf.nosuchif.rp_filter: skipped: unknown key (stdin:5)").stderr_has("kernel.shmmni: changed");
    out.stderr_has("3 keys: 2 changed, 1 skipped");
}

#[test]
fn bad_input_writes_nothing_and_exits_2() {
    // The second setting is bad, so the first must not be applied either.
    let out =
        in_namespace_script("\"$0\" sysctl net.core.somaxconn=999 net.core.nosuchkey=1; echo rc=$?; cat /proc/sys/net/core/somaxconn");
    out.code(0).stdout_is("rc=2\n4096\n").stderr_has("unknown key 'net.core.nosuchkey'");

    for (arg, says) in [
        ("net..core=1", "empty component"),
        ("net/../../etc/passwd=1", "'..' component"),
        ("net.core=1", "is a directory of keys"),
        ("vm.max_map_count=4.194304e+06", "quote it in values.yaml"),
        ("net.ipv4.conf.*.rp_filter=1", "glob pattern"),
    ] {
        Podinit::new().args(["sysctl", arg]).run().code(2).stderr_has(says);
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.conf");
    std::fs::write(&file, "vm.swappiness = 10\nthis line is wrong\n").unwrap();
    Podinit::new()
        .args(["sysctl".as_ref(), "-p".as_ref(), file.as_os_str()])
        .run()
        .code(2)
        .stderr_has("bad.conf:2: expected 'KEY = VALUE'");
    Podinit::new().args(["sysctl", "-p", "/nonexistent/sysctl.conf"]).run().code(2).stderr_has("reading --load /nonexistent/sysctl.conf");
    Podinit::new().args(["sysctl"]).run().code(2).stderr_has("nothing to do");
}

#[test]
fn node_wide_limits_are_never_lowered_and_check_is_at_least() {
    let current: u64 = host_sysctl("vm/max_map_count").parse().unwrap();
    let lower = current - 1;
    let out = Podinit::new().args(["--log-format", "json", "sysctl", &format!("vm.max_map_count={lower}")]).run();
    out.code(0);
    let line = out.json_lines().into_iter().find(|l| l["key"] == "vm.max_map_count").unwrap();
    assert_eq!(line["action"], "kept");
    assert_eq!(line["scope"], "node");
    assert_eq!(host_sysctl("vm/max_map_count"), current.to_string(), "never lowered");

    // --check: a lower wanted value is satisfied by a higher current one; a higher one is not.
    Podinit::new().args(["sysctl", "--check", &format!("vm.max_map_count={lower}")]).run().code(0);
    let out = Podinit::new().args(["sysctl", "--check", &format!("vm.max_map_count={}", current + 1)]).run();
    out.code(1).stderr_has(&format!("vm.max_map_count is {current}, wants at least {}", current + 1));
    assert_eq!(host_sysctl("vm/max_map_count"), current.to_string(), "--check writes nothing");
    // --dry-run on the host says what it would do and writes nothing.
    Podinit::new().args(["sysctl", "--dry-run", &format!("vm.max_map_count={}", current + 1)]).run().code(0).stderr_has("would change");
    assert_eq!(host_sysctl("vm/max_map_count"), current.to_string());
}

/// A container as a privileged init container sees /proc/sys: writable, root.
///
/// `docker run --security-opt systempaths=unconfined` is a client-side switch: through the
/// API it means empty masked and read-only path lists.
fn privileged(image: GenericImage, args: &[&str]) -> ContainerRequest<GenericImage> {
    image.with_cmd(args.iter().copied()).with_user("0:0").with_cap_add("SYS_ADMIN").with_host_config_modifier(|host| {
        host.masked_paths = Some(Vec::new());
        host.readonly_paths = Some(Vec::new());
    })
}

#[tokio::test]
async fn container_with_writable_proc_sys_sets_pod_scoped_keys() {
    let before = host_sysctl("net/core/somaxconn");
    let image = podinit_image().await;
    let out =
        run_to_exit(privileged(image, &["sysctl", "net.core.somaxconn=777", "kernel.shmmni=2048", "net.core.somaxconn", "kernel.shmmni"]))
            .await;
    out.code(0)
        .stdout_is("net.core.somaxconn = 777\nkernel.shmmni = 2048\nnet.core.somaxconn = 777\nkernel.shmmni = 2048\n")
        .stderr_has("podinit sysctl: net.core.somaxconn: changed 4096 → 777");
    assert_eq!(host_sysctl("net/core/somaxconn"), before, "the container's netns is its own");
}

#[tokio::test]
async fn container_never_lowers_a_node_wide_key() {
    let current: u64 = host_sysctl("vm/max_map_count").parse().unwrap();
    let image = podinit_image().await;
    let out = run_to_exit(privileged(image, &["sysctl", &format!("vm.max_map_count={}", current / 2)])).await;
    let after = host_sysctl("vm/max_map_count");
    if after != current.to_string() {
        // Repair the host before failing loudly.
        let _ = std::fs::OpenOptions::new().write(true).open("/proc/sys/vm/max_map_count").and_then(|mut f| {
            use std::io::Write as _;
            f.write_all(current.to_string().as_bytes())
        });
        panic!("vm.max_map_count was lowered from {current} to {after}:\n{}", out.stderr);
    }
    out.code(0).stderr_has(&format!("vm.max_map_count: kept {current}, not lower than {}", current / 2));
}

#[tokio::test]
async fn read_only_proc_sys_exits_77_with_a_hint_and_a_termination_message() {
    let image = podinit_image().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    // An unprivileged container, as root: /proc/sys is mounted read-only.
    let request = image
        .with_cmd(["--termination-log", "/term/message", "sysctl", "net.core.somaxconn=777"])
        .with_user("0:0")
        .with_mount(Mount::bind_mount(dir.path().to_string_lossy(), "/term"));
    let out = run_to_exit(request).await;
    out.code(77).stderr_has("permission denied").stderr_has("hint: /proc/sys is read-only in an unprivileged container");
    let message = std::fs::read_to_string(dir.path().join("message")).unwrap();
    assert!(message.starts_with("podinit sysctl: 1 of 1 keys failed: net.core.somaxconn"), "{message}");
    assert!(message.contains("(exit 77)") && message.contains("privileged: true"), "{message}");

    // A value the kernel already holds needs no write, so it succeeds even read-only.
    let image = podinit_image().await;
    let out = run_to_exit(image.with_cmd(["sysctl", "net.core.somaxconn=4096"])).await;
    out.code(0).stderr_has("unchanged 4096");
}

#[tokio::test]
async fn image_links_run_applets_as_non_root() {
    let image = podinit_image().await;
    // The image's default user is 65532; reading needs no privilege.
    let out = run_to_exit(image.with_entrypoint("/bin/sysctl").with_cmd(["-n", "kernel.ostype"])).await;
    out.code(0).stdout_is("Linux\n");
    let image = podinit_image().await;
    let host = Podinit::new().arg("--list").run().stdout;
    run_to_exit(image.with_cmd(["--list"])).await.code(0).stdout_is(&host);
}

#[test]
fn a_value_the_kernel_refuses_fails_with_exit_1_and_the_rest_still_applies() {
    let out = in_namespace_script("\"$0\" sysctl net.core.somaxconn=-5 kernel.msgmax=12345; echo rc=$?; cat /proc/sys/kernel/msgmax");
    out.code(0).stdout_is("kernel.msgmax = 12345\nrc=1\n12345\n");
    out.stderr_has("net.core.somaxconn: failed: writing -5: the kernel rejected the value").stderr_has("1 of 2 keys failed");
}

#[test]
fn a_value_with_the_wrong_number_of_integers_is_refused_before_any_write() {
    // tcp_rmem takes three numbers; given two, the kernel would keep the old third.
    let out = in_namespace_script(
        "old=$(cat /proc/sys/net/ipv4/tcp_rmem); \"$0\" sysctl 'net.ipv4.tcp_rmem=1024 2048'; echo rc=$?; [ \"$(cat /proc/sys/net/ipv4/tcp_rmem)\" = \"$old\" ] && echo untouched",
    );
    out.code(0).stdout_is("rc=2\nuntouched\n").stderr_has("'1024 2048' has 2 integers, and the key holds 3");
}

/// Runs `script` in a fresh user namespace (root mapped) with its own net, IPC and UTS
/// namespaces: `user.*` limits there are that namespace's own, so they can be changed
/// without touching the host's.
fn in_user_namespace_script(script: &str, stdin: &str) -> Outcome {
    let mut child = std::process::Command::new("/usr/bin/unshare")
        .args(["--user", "--map-root-user", "--net", "--ipc", "--uts", "--", "/bin/sh", "-c", script])
        .arg(crate::support::cmd::bin())
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
    Outcome::from_output(child.wait_with_output().unwrap())
}

#[test]
fn a_multi_integer_value_cannot_lower_a_limit_even_on_an_optional_line() {
    // `5 5` for a one-integer limit: the kernel would store 5 (it takes the first integer and
    // reports a short write), and a `-` line would have turned the failure into a warning.
    let out = in_user_namespace_script(
        "old=$(cat /proc/sys/user/max_user_namespaces); \"$0\" sysctl -p -; echo rc=$?; [ \"$(cat /proc/sys/user/max_user_namespaces)\" = \"$old\" ] && echo kept",
        "-user.max_user_namespaces = 5 5\n",
    );
    out.code(0).stdout_is("rc=2\nkept\n").stderr_has("'5 5' has 2 integers, and the key holds 1");
    Podinit::new().args(["sysctl", "vm.max_map_count=5 5"]).run().code(2).stderr_has("has 2 integers");
}

#[test]
fn keys_that_are_not_limits_are_set_exactly_and_checked_exactly() {
    // vm.swappiness is node-wide but not a limit: a lower value is what the operator wants,
    // not something other pods rely on. Read-only here: --dry-run and --check.
    let current: i64 = host_sysctl("vm/swappiness").parse().unwrap();
    let other = if current > 0 { current - 1 } else { 1 };
    let out = Podinit::new().args(["--log-format", "json", "sysctl", "--dry-run", &format!("vm.swappiness={other}")]).run();
    out.code(0);
    let line = out.json_lines().into_iter().find(|l| l["key"] == "vm.swappiness").unwrap();
    assert_eq!((line["action"].as_str(), line["scope"].as_str()), (Some("would-change"), Some("node")));
    assert!(line["message"].as_str().unwrap().contains("node-wide"), "{line}");
    Podinit::new()
        .args(["sysctl", "--check", &format!("vm.swappiness={other}")])
        .run()
        .code(1)
        .stderr_has(&format!("vm.swappiness is {current}, wants {other}"));
    assert_eq!(host_sysctl("vm/swappiness"), current.to_string());
}

#[test]
fn a_pod_sharing_the_nodes_network_or_ipc_namespace_never_lowers_those_limits() {
    // hostNetwork: the node's network namespace (its own IPC and UTS).
    let somaxconn: u64 = host_sysctl("net/core/somaxconn").parse().unwrap();
    let out = Podinit::new()
        .wrapped(&["/usr/bin/unshare", "--ipc", "--uts"])
        .args(["--log-format", "json", "sysctl", "--dry-run", &format!("net.core.somaxconn={}", somaxconn - 1)])
        .run();
    out.code(0);
    let line = out.json_lines().into_iter().find(|l| l["key"] == "net.core.somaxconn").unwrap();
    assert_eq!((line["action"].as_str(), line["scope"].as_str()), (Some("kept"), Some("node")), "{line}");
    assert!(line["message"].as_str().unwrap().contains("hostNetwork"), "{line}");
    // hostIPC: kernel.sem (four limits) compared field by field.
    let sem = host_sysctl("kernel/sem");
    let lower: Vec<u64> = sem.split_whitespace().map(|f| f.parse::<u64>().unwrap().saturating_sub(1).max(1)).collect();
    let lower = lower.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ");
    let out = Podinit::new()
        .wrapped(&["/usr/bin/unshare", "--net", "--uts"])
        .args(["--log-format", "json", "sysctl", "--dry-run", &format!("kernel.sem={lower}")])
        .run();
    out.code(0);
    let line = out.json_lines().into_iter().find(|l| l["key"] == "kernel.sem").unwrap();
    assert_eq!(line["action"], "kept", "{line}");
    assert!(line["message"].as_str().unwrap().contains("hostIPC"), "{line}");
    Podinit::new()
        .wrapped(&["/usr/bin/unshare", "--net", "--uts"])
        .args(["sysctl", "--check", &format!("kernel.sem={lower}")])
        .run()
        .code(0);
    assert_eq!(host_sysctl("kernel/sem"), sem);
    // In the pod's own namespaces the same values are set exactly.
    in_fresh_namespaces().args(["sysctl", &format!("kernel.sem={lower}")]).run().code(0).stderr_has("kernel.sem: changed");
    assert_eq!(host_sysctl("kernel/sem"), sem);
}

#[test]
fn stdin_that_never_closes_is_ended_by_the_timeout_and_by_sigterm() {
    let start = std::time::Instant::now();
    let mut cmd = in_fresh_namespaces().args(["--timeout", "1s", "sysctl", "-p", "-"]).command();
    cmd.stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let _open = child.stdin.take();
    let out = Outcome::from_output(child.wait_with_output().unwrap());
    out.code(124).stderr_has("reading settings from stdin");
    assert!(start.elapsed() < std::time::Duration::from_secs(20), "{:?}", start.elapsed());

    let mut cmd = Podinit::new().args(["sysctl", "-p", "-"]).command();
    cmd.stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let _open = child.stdin.take();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(crate::support::cmd::sigterm(&child));
    Outcome::from_output(child.wait_with_output().unwrap()).code(143);
}

#[test]
fn quiet_keeps_stderr_empty_and_global_flags_go_after_the_applet_too() {
    let out = in_fresh_namespaces().args(["sysctl", "--quiet", "net.core.somaxconn=300"]).run();
    out.code(0);
    assert_eq!(out.stderr, "", "--quiet shows only warnings and errors");
    let out = in_fresh_namespaces().args(["sysctl", "net.core.somaxconn=300", "--log-format", "json"]).run();
    out.code(0);
    assert_eq!(out.json_lines()[0]["action"], "changed");
}

/// The same shell script run three times, each in fresh mount, net, IPC and UTS namespaces,
/// with `sysctl` on PATH being procps', busybox's, then podinit's link. The sysctl.d
/// directories and /etc/sysctl.conf are covered by tmpfs and bind mounts holding the test's
/// files, so `-p` and `--system` read those and nothing of the host.
fn three_ways(script: &str) -> [Outcome; 3] {
    let dir = tempfile::tempdir().unwrap();
    let bins = [
        ("procps", Path::new("/usr/sbin/sysctl").to_owned()),
        ("busybox", Path::new("/bin/busybox").to_owned()),
        ("podinit", crate::support::cmd::bin()),
    ];
    let conf = dir.path().join("sysctl.conf");
    std::fs::write(&conf, "# from /etc/sysctl.conf\nkernel.msgmnb = 32768\n").unwrap();
    std::fs::write(dir.path().join("etc.conf"), "net.core.somaxconn = 1500\n").unwrap();
    std::fs::write(dir.path().join("lib-hidden.conf"), "net.core.somaxconn = 9999\n").unwrap();
    std::fs::write(dir.path().join("lib-early.conf"), "kernel.msgmax = 9000\n-nosuch.key = 1\n").unwrap();
    let setup = format!(
        "for d in /etc/sysctl.d /run/sysctl.d /usr/local/lib/sysctl.d /usr/lib/sysctl.d /lib/sysctl.d; do [ -d $d ] && mount -t tmpfs tmpfs $d; done; \
         mkdir -p /usr/lib/sysctl.d /etc/sysctl.d && cp {d}/etc.conf /etc/sysctl.d/10-a.conf && cp {d}/lib-hidden.conf /usr/lib/sysctl.d/10-a.conf && \
         cp {d}/lib-early.conf /usr/lib/sysctl.d/05-b.conf; [ -f /etc/sysctl.conf ] && mount --bind {d}/sysctl.conf /etc/sysctl.conf; cd {d}; ",
        d = dir.path().display()
    );
    bins.map(|(name, bin)| {
        let path = dir.path().join(name);
        std::fs::create_dir_all(&path).unwrap();
        let _ = std::fs::remove_file(path.join("sysctl"));
        std::os::unix::fs::symlink(&bin, path.join("sysctl")).unwrap();
        let out = std::process::Command::new("/usr/bin/unshare")
            .args(["--mount", "--net", "--ipc", "--uts", "--", "/bin/sh", "-c", &format!("{setup}{script}")])
            .env_clear()
            .env("PATH", format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", path.display()))
            .output()
            .unwrap();
        Outcome::from_output(out)
    })
}

#[test]
fn drop_in_forms_print_what_procps_and_busybox_print() {
    // (form, also compared with busybox)
    let forms: &[(&str, bool)] = &[
        ("sysctl net.core.somaxconn", true),
        ("sysctl -n net.core.somaxconn", true),
        ("sysctl -N net.core.somaxconn", false),
        ("sysctl net/core/somaxconn", true),
        ("sysctl net.ipv4.tcp_rmem kernel.ostype", true),
        ("sysctl -w net.core.somaxconn=1024", true),
        ("sysctl net.core.somaxconn=1024", true),
        ("sysctl -w net.core.somaxconn=1024 kernel.msgmax=12345 && sysctl -n kernel.msgmax", true),
        ("sysctl -qw net.core.somaxconn=1025 && sysctl net.core.somaxconn", true),
        ("sysctl -wq net.core.somaxconn=1025 && sysctl -n net.core.somaxconn", true),
        ("sysctl -w net/core/somaxconn=1026", true),
        ("sysctl -n -w net.core.somaxconn=1030", true),
        ("sysctl -ew net.core.somaxconn=1027", true),
        ("sysctl -e nosuch.key; echo done", false),
        ("sysctl -p ./etc.conf", true),
        ("sysctl -p", true),
        ("sysctl -q -p ./etc.conf && sysctl -n net.core.somaxconn", false),
        ("sysctl --system && sysctl -n net.core.somaxconn kernel.msgmax kernel.msgmnb", false),
        ("sysctl -a | cut -d' ' -f1", false),
        ("sysctl -aN | head -3", false),
    ];
    for (form, busybox) in forms {
        let [procps, bb, ours] = three_ways(form);
        procps.code(0);
        ours.code(0);
        assert_eq!(
            ours.stdout, procps.stdout,
            "{form}: stdout differs from procps'\nprocps:\n{}\npodinit:\n{}",
            procps.stdout, ours.stderr
        );
        if *busybox {
            assert_eq!(ours.stdout, bb.stdout, "{form}: stdout differs from busybox's\nbusybox stderr:\n{}", bb.stderr);
        }
        assert!(!ours.stdout.contains("podinit"), "{form}: podinit's log stays on stderr");
    }
}

#[test]
fn drop_in_refusals_are_one_line_and_write_nothing() {
    for (form, says) in [
        ("sysctl -w net.core.somaxconn", "-w: 'net.core.somaxconn' is not KEY=VALUE"),
        ("sysctl nosuch.key", "unknown key 'nosuch.key'"),
        ("sysctl -p ./missing.conf", "missing.conf"),
    ] {
        let [_, _, ours] = three_ways(&format!("{form}; echo rc=$?; sysctl -n net.core.somaxconn"));
        ours.code(0).stdout_is("rc=2\n4096\n").stderr_has(says);
    }
}
