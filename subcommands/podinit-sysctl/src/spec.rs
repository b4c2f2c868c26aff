//! Pure parsing and deciding: keys, settings, sysctl.d files, and what to do with a value.
//!
//! Nothing here touches the kernel; `kernel.rs` does. Keys follow the sysctl.d(5) rule: if
//! the first separator is `/`, the key is a path as it stands; if it is `.`, dots and
//! slashes swap, so `net.ipv4.conf.eth0/100.rp_filter` and `net/ipv4/conf/eth0.100/rp_filter`
//! both name the VLAN interface `eth0.100`.

use std::fmt;
use std::path::PathBuf;

/// Longest value the kernel takes through /proc/sys (one page).
pub(crate) const MAX_VALUE_LEN: usize = 4096;

/// A validated sysctl key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    components: Vec<String>,
}

impl Key {
    /// Parses a key in either notation; refuses anything that could leave /proc/sys.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("empty key".into());
        }
        let first_sep = text.find(['.', '/']);
        let components: Vec<String> = match first_sep.map(|i| &text[i..=i]) {
            Some("/") => text.split('/').map(str::to_owned).collect(),
            _ => text.split('.').map(|c| c.replace('/', ".")).collect(),
        };
        for c in &components {
            if c.is_empty() {
                return Err(format!("'{text}' has an empty component"));
            }
            if c == "." || c == ".." {
                return Err(format!("'{text}' has a '{c}' component, which would leave /proc/sys"));
            }
            if c.chars().any(|ch| ch.is_whitespace() || ch.is_control() || ch == '=') {
                return Err(format!("'{text}' contains whitespace, '=' or a control character"));
            }
            if c.contains(['*', '?', '[']) {
                return Err(format!("'{text}' is a glob pattern; podinit sets keys by their full names"));
            }
        }
        Ok(Self { components })
    }

    /// The key of a file found below /proc/sys, from its path components.
    pub(crate) fn from_components(components: Vec<String>) -> Self {
        Self { components }
    }

    /// The path below /proc/sys.
    pub(crate) fn rel_path(&self) -> PathBuf {
        self.components.iter().collect()
    }

    /// The namespace the kernel keeps this key in, if any: the kubelet's rule
    /// (`pkg/kubelet/sysctl/namespace.go`). Whether that namespace is the pod's own or the
    /// node's is a fact about the process, see [`Namespaces::scope`].
    pub(crate) fn namespace(&self) -> Option<Namespace> {
        let first = self.components[0].as_str();
        let second = self.components.get(1).map_or("", String::as_str);
        match first {
            "net" => Some(Namespace::Net),
            "kernel" if second.starts_with("shm") || second.starts_with("msg") || second == "sem" => Some(Namespace::Ipc),
            "fs" if second == "mqueue" => Some(Namespace::Ipc),
            _ => None,
        }
    }

    /// Whether more is more room for everyone (a limit): such a key is never lowered where
    /// it is node-wide. See [`LIMITS`].
    pub(crate) fn is_limit(&self) -> bool {
        let dotted = self.to_string();
        LIMITS.contains(&dotted.as_str())
            || (matches!(self.components.as_slice(), [net, ip, neigh, _, thresh]
                if net == "net" && (ip == "ipv4" || ip == "ipv6") && neigh == "neigh" && thresh.starts_with("gc_thresh")))
    }
}

/// Keys whose every integer is a limit (a maximum, a table size, a queue length): raising
/// one gives every process more room, lowering one can break other pods. Node-wide (or in a
/// namespace the pod shares with the node), these are never lowered; every other key is set
/// exactly. Also `net.ipv4.neigh.*.gc_thresh*` and `net.ipv6.neigh.*.gc_thresh*`.
pub(crate) const LIMITS: &[&str] = &[
    // Memory maps, files, inotify, epoll, aio, pipes.
    "vm.max_map_count",
    "fs.file-max",
    "fs.nr_open",
    "fs.aio-max-nr",
    "fs.inotify.max_user_watches",
    "fs.inotify.max_user_instances",
    "fs.inotify.max_queued_events",
    "fs.epoll.max_user_watches",
    "fs.pipe-max-size",
    // Processes and keys.
    "kernel.pid_max",
    "kernel.threads-max",
    "kernel.keys.maxkeys",
    "kernel.keys.maxbytes",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    // Namespaces per user.
    "user.max_user_namespaces",
    "user.max_net_namespaces",
    "user.max_ipc_namespaces",
    "user.max_pid_namespaces",
    "user.max_mnt_namespaces",
    "user.max_uts_namespaces",
    "user.max_cgroup_namespaces",
    "user.max_time_namespaces",
    "user.max_inotify_instances",
    "user.max_inotify_watches",
    "user.max_fanotify_groups",
    "user.max_fanotify_marks",
    // Network (the pod's own unless hostNetwork).
    "net.core.somaxconn",
    "net.core.netdev_max_backlog",
    "net.core.rmem_max",
    "net.core.wmem_max",
    "net.core.optmem_max",
    "net.ipv4.tcp_max_syn_backlog",
    "net.ipv4.tcp_max_tw_buckets",
    "net.ipv4.tcp_max_orphans",
    "net.netfilter.nf_conntrack_max",
    "net.nf_conntrack_max",
    "net.unix.max_dgram_qlen",
    // IPC (the pod's own unless hostIPC).
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.shmmax",
    "kernel.shmall",
    "kernel.shmmni",
    "kernel.sem",
    "fs.mqueue.msg_max",
    "fs.mqueue.msgsize_max",
    "fs.mqueue.queues_max",
];

/// A namespace some keys live in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Namespace {
    Net,
    Ipc,
}

/// Which of this process's namespaces are the node's (a pod with `hostNetwork` or `hostIPC`,
/// or no pod at all).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Namespaces {
    pub(crate) net_is_node: bool,
    pub(crate) ipc_is_node: bool,
}

/// Inode numbers of the initial namespaces (`include/uapi/linux/nsfs.h`): IPC and UTS since
/// Linux 3.8, network since 6.18. Before 6.18 the node's network namespace has no fixed
/// number.
pub(crate) const IPC_INIT_INO: u64 = 0xEFFF_FFFF;
pub(crate) const UTS_INIT_INO: u64 = 0xEFFF_FFFE;
pub(crate) const NET_INIT_INO: u64 = 0xEFFF_FFF9;

impl Namespaces {
    /// Decides from the inodes of this process's namespaces (`None`: unreadable) and the
    /// kernel's version. Where it cannot tell, it says "node" (then limits are never lowered:
    /// the safe side). Before 6.18, a network namespace is taken as the node's when the UTS
    /// namespace is: `hostNetwork` puts a pod in the node's UTS namespace too.
    pub(crate) fn decide(net: Option<u64>, ipc: Option<u64>, uts: Option<u64>, kernel: Option<(u32, u32)>) -> Self {
        let fixed_net_ino = kernel.is_some_and(|v| v >= (6, 18));
        let net_is_node = match net {
            None => true,
            Some(ino) if ino == NET_INIT_INO => true,
            Some(_) if fixed_net_ino => false,
            Some(_) => uts.is_none_or(|u| u == UTS_INIT_INO),
        };
        Self { net_is_node, ipc_is_node: ipc.is_none_or(|i| i == IPC_INIT_INO) }
    }

    /// Who shares `key`'s value from here.
    pub(crate) fn scope(self, key: &Key) -> Scope {
        match key.namespace() {
            Some(Namespace::Net) if !self.net_is_node => Scope::Pod,
            Some(Namespace::Ipc) if !self.ipc_is_node => Scope::Pod,
            Some(Namespace::Net) => Scope::SharedNet,
            Some(Namespace::Ipc) => Scope::SharedIpc,
            None => Scope::Node,
        }
    }
}

/// Prints the dotted form, with dots inside a component shown as `/` (sysctl.d notation).
impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.components.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            f.write_str(&c.replace('.', "/"))?;
        }
        Ok(())
    }
}

/// Who shares a key's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// A key of the pod's own network or IPC namespace: this pod only.
    Pod,
    /// A key of no namespace: the whole node, and it outlives the pod.
    Node,
    /// A network key, but the pod shares the node's network namespace (`hostNetwork`).
    SharedNet,
    /// An IPC key, but the pod shares the node's IPC namespace (`hostIPC`).
    SharedIpc,
}

impl Scope {
    /// `"pod"` or `"node"`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pod => "pod",
            Self::Node | Self::SharedNet | Self::SharedIpc => "node",
        }
    }

    /// Whether the value is shared with the whole node.
    pub(crate) fn is_node(self) -> bool {
        self != Self::Pod
    }

    /// Why a key is node-wide, for log lines.
    pub(crate) fn why(self) -> &'static str {
        match self {
            Self::Pod => "pod-scoped",
            Self::Node => "node-wide",
            Self::SharedNet => "node-wide: this pod shares the node's network namespace (hostNetwork)",
            Self::SharedIpc => "node-wide: this pod shares the node's IPC namespace (hostIPC)",
        }
    }
}

/// One requested setting: a key and, for a write, the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Setting {
    /// The key.
    pub(crate) key: Key,
    /// The value to set; `None` means print the current value.
    pub(crate) value: Option<String>,
    /// A sysctl.d line starting with `-`: an unknown key or a failed write is not an error.
    pub(crate) ignore_failure: bool,
    /// Where it came from, for messages: `argument 2`, `/etc/sysctl.d/x.conf:7`.
    pub(crate) origin: String,
}

/// Parses a command-line argument: `KEY=VALUE` or `KEY`.
pub(crate) fn parse_arg(arg: &str, origin: String) -> Result<Setting, String> {
    let (key, value) = match arg.split_once('=') {
        Some((k, v)) => (k, Some(v.trim())),
        None => (arg, None),
    };
    let key = Key::parse(key).map_err(|e| format!("{origin}: {e}"))?;
    if let Some(v) = value {
        check_value_text(v).map_err(|e| format!("{origin}: {key}: {e}"))?;
    }
    Ok(Setting { key, value: value.map(str::to_owned), ignore_failure: false, origin })
}

/// Parses a sysctl.d file: `KEY = VALUE` lines, `#`/`;` comments, blank lines, and a
/// leading `-` that makes failures on that key ignorable.
pub(crate) fn parse_file(text: &str, name: &str) -> Result<Vec<Setting>, String> {
    let mut settings = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let origin = format!("{name}:{}", index + 1);
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let (ignore_failure, line) = match line.strip_prefix('-') {
            Some(rest) => (true, rest.trim_start()),
            None => (false, line),
        };
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!(
                "{origin}: expected 'KEY = VALUE', found '{line}' (a '-KEY' line excluding a key from a glob is not supported)"
            ));
        };
        let key = Key::parse(key).map_err(|e| format!("{origin}: {e}"))?;
        let value = value.trim();
        check_value_text(value).map_err(|e| format!("{origin}: {key}: {e}"))?;
        settings.push(Setting { key, value: Some(value.to_owned()), ignore_failure, origin });
    }
    Ok(settings)
}

fn check_value_text(value: &str) -> Result<(), String> {
    if value.len() > MAX_VALUE_LEN {
        return Err(format!("the value is {} bytes long; the kernel takes at most {MAX_VALUE_LEN}", value.len()));
    }
    if value.contains(['\n', '\r', '\0']) {
        return Err("the value contains a line break or NUL".into());
    }
    Ok(())
}

/// A value with whitespace runs collapsed to one space (multi-value keys read back with tabs).
pub(crate) fn normalize(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The value as a list of integers, if it is one (`"4096\t131072\t6291456"`).
pub(crate) fn integers(value: &str) -> Option<Vec<i128>> {
    let parts: Vec<i128> = value.split_whitespace().map(|p| p.parse().ok()).collect::<Option<_>>()?;
    (!parts.is_empty()).then_some(parts)
}

/// Whether two values mean the same to the kernel.
pub(crate) fn same_value(a: &str, b: &str) -> bool {
    match (integers(a), integers(b)) {
        (Some(x), Some(y)) => x == y,
        _ => normalize(a) == normalize(b),
    }
}

/// Checks a wanted value against the key's current one: an integer key gets an integer.
pub(crate) fn check_value_kind(current: &str, wanted: &str) -> Result<(), String> {
    if let (Some(cur), Some(want)) = (integers(current), integers(wanted))
        && cur.len() != want.len()
    {
        // The kernel would take the first integers and drop the rest (a short write): with
        // `5 5` for a one-integer limit, it would store 5 whatever the check said.
        let plural = |n: usize| if n == 1 { "integer" } else { "integers" };
        return Err(format!(
            "'{wanted}' has {} {}, and the key holds {} (now {})",
            want.len(),
            plural(want.len()),
            cur.len(),
            normalize(current)
        ));
    }
    let (Some(cur), None) = (integers(current), integers(wanted)) else { return Ok(()) };
    let mut msg = format!("'{wanted}' is not an integer, and the key holds integers (now {})", normalize(current));
    if wanted.contains(['e', 'E', '.']) && wanted.trim().parse::<f64>().is_ok() {
        msg.push_str("; a number in float notation usually comes from a Helm value: quote it in values.yaml");
    } else if cur.len() > 1 {
        msg.push_str(&format!("; give {} integers separated by spaces", cur.len()));
    }
    Err(msg)
}

/// What to do with one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// The kernel already holds the value.
    Unchanged,
    /// A node-wide limit is already at least as high as asked, in every field: keep it.
    KeepHigher,
    /// Write this value: the one asked for, or, for a node-wide limit with some fields
    /// already higher, the higher of the two in each field.
    Write(String),
}

/// Decides what to do with `wanted` given `current`. A limit ([`Key::is_limit`]) that is
/// node-wide is compared field by field and never lowered unless `allow_lower`; everything
/// else is set exactly. The value's shape was checked by [`check_value_kind`] before.
pub(crate) fn plan(scope: Scope, limit: bool, current: &str, wanted: &str, allow_lower: bool) -> Plan {
    if same_value(current, wanted) {
        return Plan::Unchanged;
    }
    if scope.is_node()
        && limit
        && !allow_lower
        && let (Some(cur), Some(want)) = (integers(current), integers(wanted))
        && cur.len() == want.len()
    {
        let merged: Vec<i128> = cur.iter().zip(&want).map(|(c, w)| *c.max(w)).collect();
        if merged == cur {
            return Plan::KeepHigher;
        }
        if merged != want {
            return Plan::Write(merged.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "));
        }
    }
    Plan::Write(wanted.to_owned())
}

/// Whether `current` satisfies `wanted` for `--check`: at least as high in every field for a
/// node-wide limit, the same value otherwise.
pub(crate) fn satisfies(scope: Scope, limit: bool, current: &str, wanted: &str, allow_lower: bool) -> bool {
    !matches!(plan(scope, limit, current, wanted, allow_lower), Plan::Write(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        Key::parse(s).unwrap()
    }

    #[test]
    fn both_separators_and_dotted_interface_names() {
        assert_eq!(key("net.core.somaxconn").rel_path(), PathBuf::from("net/core/somaxconn"));
        assert_eq!(key("net/core/somaxconn").rel_path(), PathBuf::from("net/core/somaxconn"));
        assert_eq!(key("net.ipv4.conf.eth0/100.rp_filter").rel_path(), PathBuf::from("net/ipv4/conf/eth0.100/rp_filter"));
        assert_eq!(key("net/ipv4/conf/eth0.100/rp_filter").rel_path(), PathBuf::from("net/ipv4/conf/eth0.100/rp_filter"));
        assert_eq!(key("net/ipv4/conf/eth0.100/rp_filter").to_string(), "net.ipv4.conf.eth0/100.rp_filter");
        assert_eq!(key(" vm.max_map_count ").to_string(), "vm.max_map_count");
        assert_eq!(key("kernel").rel_path(), PathBuf::from("kernel"));
    }

    #[test]
    fn keys_cannot_leave_proc_sys() {
        for bad in [
            "",
            "net..core",
            "/net/core/somaxconn",
            "net/../../etc/passwd",
            "net.core.",
            "../x",
            "net/./core",
            "a b",
            "net.ipv4.conf.*.rp_filter",
        ] {
            assert!(Key::parse(bad).is_err(), "{bad:?} must be refused");
        }
        // With '.' first, a '/' becomes a literal dot inside a component, never '..' traversal.
        assert_eq!(Key::parse("net.//.x").unwrap_err(), "'net.//.x' has a '..' component, which would leave /proc/sys");
    }

    const POD: Namespaces = Namespaces { net_is_node: false, ipc_is_node: false };

    #[test]
    fn scope_follows_the_kubelet() {
        for pod in [
            "net.core.somaxconn",
            "net.ipv4.tcp_rmem",
            "kernel.shmmax",
            "kernel.shm_rmid_forced",
            "kernel.msgmax",
            "kernel.sem",
            "fs.mqueue.msg_max",
        ] {
            assert_eq!(POD.scope(&key(pod)), Scope::Pod, "{pod}");
        }
        for node in
            ["vm.max_map_count", "fs.file-max", "fs.inotify.max_user_watches", "kernel.pid_max", "kernel.core_pattern", "kernel.semx"]
        {
            assert_eq!(POD.scope(&key(node)), Scope::Node, "{node}");
        }
    }

    #[test]
    fn host_network_and_host_ipc_make_namespaced_keys_node_wide() {
        let other = 4_026_532_000;
        let host_net = Namespaces::decide(Some(NET_INIT_INO), Some(other), Some(other), Some((6, 18)));
        assert_eq!(host_net.scope(&key("net.core.somaxconn")), Scope::SharedNet);
        assert_eq!(host_net.scope(&key("kernel.msgmax")), Scope::Pod);
        let host_ipc = Namespaces::decide(Some(other), Some(IPC_INIT_INO), Some(other), Some((6, 18)));
        assert_eq!(host_ipc.scope(&key("kernel.msgmax")), Scope::SharedIpc);
        assert_eq!(host_ipc.scope(&key("net.core.somaxconn")), Scope::Pod);
        // Before 6.18 the node's network namespace has no fixed number: the UTS namespace
        // (shared with hostNetwork) decides.
        assert!(Namespaces::decide(Some(other), Some(other), Some(UTS_INIT_INO), Some((6, 1))).net_is_node);
        assert!(!Namespaces::decide(Some(other), Some(other), Some(other + 1), Some((6, 1))).net_is_node);
        assert!(!Namespaces::decide(Some(other), Some(other), Some(UTS_INIT_INO), Some((6, 18))).net_is_node);
        // Unreadable: the safe side.
        assert_eq!(Namespaces::decide(None, None, None, None), Namespaces { net_is_node: true, ipc_is_node: true });
        // A hostNetwork pod's somaxconn is a node-wide limit: never lowered.
        let scope = host_net.scope(&key("net.core.somaxconn"));
        assert_eq!(plan(scope, true, "4096", "1024", false), Plan::KeepHigher);
        assert_eq!(plan(POD.scope(&key("net.core.somaxconn")), true, "4096", "1024", false), Plan::Write("1024".into()));
    }

    #[test]
    fn only_limits_are_raise_only() {
        for limit in ["vm.max_map_count", "user.max_user_namespaces", "kernel.sem", "net.ipv4.neigh.default.gc_thresh3", "fs.file-max"] {
            assert!(key(limit).is_limit(), "{limit}");
        }
        for not in ["kernel.sched_rt_runtime_us", "vm.swappiness", "kernel.numa_balancing", "kernel.core_pattern", "vm.overcommit_memory"] {
            assert!(!key(not).is_limit(), "{not}");
            // Set exactly, even lower, and --check wants the exact value.
            assert_eq!(plan(Scope::Node, key(not).is_limit(), "1", "0", false), Plan::Write("0".into()), "{not}");
            assert!(!satisfies(Scope::Node, key(not).is_limit(), "1", "0", false), "{not}");
        }
        assert_eq!(plan(Scope::Node, false, "950000", "-1", false), Plan::Write("-1".into()), "-1 is unlimited, not lower");
    }

    #[test]
    fn args_and_values() {
        let s = parse_arg("vm.max_map_count=262144", "argument 1".into()).unwrap();
        assert_eq!(s.value.as_deref(), Some("262144"));
        let s = parse_arg("net.ipv4.tcp_rmem=4096 131072  6291456", "argument 1".into()).unwrap();
        assert_eq!(s.value.as_deref(), Some("4096 131072  6291456"));
        let s = parse_arg("kernel.core_pattern=", "argument 1".into()).unwrap();
        assert_eq!(s.value.as_deref(), Some(""));
        assert_eq!(parse_arg("net.core.somaxconn", "a".into()).unwrap().value, None);
        let long = format!("kernel.core_pattern={}", "x".repeat(5000));
        assert!(parse_arg(&long, "argument 1".into()).unwrap_err().contains("at most 4096"));
        assert!(parse_arg("=1", "argument 3".into()).unwrap_err().starts_with("argument 3: empty key"));
    }

    #[test]
    fn sysctl_d_files() {
        let text = "# comment\n; other comment\n\n  vm.max_map_count = 262144  \n-net.ipv4.conf.eth9.rp_filter=1\nkernel.core_pattern = |/usr/bin/dump %p  %e\n";
        let got = parse_file(text, "f.conf").unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(
            (got[0].key.to_string(), got[0].value.as_deref(), got[0].ignore_failure),
            ("vm.max_map_count".into(), Some("262144"), false)
        );
        assert_eq!(got[0].origin, "f.conf:4");
        assert!(got[1].ignore_failure);
        assert_eq!(got[1].key.rel_path(), PathBuf::from("net/ipv4/conf/eth9/rp_filter"));
        assert_eq!(got[2].value.as_deref(), Some("|/usr/bin/dump %p  %e"), "inner whitespace of a value is kept");
        assert_eq!(parse_file("vm.swappiness\n", "g.conf").unwrap_err().split(':').take(2).collect::<Vec<_>>(), ["g.conf", "1"]);
        assert!(parse_file("-net.ipv4.conf.*.rp_filter = 1", "h.conf").unwrap_err().contains("glob"));
    }

    #[test]
    fn values_compare_as_the_kernel_means_them() {
        assert!(same_value("4096\t131072\t6291456", "4096 131072 6291456"));
        assert!(same_value("010", "10"));
        assert!(same_value("|/bin/x  %p", "|/bin/x %p"));
        assert!(!same_value("1", "2"));
        assert_eq!(integers("18446744073709551615"), Some(vec![18_446_744_073_709_551_615]));
        assert_eq!(integers("-1"), Some(vec![-1]));
        assert_eq!(integers(""), None);
    }

    #[test]
    fn integer_keys_get_integers() {
        let err = check_value_kind("65530", "4.194304e+06").unwrap_err();
        assert!(err.contains("Helm"), "{err}");
        assert!(check_value_kind("4096 131072 6291456", "big").unwrap_err().contains("3 integers"));
        assert!(check_value_kind("core", "|/bin/dump").is_ok());
        assert!(check_value_kind("65530", "262144").is_ok());
    }

    #[test]
    fn node_wide_limits_are_never_lowered() {
        assert_eq!(plan(Scope::Node, true, "1048576", "262144", false), Plan::KeepHigher);
        assert_eq!(plan(Scope::Node, true, "1048576", "262144", true), Plan::Write("262144".into()));
        assert_eq!(plan(Scope::Node, true, "65530", "262144", false), Plan::Write("262144".into()));
        assert_eq!(plan(Scope::Node, true, "262144", "262144", false), Plan::Unchanged);
        assert!(satisfies(Scope::Node, true, "1048576", "262144", false));
        // Pod-scoped keys are set exactly, lower or not.
        assert_eq!(plan(Scope::Pod, true, "4096", "1024", false), Plan::Write("1024".into()));
        // Limits with several fields are compared field by field: what is higher stays.
        assert_eq!(plan(Scope::SharedIpc, true, "32000 1024000000 500 32000", "250 256000 32 128", false), Plan::KeepHigher);
        assert_eq!(plan(Scope::SharedIpc, true, "250 32000 32 128", "300 256000 32 100", false), Plan::Write("300 256000 32 128".into()));
        // Strings are set exactly.
        assert_eq!(plan(Scope::Node, false, "core", "|/bin/dump", false), Plan::Write("|/bin/dump".into()));
    }

    #[test]
    fn a_value_with_more_integers_than_the_key_is_refused() {
        // `5 5` for a one-integer key: the kernel would store 5 (a short write), under any check.
        let err = check_value_kind("65536", "5 5").unwrap_err();
        assert!(err.contains("2 integers, and the key holds 1"), "{err}");
        assert!(check_value_kind("250 32000 32 128", "250 32000").is_err());
        assert!(check_value_kind("250\t32000\t32\t128", "300 32000 32 128").is_ok());
    }
}
