//! Path operands with `*`, `?` and `[...]`, expanded as sh expands them: a pod's `command` has
//! no shell, and `cp /certs/*.key /data/` is what a maintainer pastes.
//!
//! The rules are sh's (POSIX 2.13.3): each component with a pattern matches the names in its
//! directory (never `.` or `..`; a name starting with `.` only when the pattern's component
//! does), results sorted by byte value (the C locale a container runs in), a component before
//! the last matching directories only. An operand that names an existing file as written is
//! that file (a file literally called `*.key` is not expanded), and a pattern matching nothing
//! stays as written, so the applet's own "not found" names it. `\` quotes the next character.
//! The directories a pattern lists are resolved as the operator's paths are; what it finds
//! there is the volume's, not the operator's: a link found is kept only when it leads inside
//! the directory listed (a ConfigMap volume's visible names lead into its `..data`), else left
//! out with a warning, so a link an app planted (`/data/x -> /etc/shadow`) never becomes an
//! operand that `chmod`, `chown` or `cp` would follow. A pattern reads at most [`MAX_LISTED`]
//! names and yields at most [`MAX_MATCHES`].

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::path::PathBuf;

use podinit_core::Error;

/// Names one run may list while expanding patterns.
pub(crate) const MAX_LISTED: usize = 1_000_000;

/// Paths one run's patterns may expand to.
pub(crate) const MAX_MATCHES: usize = 100_000;

/// Expands every operand (see the module docs).
pub(crate) fn expand(operands: Vec<PathBuf>, follows: bool) -> Result<Vec<PathBuf>, Error> {
    let mut budget = Budget { listed: 0, matches: 0, max_listed: MAX_LISTED, max_matches: MAX_MATCHES };
    let mut out = Vec::with_capacity(operands.len());
    for operand in operands {
        let bytes = operand.as_os_str().as_bytes();
        if !has_pattern(bytes) || std::fs::symlink_metadata(&operand).is_ok() {
            out.push(operand);
            continue;
        }
        let found = budget.expand(bytes, follows).map_err(|e| Error::usage(format!("{}: {e}", operand.display())))?;
        if found.is_empty() {
            out.push(operand);
        } else {
            out.extend(found.into_iter().map(|p| PathBuf::from(OsString::from_vec(p))));
        }
    }
    Ok(out)
}

/// Names listed and paths found so far, against their limits.
struct Budget {
    listed: usize,
    matches: usize,
    max_listed: usize,
    max_matches: usize,
}

impl Budget {
    /// The paths `pattern` matches, sorted; empty when none.
    fn expand(&mut self, pattern: &[u8], follows: bool) -> anyhow::Result<Vec<Vec<u8>>> {
        let absolute = pattern.first() == Some(&b'/');
        let parts: Vec<&[u8]> = pattern.split(|&b| b == b'/').filter(|p| !p.is_empty()).collect();
        // Paths so far, each with its text (the prefix as written, then names found).
        let mut paths: Vec<Vec<u8>> = vec![if absolute { b"/".to_vec() } else { Vec::new() }];
        let trailing = pattern.last() == Some(&b'/');
        // Whether the paths so far come from a listing (the volume's names, not the operator's).
        let mut found = false;
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let mut next = Vec::new();
            for path in &paths {
                if !has_pattern(part) {
                    let candidate = join(path, &unquote(part));
                    // Below a name the pattern found, the next name is the volume's too.
                    let admitted = !found || {
                        let parent = std::fs::canonicalize(OsStr::from_bytes(path)).ok();
                        admit(&candidate, parent.as_deref(), !last || trailing, follows)
                    };
                    if admitted {
                        next.push(candidate);
                    }
                    continue;
                }
                let dir = if path.is_empty() { PathBuf::from(".") } else { PathBuf::from(OsStr::from_bytes(path)) };
                let Ok(entries) = std::fs::read_dir(&dir) else { continue };
                let listed = std::fs::canonicalize(&dir).ok();
                for entry in entries {
                    self.listed += 1;
                    if self.listed > self.max_listed {
                        anyhow::bail!("the pattern lists more than {} names: name the files, or copy the directory", self.max_listed);
                    }
                    let Ok(entry) = entry else { continue };
                    let name = entry.file_name().into_vec();
                    if name.first() == Some(&b'.') && part.first() != Some(&b'.') {
                        continue;
                    }
                    if !matches(part, &name) {
                        continue;
                    }
                    // Before the last component (or before a trailing `/`) only directories
                    // lead on, as in sh.
                    let candidate = join(path, &name);
                    if admit(&candidate, listed.as_deref(), !last || trailing, follows) {
                        next.push(candidate);
                    }
                }
            }
            paths = next;
            found |= has_pattern(part);
            if paths.is_empty() {
                return Ok(paths);
            }
        }
        if trailing {
            paths.iter_mut().for_each(|p| p.push(b'/'));
        }
        // Literal components after the last pattern must exist, as in sh; sorted as a whole.
        paths.retain(|p| std::fs::symlink_metadata(OsStr::from_bytes(p)).is_ok());
        paths.sort();
        self.matches += paths.len();
        if self.matches > self.max_matches {
            anyhow::bail!("the patterns match more than {} paths: name a directory instead", self.max_matches);
        }
        Ok(paths)
    }
}

/// Whether a name a pattern found is kept: only a directory where `dir` is asked (a path
/// goes on below it); a link only when it leads inside `listed` (the directory the pattern
/// listed, resolved) if it will be followed (`dir`, or an applet that `follows` its operands),
/// while one the applet takes as the link itself (`rm`, `chown -R`) is kept.
fn admit(candidate: &[u8], listed: Option<&std::path::Path>, dir: bool, follows: bool) -> bool {
    let path = std::path::Path::new(OsStr::from_bytes(candidate));
    let Ok(meta) = std::fs::symlink_metadata(path) else { return false };
    if !meta.file_type().is_symlink() {
        return !dir || meta.is_dir();
    }
    if !dir && !follows {
        return true;
    }
    // Where a directory is asked, a link to anything else is simply no match.
    if dir && !std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
        return false;
    }
    let inside = match (std::fs::canonicalize(path), listed) {
        (Ok(target), Some(listed)) => target.starts_with(listed),
        _ => false,
    };
    if !inside {
        tracing::warn!("{}: a link leading outside the directory the pattern lists: left out of its matches", path.display());
        return false;
    }
    true
}

fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = prefix.to_vec();
    if !path.is_empty() && path.last() != Some(&b'/') {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

/// Whether `text` has an unquoted `*`, `?` or `[` (a `[` with no closing `]` is literal).
pub(crate) fn has_pattern(text: &[u8]) -> bool {
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'\\' => i += 1,
            b'*' | b'?' => return true,
            b'[' if class_end(text, i).is_some() => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// `text` without its quoting backslashes.
fn unquote(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut quoted = false;
    for &b in text {
        if b == b'\\' && !quoted {
            quoted = true;
            continue;
        }
        quoted = false;
        out.push(b);
    }
    out
}

/// The index of the `]` closing the bracket expression opened at `open`, if any.
fn class_end(pattern: &[u8], open: usize) -> Option<usize> {
    let mut i = open + 1;
    if matches!(pattern.get(i), Some(b'!' | b'^')) {
        i += 1;
    }
    // A `]` first in the list is a member, not the end.
    if pattern.get(i) == Some(&b']') {
        i += 1;
    }
    while i < pattern.len() {
        match pattern[i] {
            b']' => return Some(i),
            b'/' => return None,
            _ => i += 1,
        }
    }
    None
}

/// Whether `byte` is in the bracket expression `class` (without its brackets).
fn in_class(class: &[u8], byte: u8) -> bool {
    let (negated, members) = match class.first() {
        Some(b'!' | b'^') => (true, &class[1..]),
        _ => (false, class),
    };
    let mut found = false;
    let mut i = 0;
    while i < members.len() {
        let low = members[i];
        if i + 2 < members.len() && members[i + 1] == b'-' {
            found |= (low..=members[i + 2]).contains(&byte);
            i += 3;
        } else {
            found |= low == byte;
            i += 1;
        }
    }
    found != negated
}

/// Whether `name` matches the one-component `pattern` (fnmatch without flags; time at
/// most pattern × name: a failed match is retried from the last `*` only).
pub(crate) fn matches(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, n));
                p += 1;
                continue;
            }
            Some(b'?') => Some(p + 1),
            Some(b'[') => match class_end(pattern, p) {
                Some(end) if in_class(&pattern[p + 1..end], name[n]) => Some(end + 1),
                Some(_) => None,
                None => (name[n] == b'[').then_some(p + 1),
            },
            Some(b'\\') if p + 1 < pattern.len() => (pattern[p + 1] == name[n]).then_some(p + 2),
            Some(&c) => (c == name[n]).then_some(p + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                p = next;
                n += 1;
            }
            (None, Some((after, from))) => {
                p = after;
                n = from + 1;
                star = Some((after, from + 1));
            }
            (None, None) => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_as_fnmatch_does() {
        for (pattern, name, want) in [
            ("*.key", "tls.key", true),
            ("*.key", "tls.crt", false),
            ("*", "", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("[ab]*", "bx", true),
            ("[!ab]*", "bx", false),
            ("[^ab]*", "cx", true),
            ("[a-c]", "b", true),
            ("[a-c]", "d", false),
            ("[]]", "]", true),
            ("[", "[", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("*a*b*c", "xaybzc", true),
            ("*a*b*c", "xaybz", false),
            ("**", "anything", true),
        ] {
            assert_eq!(matches(pattern.as_bytes(), name.as_bytes()), want, "{pattern} vs {name}");
        }
    }

    #[test]
    fn a_long_name_against_many_stars_is_not_exponential() {
        let name = vec![b'a'; 100_000];
        let pattern = b"*a*a*a*a*a*a*a*a*b".to_vec();
        let started = std::time::Instant::now();
        assert!(!matches(&pattern, &name));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    #[expect(clippy::disallowed_methods, reason = "fixtures are written plainly")]
    fn a_pattern_over_its_budget_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..10 {
            std::fs::create_dir(dir.path().join(format!("d{i}"))).unwrap();
            std::fs::write(dir.path().join(format!("d{i}/f")), "").unwrap();
        }
        let pattern = format!("{}/*/f", dir.path().display()).into_bytes();
        let mut roomy = Budget { listed: 0, matches: 0, max_listed: 100, max_matches: 100 };
        assert_eq!(roomy.expand(&pattern, true).unwrap().len(), 10, "sorted, each d*/f");
        let mut listing = Budget { listed: 0, matches: 0, max_listed: 5, max_matches: 100 };
        assert!(listing.expand(&pattern, true).unwrap_err().to_string().contains("more than 5 names"));
        let mut matching = Budget { listed: 0, matches: 0, max_listed: 100, max_matches: 3 };
        assert!(matching.expand(&pattern, true).unwrap_err().to_string().contains("more than 3 paths"));
    }

    #[test]
    fn patterns_are_found() {
        assert!(has_pattern(b"/certs/*.key"));
        assert!(has_pattern(b"a[0-9]"));
        assert!(!has_pattern(b"a[0-9"));
        assert!(!has_pattern(b"\\*"));
        assert!(!has_pattern(b"/plain/path"));
    }
}
