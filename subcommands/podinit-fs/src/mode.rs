//! File modes as chmod takes them: octal (`0640`, `2775`) or symbolic (`u=rwX,go=`, `g+s`,
//! `a-w`, `+x`), with GNU chmod's meaning: `X` is execute for directories and for files that
//! already have an execute bit; a clause without `u`, `g`, `o` or `a` applies to all, except
//! the bits set in the umask; `=` clears the bits of the classes it names, then sets.

/// A parsed mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Octal: sets the permission and special bits as given, except that a directory keeps
    /// its setuid and setgid bits unless the mode has five digits or more (`00775`), as GNU
    /// chmod does (an fsGroup volume's setgid directories survive `chmod -R 0775`).
    Octal { mode: u32, exact: bool },
    /// Symbolic clauses, applied in order.
    Symbolic(Vec<Clause>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Clause {
    /// Bits of the classes named (`u` 0o4700, `g` 0o2070, `o` 0o1007); `None` for none named.
    who: Option<u32>,
    ops: Vec<(char, Perm)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Perm {
    /// `rwxXst` letters.
    Letters(String),
    /// `u`, `g` or `o`: copy that class's current bits.
    Copy(char),
}

const U: u32 = 0o4700;
const G: u32 = 0o2070;
const O: u32 = 0o1007;

impl Mode {
    /// Parses `0640` or `u=rwX,go=`.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("'{text}' is not a mode (e.g. 0640, u=rwX,go=, g+s)");
        if !text.is_empty() && text.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            let mode = u32::from_str_radix(text, 8).map_err(|_| bad())?;
            return if mode <= 0o7777 { Ok(Self::Octal { mode, exact: text.len() > 4 }) } else { Err(bad()) };
        }
        let mut clauses = Vec::new();
        for part in text.split(',') {
            let who_len = part.find(['+', '-', '=']).ok_or_else(bad)?;
            let mut who = 0;
            for c in part[..who_len].chars() {
                who |= match c {
                    'u' => U,
                    'g' => G,
                    'o' => O,
                    'a' => U | G | O,
                    _ => return Err(bad()),
                };
            }
            let mut ops = Vec::new();
            let mut rest = &part[who_len..];
            while let Some(op) = rest.chars().next().filter(|c| matches!(c, '+' | '-' | '=')) {
                rest = &rest[1..];
                let end = rest.find(['+', '-', '=']).unwrap_or(rest.len());
                let perm = &rest[..end];
                rest = &rest[end..];
                let perm = match perm {
                    "u" | "g" | "o" => Perm::Copy(perm.chars().next().unwrap_or('u')),
                    letters if letters.chars().all(|c| "rwxXst".contains(c)) => Perm::Letters(letters.to_owned()),
                    _ => return Err(bad()),
                };
                ops.push((op, perm));
            }
            if ops.is_empty() || !rest.is_empty() {
                return Err(bad());
            }
            clauses.push(Clause { who: (who != 0).then_some(who), ops });
        }
        Ok(Self::Symbolic(clauses))
    }

    /// The mode a file with `old` (permission and special bits) gets; `is_dir` for `X`;
    /// `umask` masks clauses that name no class.
    pub(crate) fn apply(&self, old: u32, is_dir: bool, umask: u32) -> u32 {
        let clauses = match self {
            Self::Octal { mode, exact } => {
                return if is_dir && !exact { mode | (old & 0o6000) } else { *mode };
            }
            Self::Symbolic(clauses) => clauses,
        };
        let mut mode = old & 0o7777;
        for clause in clauses {
            let (who, mask) = match clause.who {
                Some(who) => (who, 0o7777),
                None => (U | G | O, !umask & 0o7777),
            };
            for (op, perm) in &clause.ops {
                let bits = match perm {
                    Perm::Letters(letters) => {
                        let mut b = 0;
                        for c in letters.chars() {
                            b |= match c {
                                'r' => 0o444,
                                'w' => 0o222,
                                'x' => 0o111,
                                'X' if is_dir || mode & 0o111 != 0 => 0o111,
                                's' => 0o6000,
                                't' => 0o1000,
                                _ => 0,
                            };
                        }
                        b & who
                    }
                    Perm::Copy(from) => {
                        let (shift, class) = match from {
                            'u' => (6, mode & 0o700),
                            'g' => (3, mode & 0o070),
                            _ => (0, mode & 0o007),
                        };
                        let rwx = class >> shift;
                        (rwx << 6 | rwx << 3 | rwx) & who & 0o777
                    }
                };
                match op {
                    '+' => mode |= bits & mask,
                    '-' => mode &= !(bits & mask),
                    _ => {
                        // `=`: the classes named (all, when none is) lose their permission bits,
                        // setuid with u, setgid with g and sticky with o (a directory keeps
                        // setuid and setgid, as GNU chmod does, unless `s` is given again),
                        // then get `bits`, less the umask when no class is named.
                        let special = if is_dir { 0o1000 } else { 0o7000 };
                        let cleared = who & (0o777 | special);
                        mode = (mode & !cleared) | (bits & mask);
                    }
                }
            }
        }
        mode
    }
}

/// The process's umask: from `/proc/self/status` (Linux 4.7 and later), which changes
/// nothing; otherwise set and put back at once (a file another thread created in between
/// would get 022).
pub(crate) fn umask() -> u32 {
    let from_proc = std::fs::read_to_string("/proc/self/status").ok().and_then(|status| {
        let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
        u32::from_str_radix(line.trim(), 8).ok()
    });
    from_proc.unwrap_or_else(|| {
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
        nix::sys::stat::umask(old);
        old.bits()
    })
}

/// `rwxr-x---` for a mode, with `s`/`S` and `t`/`T` for the special bits (GNU's `strmode`
/// without the file type, as its `chmod -v` prints it).
pub(crate) fn letters(mode: u32) -> String {
    let mut out = String::with_capacity(9);
    for (shift, special, set, unset) in [(6, 0o4000, 's', 'S'), (3, 0o2000, 's', 'S'), (0, 0o1000, 't', 'T')] {
        let bits = (mode >> shift) & 7;
        out.push(if bits & 4 != 0 { 'r' } else { '-' });
        out.push(if bits & 2 != 0 { 'w' } else { '-' });
        out.push(match (bits & 1 != 0, mode & special != 0) {
            (true, true) => set,
            (false, true) => unset,
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_as_gnu_prints_them() {
        assert_eq!(letters(0o644), "rw-r--r--");
        assert_eq!(letters(0o4755), "rwsr-xr-x");
        assert_eq!(letters(0o2640), "rw-r-S---");
        assert_eq!(letters(0o1777), "rwxrwxrwt");
        assert_eq!(letters(0o1776), "rwxrwxrwT");
    }

    fn m(text: &str, old: u32, dir: bool) -> u32 {
        Mode::parse(text).unwrap().apply(old, dir, 0o022)
    }

    #[test]
    fn octal_and_symbolic_modes_as_gnu_chmod_means_them() {
        assert_eq!(m("0640", 0o777, false), 0o640);
        assert_eq!(m("2775", 0o755, true), 0o2775);
        assert_eq!(m("u=rwX,go=", 0o644, false), 0o600);
        assert_eq!(m("u=rwX,go=", 0o755, false), 0o700, "X: the file is executable");
        assert_eq!(m("u=rwX,go=", 0o644, true), 0o700, "X: a directory");
        assert_eq!(m("g+s", 0o755, true), 0o2755);
        assert_eq!(m("a-w", 0o664, false), 0o444);
        assert_eq!(m("+x", 0o644, false), 0o755, "no class named: all, minus the umask");
        assert_eq!(m("+w", 0o444, false), 0o644, "the umask (022) keeps group and other from w");
        assert_eq!(m("go=u", 0o640, false), 0o666);
        assert_eq!(m("u+x,g-r", 0o644, false), 0o704);
        assert_eq!(m("o+t", 0o777, true), 0o1777);
        assert_eq!(m("u=rw,g=r,o=", 0o4777, false), 0o640, "= clears setuid with u");
        assert_eq!(m("=r", 0o666, false), 0o444, "= with no class clears all, sets less the umask");
        assert_eq!(m("0775", 0o2755, true), 0o2775, "a directory keeps setgid with four digits");
        assert_eq!(m("00775", 0o2755, true), 0o775, "five digits say it all");
        assert_eq!(m("0775", 0o2755, false), 0o775, "a file gets exactly the octal mode");
        for bad in ["", "8", "0o644", "17777", "u", "u+q", "z+x", "u+x,", "rw"] {
            assert!(Mode::parse(bad).is_err(), "{bad} must be refused");
        }
    }
}
