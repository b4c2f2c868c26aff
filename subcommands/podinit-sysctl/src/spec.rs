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

    /// The path below /proc/sys.
    pub(crate) fn rel_path(&self) -> PathBuf {
        self.components.iter().collect()
    }

    /// Whether the kernel keeps this key per pod (network or IPC namespace) or per node.
    pub(crate) fn scope(&self) -> Scope {
        let first = self.components[0].as_str();
        let second = self.components.get(1).map_or("", String::as_str);
        let pod = match first {
            "net" => true,
            "kernel" => second.starts_with("shm") || second.starts_with("msg") || second == "sem",
            "fs" => second == "mqueue",
            _ => false,
        };
        if pod { Scope::Pod } else { Scope::Node }
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

/// Who shares a key's value. The kubelet's rule (`pkg/kubelet/sysctl/namespace.go`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// `net.*`, `kernel.shm*`, `kernel.msg*`, `kernel.sem`, `fs.mqueue.*`: this pod only.
    Pod,
    /// Everything else: the whole node, and it outlives the pod.
    Node,
}

impl Scope {
    /// `"pod"` or `"node"`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pod => "pod",
            Self::Node => "node",
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// The kernel already holds the value.
    Unchanged,
    /// A node-wide limit is already higher than asked: keep it (never lower).
    KeepHigher,
    /// Write the value.
    Write,
}

/// Decides what to do with `wanted` given `current`. Node-wide keys holding a single
/// integer are never lowered unless `allow_lower`; everything else is set exactly.
pub(crate) fn plan(scope: Scope, current: &str, wanted: &str, allow_lower: bool) -> Plan {
    if same_value(current, wanted) {
        return Plan::Unchanged;
    }
    if scope == Scope::Node
        && !allow_lower
        && let (Some([cur]), Some([want])) = (integers(current).as_deref(), integers(wanted).as_deref())
        && cur > want
    {
        return Plan::KeepHigher;
    }
    Plan::Write
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
            assert_eq!(key(pod).scope(), Scope::Pod, "{pod}");
        }
        for node in
            ["vm.max_map_count", "fs.file-max", "fs.inotify.max_user_watches", "kernel.pid_max", "kernel.core_pattern", "kernel.semx"]
        {
            assert_eq!(key(node).scope(), Scope::Node, "{node}");
        }
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
        assert_eq!(plan(Scope::Node, "1048576", "262144", false), Plan::KeepHigher);
        assert_eq!(plan(Scope::Node, "1048576", "262144", true), Plan::Write);
        assert_eq!(plan(Scope::Node, "65530", "262144", false), Plan::Write);
        assert_eq!(plan(Scope::Node, "262144", "262144", false), Plan::Unchanged);
        // Pod-scoped keys are set exactly, lower or not.
        assert_eq!(plan(Scope::Pod, "4096", "1024", false), Plan::Write);
        // Multi-value node keys have no "higher": set exactly.
        assert_eq!(plan(Scope::Node, "32000 1024000000 500 32000", "250 256000 32 128", false), Plan::Write);
        // Strings are set exactly.
        assert_eq!(plan(Scope::Node, "core", "|/bin/dump", false), Plan::Write);
    }
}
