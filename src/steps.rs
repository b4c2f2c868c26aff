//! Several applet steps in one container. A scratch image has no shell for `a && b`, so
//! podinit splits its own command line at standalone `&&` arguments
//! (`podinit sysctl vm.max_map_count=262144 '&&' wait-for tcp://db:5432`), or reads the steps
//! from a YAML file mounted from a ConfigMap (`podinit --steps /etc/podinit/steps.yaml`).
//!
//! This module only turns either form into command lines, one per step; `main` parses every
//! step before the first runs (a typo in the last step fails before the first changes
//! anything), runs them in order and stops at the first failure with that step's exit status.
//! Options before the first applet apply to every step.

use std::ffi::OsString;
use std::path::Path;

use anyhow::Context as _;
use podinit_core::{Error, Kind};
use yaml_rust2::{Yaml, YamlLoader};

/// The argument that separates steps on the command line.
pub(crate) const SEPARATOR: &str = "&&";

/// Global options that take a value as the next argument (`--timeout 5m`), so that value is
/// not mistaken for the applet name when the options before the first applet are collected.
const GLOBAL_OPTIONS_WITH_VALUE: &[&str] = &["--timeout", "--log-format", "--log-level", "--progress", "--termination-log"];

/// Files larger than this are not step lists (a ConfigMap holds at most 1 MiB in all).
const MAX_FILE_LEN: u64 = 1 << 20;

/// One step: its position, an optional name from the file, and its whole command line
/// (`podinit`, the shared options, the applet and its arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) index: usize,
    pub(crate) count: usize,
    pub(crate) name: Option<String>,
    pub(crate) argv: Vec<OsString>,
}

impl Step {
    /// How errors and logs name the step: `step 2/3` or `step 2/3 "migrate"`.
    pub(crate) fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("step {}/{} \"{name}\"", self.index + 1, self.count),
            None => format!("step {}/{}", self.index + 1, self.count),
        }
    }

    /// Whether a later step would never run because this one execs a command.
    fn execs(&self) -> bool {
        self.argv.iter().any(|a| a == "--")
    }
}

/// Splits `argv` (program name first) at standalone `&&` arguments, up to the first `--`:
/// what follows `--` is the command a `wait-for` step execs, `&&` included. `None` when there
/// is no separator, i.e. one applet as usual.
pub(crate) fn split(argv: &[OsString]) -> Result<Option<Vec<Step>>, Error> {
    let Some((program, rest)) = argv.split_first() else { return Ok(None) };
    let end = rest.iter().position(|a| a == "--").unwrap_or(rest.len());
    if !rest[..end].iter().any(|a| a == SEPARATOR) {
        return Ok(None);
    }
    let mut segments: Vec<Vec<OsString>> = rest[..end].split(|a| a == SEPARATOR).map(<[_]>::to_vec).collect();
    if let Some(empty) = segments.iter().position(Vec::is_empty) {
        return Err(Error::usage(format!("step {} of the command line is empty", empty + 1))
            .with_hint(format!("separate steps with one '{SEPARATOR}' each, with an applet and its arguments between them")));
    }
    if let Some(last) = segments.last_mut() {
        last.extend_from_slice(&rest[end..]);
    }
    let shared = shared_options(&segments[0]).to_vec();
    let count = segments.len();
    let steps = segments
        .into_iter()
        .enumerate()
        .map(|(index, segment)| {
            let mut argv = vec![program.clone()];
            if index > 0 {
                argv.extend(shared.iter().cloned());
            }
            argv.extend(segment);
            Step { index, count, name: None, argv }
        })
        .collect();
    Ok(Some(steps))
}

/// The global options before the applet name of the first step.
fn shared_options(first: &[OsString]) -> &[OsString] {
    let mut i = 0;
    while let Some(arg) = first.get(i) {
        let text = arg.to_string_lossy();
        if GLOBAL_OPTIONS_WITH_VALUE.contains(&text.as_ref()) {
            i += 2;
        } else if text.starts_with('-') {
            i += 1;
        } else {
            return &first[..i];
        }
    }
    first
}

/// The steps listed in a YAML `file`, each run with the options of `argv` (the command line
/// that named the file, without `--steps FILE`).
pub(crate) fn from_file(file: &Path, argv: &[OsString]) -> Result<Vec<Step>, Error> {
    let shown = file.display();
    let text = read(file).map_err(|e| {
        Error::new(Kind::Usage, e.context(format!("cannot read the steps file {shown}")))
            .with_hint("mount the ConfigMap that holds it, or fix the path given to --steps")
    })?;
    let listed = parse(&text).map_err(|e| {
        Error::new(Kind::Usage, e.context(format!("steps file {shown}")))
            .with_hint("expected a list of steps, each a list of arguments or {name: …, args: [applet, …]}")
    })?;
    let (program, rest) = argv.split_first().map_or((OsString::from("podinit"), &[][..]), |(p, r)| (p.clone(), r));
    let shared = without_steps_option(rest);
    let count = listed.len();
    let steps: Vec<Step> = listed
        .into_iter()
        .enumerate()
        .map(|(index, (name, args))| {
            let mut argv = vec![program.clone()];
            argv.extend(shared.iter().cloned());
            argv.extend(args.into_iter().map(OsString::from));
            Step { index, count, name, argv }
        })
        .collect();
    if let Some(step) = steps.iter().take(count.saturating_sub(1)).find(|s| s.execs()) {
        return Err(Error::usage(format!(
            "steps file {shown}: {} execs a command ('--'), so the steps after it would never run",
            step.label()
        ))
        .with_hint("make the step that execs the app the last one"));
    }
    Ok(steps)
}

fn read(file: &Path) -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    let f = std::fs::File::open(file)?;
    f.take(MAX_FILE_LEN + 1).read_to_string(&mut text).context("not UTF-8 text")?;
    anyhow::ensure!(text.len() as u64 <= MAX_FILE_LEN, "larger than 1 MiB");
    Ok(text)
}

/// `--steps FILE` and `--steps=FILE` taken out of the arguments.
fn without_steps_option(args: &[OsString]) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut skip_next = false;
    for arg in args {
        if std::mem::take(&mut skip_next) {
            continue;
        }
        if arg == "--steps" {
            skip_next = true;
        } else if !arg.as_encoded_bytes().starts_with(b"--steps=") {
            out.push(arg.clone());
        }
    }
    out
}

/// A named or unnamed list of arguments per step. Accepted shapes:
///
/// ```yaml
/// steps:                                   # or the list alone, without `steps:`
///   - [sysctl, vm.max_map_count=262144]    # a step is its arguments…
///   - name: database                       # …or a name and its arguments
///     args: [wait-for, tcp://postgres:5432, --timeout, 2m]
/// ```
fn parse(text: &str) -> anyhow::Result<Vec<(Option<String>, Vec<String>)>> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| anyhow::anyhow!("not valid YAML: {e}"))?;
    anyhow::ensure!(docs.len() <= 1, "holds {} YAML documents; put all steps in one", docs.len());
    let Some(doc) = docs.into_iter().next() else { anyhow::bail!("is empty") };
    let list = match doc {
        Yaml::Array(list) => list,
        Yaml::Hash(mut map) => {
            let steps = map.remove(&Yaml::String("steps".into())).ok_or_else(|| anyhow::anyhow!("has no 'steps' list"))?;
            if let Some((key, _)) = map.into_iter().next() {
                anyhow::bail!("has an unknown key {}; only 'steps' is allowed", describe(&key));
            }
            match steps {
                Yaml::Array(list) => list,
                other => anyhow::bail!("'steps' is {}, not a list", describe(&other)),
            }
        }
        other => anyhow::bail!("is {}, not a list of steps", describe(&other)),
    };
    anyhow::ensure!(!list.is_empty(), "lists no steps");
    list.into_iter().enumerate().map(|(i, step)| parse_step(step).with_context(|| format!("step {}", i + 1))).collect()
}

fn parse_step(step: Yaml) -> anyhow::Result<(Option<String>, Vec<String>)> {
    let (name, args) = match step {
        Yaml::Array(args) => (None, args),
        Yaml::Hash(map) => {
            let (mut name, mut args) = (None, None);
            for (key, value) in map {
                match key.as_str() {
                    Some("name") => {
                        name = Some(value.as_str().map(str::to_owned).ok_or_else(|| anyhow::anyhow!("'name' must be a string"))?)
                    }
                    Some("args") => match value {
                        Yaml::Array(list) => args = Some(list),
                        other => anyhow::bail!("'args' is {}, not a list", describe(&other)),
                    },
                    _ => anyhow::bail!("unknown key {}; a step has 'name' and 'args'", describe(&key)),
                }
            }
            (name, args.ok_or_else(|| anyhow::anyhow!("has no 'args' list"))?)
        }
        other => anyhow::bail!("is {}, not a list of arguments", describe(&other)),
    };
    anyhow::ensure!(!args.is_empty(), "has no arguments; the first is the applet");
    let args = args.iter().map(scalar).collect::<anyhow::Result<Vec<_>>>()?;
    let before_command = args.iter().take_while(|a| *a != "--");
    anyhow::ensure!(
        !before_command.into_iter().any(|a| a == SEPARATOR),
        "contains '{SEPARATOR}'; in a file, each step is its own list item"
    );
    Ok((name, args))
}

/// A YAML scalar as the argument it spells (`30` and `true` as written).
fn scalar(value: &Yaml) -> anyhow::Result<String> {
    match value {
        Yaml::String(s) | Yaml::Real(s) => Ok(s.clone()),
        Yaml::Integer(i) => Ok(i.to_string()),
        Yaml::Boolean(b) => Ok(b.to_string()),
        other => anyhow::bail!("an argument is {}; quote it as a string", describe(other)),
    }
}

fn describe(value: &Yaml) -> String {
    match value {
        Yaml::String(s) => format!("'{s}'"),
        Yaml::Array(_) => "a list".into(),
        Yaml::Hash(_) => "a mapping".into(),
        Yaml::Null => "empty (null)".into(),
        Yaml::Integer(i) => format!("the number {i}"),
        Yaml::Real(r) => format!("the number {r}"),
        Yaml::Boolean(b) => format!("the boolean {b}"),
        _ => "not a value".into(),
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::disallowed_methods, reason = "fixtures are written plainly")]

    use super::*;

    fn argv(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn argvs(steps: &[Step]) -> Vec<Vec<OsString>> {
        steps.iter().map(|s| s.argv.clone()).collect()
    }

    #[test]
    fn one_applet_is_not_split() {
        assert_eq!(split(&argv(&["podinit", "sysctl", "a=1"])).unwrap(), None);
        // `&&` after `--` belongs to the command wait-for execs.
        assert_eq!(split(&argv(&["podinit", "wait-for", "tcp://x:1", "--", "sh", "&&", "x"])).unwrap(), None);
    }

    #[test]
    fn steps_share_the_options_before_the_first_applet() {
        let steps =
            split(&argv(&["podinit", "--timeout", "5m", "-q", "sysctl", "a=1", "&&", "wait-for", "tcp://db:5432", "--", "app", "&&", "x"]))
                .unwrap()
                .unwrap();
        assert_eq!(
            argvs(&steps),
            vec![
                argv(&["podinit", "--timeout", "5m", "-q", "sysctl", "a=1"]),
                argv(&["podinit", "--timeout", "5m", "-q", "wait-for", "tcp://db:5432", "--", "app", "&&", "x"]),
            ]
        );
        assert_eq!(steps[1].label(), "step 2/2");
    }

    #[test]
    fn an_empty_step_is_a_usage_error() {
        for line in [
            &["podinit", "&&", "sysctl", "a"][..],
            &["podinit", "sysctl", "a", "&&"],
            &["podinit", "sysctl", "a", "&&", "&&", "sysctl", "b"],
        ] {
            let err = split(&argv(line)).unwrap_err();
            assert_eq!(err.kind(), Kind::Usage, "{line:?}");
            assert!(err.message().contains("is empty"), "{}", err.message());
        }
    }

    #[test]
    fn yaml_steps_in_both_shapes() {
        let text =
            "steps:\n  - [sysctl, vm.max_map_count=262144]\n  - name: database\n    args: [wait-for, tcp://pg:5432, --timeout, 30]\n";
        assert_eq!(
            parse(text).unwrap(),
            vec![
                (None, vec!["sysctl".to_owned(), "vm.max_map_count=262144".to_owned()]),
                (Some("database".to_owned()), vec!["wait-for".into(), "tcp://pg:5432".into(), "--timeout".into(), "30".into()]),
            ]
        );
        assert_eq!(parse("- [sysctl, a=1]\n").unwrap(), vec![(None, vec!["sysctl".to_owned(), "a=1".to_owned()])]);
    }

    #[test]
    fn bad_yaml_names_what_is_wrong() {
        for (text, expected) in [
            ("", "is empty"),
            ("steps: []", "lists no steps"),
            ("steps: [sysctl]", "step 1: is 'sysctl', not a list of arguments"),
            ("stepz: []", "has no 'steps' list"),
            ("- {args: [sysctl], run: x}", "step 1: unknown key 'run'"),
            ("- {name: x}", "step 1: has no 'args' list"),
            ("- [sysctl, {a: 1}]", "an argument is a mapping"),
            ("- [sysctl, a, '&&', sysctl, b]", "each step is its own list item"),
            ("- [sysctl, a]\n- [wait-for, x, --, sh, '&&', y]\n- []", "step 3: has no arguments"),
            ("- [a\n", "not valid YAML"),
            ("--- [[a]]\n--- [[b]]\n", "2 YAML documents"),
        ] {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn file_steps_take_the_other_options_and_only_the_last_may_exec() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("steps.yaml");
        std::fs::write(&file, "- [sysctl, a=1]\n- name: app\n  args: [wait-for, 'file:///x', --, app]\n").unwrap();
        let steps = from_file(&file, &argv(&["podinit", "-q", "--steps", "f", "--steps=g", "--timeout=1m"])).unwrap();
        assert_eq!(
            argvs(&steps),
            vec![
                argv(&["podinit", "-q", "--timeout=1m", "sysctl", "a=1"]),
                argv(&["podinit", "-q", "--timeout=1m", "wait-for", "file:///x", "--", "app"])
            ]
        );
        assert_eq!(steps[1].label(), "step 2/2 \"app\"");

        std::fs::write(&file, "- [wait-for, 'file:///x', --, app]\n- [sysctl, a=1]\n").unwrap();
        let err = from_file(&file, &argv(&["podinit"])).unwrap_err();
        assert!(err.message().contains("step 1/2 execs a command"), "{}", err.message());

        let err = from_file(&dir.path().join("missing.yaml"), &argv(&["podinit"])).unwrap_err();
        assert_eq!(err.kind(), Kind::Usage);
        assert!(err.message().contains("cannot read the steps file"), "{}", err.message());
    }
}
