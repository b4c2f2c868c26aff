//! `OWNER[:GROUP]` as chown takes it: numbers, or names from `/etc/passwd` and `/etc/group`
//! (read as files: a static binary has no NSS, and a `FROM scratch` image has only these).
//!
//! GNU's forms: `OWNER`, `OWNER:GROUP`, `OWNER:` (the owner's login group), `:GROUP`; `.` is
//! accepted for `:` as in old chown. A number `N:` whose account `/etc/passwd` does not name
//! is `N:N`, as busybox makes it (GNU refuses any number before an empty group, `invalid
//! spec`; charts write `chown -R 10001: /data` only in busybox images).

use std::path::Path;

/// Who should own a file; `None` leaves that id as it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Owner {
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
}

impl Owner {
    /// Whether a file owned by `uid:gid` already has this owner.
    pub(crate) fn matches(&self, uid: u32, gid: u32) -> bool {
        self.uid.is_none_or(|u| u == uid) && self.gid.is_none_or(|g| g == gid)
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let id = |v: Option<u32>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
        write!(f, "{}:{}", id(self.uid), id(self.gid))
    }
}

/// Parses `spec` with the account files under `etc` (normally `/etc`).
pub(crate) fn parse(spec: &str, etc: &Path) -> Result<Owner, String> {
    let (user, group) =
        match spec.split_once(':').or_else(|| spec.split_once('.').filter(|(u, _)| !u.is_empty() && lookup(etc, "passwd", spec).is_none()))
        {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
    if user.is_empty() && group.is_none_or(str::is_empty) {
        return Err(format!("'{spec}' names no owner and no group"));
    }
    let mut owner = Owner::default();
    let mut login_group = None;
    if !user.is_empty() {
        match user.parse::<u32>() {
            Ok(uid) => owner.uid = Some(uid),
            Err(_) => {
                let entry = lookup(etc, "passwd", user).ok_or_else(|| {
                    format!(
                        "no user '{user}' in {}; give a numeric uid (the image has no account database of its own)",
                        etc.join("passwd").display()
                    )
                })?;
                owner.uid = Some(entry.0);
                login_group = entry.1;
            }
        }
    }
    match group {
        Some("") => {
            // `OWNER:`: the owner's login group, from /etc/passwd (by name or by number); a
            // number with no account is its own group, as in busybox.
            let uid = owner.uid.unwrap_or_default();
            owner.gid = Some(login_group.or_else(|| lookup_uid(etc, uid)).unwrap_or(uid));
        }
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => owner.gid = Some(gid),
            Err(_) => {
                let entry = lookup(etc, "group", g)
                    .ok_or_else(|| format!("no group '{g}' in {}; give a numeric gid", etc.join("group").display()))?;
                owner.gid = Some(entry.0);
            }
        },
        None => {}
    }
    Ok(owner)
}

/// The login group of the account with `uid` in `etc/passwd`.
fn lookup_uid(etc: &Path, uid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(etc.join("passwd")).ok()?;
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.get(2)?.parse::<u32>().ok()? == uid).then(|| fields.get(3)?.parse().ok()).flatten()
    })
}

/// `(id, login group)` of `name` in `etc/passwd` or `etc/group`.
fn lookup(etc: &Path, file: &str, name: &str) -> Option<(u32, Option<u32>)> {
    let text = std::fs::read_to_string(etc.join(file)).ok()?;
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() != Some(&name) {
            return None;
        }
        let id = fields.get(2)?.parse().ok()?;
        let group = if file == "passwd" { fields.get(3).and_then(|g| g.parse().ok()) } else { None };
        Some((id, group))
    })
}

#[cfg(test)]
mod tests {
    #![expect(clippy::disallowed_methods, reason = "fixtures are written plainly")]

    use super::*;

    #[test]
    fn numbers_names_and_gnu_forms() {
        let etc = tempfile::tempdir().unwrap();
        std::fs::write(etc.path().join("passwd"), "root:x:0:0::/root:/bin/sh\nnonroot:x:65532:65532::/:/\napp:x:1001:2000::/:/\n").unwrap();
        std::fs::write(etc.path().join("group"), "root:x:0:\nnonroot:x:65532:\nweb:x:2000:\n").unwrap();
        let p = |s: &str| parse(s, etc.path());
        assert_eq!(p("1001"), Ok(Owner { uid: Some(1001), gid: None }));
        assert_eq!(p("1001:2000"), Ok(Owner { uid: Some(1001), gid: Some(2000) }));
        assert_eq!(p(":2000"), Ok(Owner { uid: None, gid: Some(2000) }));
        assert_eq!(p("app:"), Ok(Owner { uid: Some(1001), gid: Some(2000) }), "the login group");
        assert_eq!(p("nonroot:web"), Ok(Owner { uid: Some(65532), gid: Some(2000) }));
        assert_eq!(p("app.web"), Ok(Owner { uid: Some(1001), gid: Some(2000) }));
        assert!(p("nobody").unwrap_err().contains("numeric uid"));
        assert!(p("app:nogroup").unwrap_err().contains("numeric gid"));
        assert!(p(":").is_err() && p("").is_err());
        assert_eq!(p("1001:"), Ok(Owner { uid: Some(1001), gid: Some(2000) }), "a number's login group");
        assert_eq!(p("4242:"), Ok(Owner { uid: Some(4242), gid: Some(4242) }), "no account: busybox's N:N");
    }
}
