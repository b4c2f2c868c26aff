//! Secrets out of what podinit prints: URLs with their passwords masked, I/O errors in short.
//!
//! Every applet that logs a URL given by the operator (a database, a health endpoint, a store)
//! shows it through [`url`], so a user name or password in the user part (a token is often
//! the user name alone: `https://ghp_…@github.com/`) or in a query parameter (`?password=`,
//! `sslkey=`, `…token…`, `…secret…`) never reaches a log line, an error or the termination
//! message.

/// The URL with its user part (name and password) and secret-looking query values replaced
/// by `***`.
pub fn url(url: &url::Url) -> String {
    let mut shown = url.clone();
    if !shown.username().is_empty() {
        let _ = shown.set_username("***");
    }
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    // A fragment is never sent; it may be the rest of a password whose `#` was not encoded.
    if shown.fragment().is_some() {
        shown.set_fragment(Some("***"));
    }
    if shown.query_pairs().any(|(k, _)| is_secret_param(&k)) {
        let pairs: Vec<(String, String)> = shown
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_param(&k) { "***".to_owned() } else { v.into_owned() };
                (k.into_owned(), v)
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.to_string()
}

/// [`url`] for text that may not parse as a URL: then everything before an `@` is masked.
pub fn url_text(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(parsed) => url(&parsed),
        Err(_) => match text.split_once('@') {
            Some((_, host)) => format!("***@{host}"),
            None => text.to_owned(),
        },
    }
}

/// Whether a query parameter's value is to be hidden. Over-masking is harmless, a leak is
/// not: a name is secret when, lowercased and without `-`/`_`, it contains one of
/// [`SECRET_WORDS`] (`api_key`, `X-Amz-Signature`, `access_token`, `client_secret`, …) or is
/// one of the short names in [`SECRET_NAMES`] (`sig`, `key`, `auth`, …).
fn is_secret_param(key: &str) -> bool {
    let k: String = key.chars().filter(|c| !matches!(c, '-' | '_' | '.')).map(|c| c.to_ascii_lowercase()).collect();
    SECRET_WORDS.iter().any(|w| k.contains(w)) || SECRET_NAMES.contains(&k.as_str())
}

/// Parts of a parameter name that mark its value secret wherever they appear.
const SECRET_WORDS: &[&str] =
    &["pass", "pwd", "secret", "token", "key", "auth", "signature", "credential", "session", "cookie", "jwt", "bearer", "private"];

/// Short names that are secret only as a whole (as parts they are too common: `design`).
const SECRET_NAMES: &[&str] = &["sig", "code", "otp", "pin", "hmac", "nonce", "sas", "sv", "se"];

/// "connection refused" rather than "Connection refused (os error 111)".
pub fn io_reason(err: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match err.kind() {
        ErrorKind::ConnectionRefused => "connection refused".into(),
        ErrorKind::TimedOut => "timed out".into(),
        ErrorKind::NotFound => "not found".into(),
        ErrorKind::PermissionDenied => "permission denied".into(),
        ErrorKind::StorageFull => "no space left on device".into(),
        ErrorKind::ReadOnlyFilesystem => "read-only file system".into(),
        _ => {
            let text = err.to_string();
            text.split(" (os error").next().unwrap_or(&text).to_owned()
        }
    }
}

/// Every error of `err`'s chain, `err` first, looking into the error an `io::Error` wraps (its
/// `source` skips it, and TLS connectors and gix wrap their errors in `io::Error`s).
pub fn chain<'a>(err: &'a (dyn std::error::Error + 'static)) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e| {
        let wrapped = e.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref);
        wrapped.map(|inner| inner as &(dyn std::error::Error + 'static)).or_else(|| e.source())
    })
}

/// The deepest cause of an error chain, which is where the useful words are ("connection
/// refused", "invalid peer certificate: UnknownIssuer"); I/O errors as in [`io_reason`].
pub fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut source = err;
    while let Some(next) = source.source() {
        source = next;
    }
    match source.downcast_ref::<std::io::Error>() {
        Some(io) => io_reason(io),
        None => source.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_user_part_and_query_are_masked() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(url(&u("postgres://app:s3cr3t@db:5432/app?sslmode=disable")), "postgres://***:***@db:5432/app?sslmode=disable");
        // A token as the user name alone (GitHub, GitLab, Bitbucket URLs).
        assert_eq!(url(&u("https://ghp_0123456789abcdef@git.example.com/x.tar.gz")), "https://***@git.example.com/x.tar.gz");
        let shown = url(&u("postgres://app@db/app?password=hunter2&application_name=x&sslkey=/k&api_token=t"));
        assert!(!shown.contains("hunter2") && !shown.contains("/k") && !shown.contains("=t"), "{shown}");
        assert!(shown.contains("application_name=x"), "{shown}");
        assert_eq!(url(&u("http://example.org/healthz")), "http://example.org/healthz");
        assert_eq!(url_text("postgres://app:s3cr3t@"), "***@");
        assert!(!url_text("http://user:s3cr3t@host/").contains("s3cr3t"));
        // An unencoded '#' in a password: the rest after it is a fragment, masked too.
        assert_eq!(url(&u("redis://:p@ss#word@cache")), "redis://:***@ss#***");
    }

    #[test]
    fn the_usual_secret_parameter_names_are_masked() {
        let secret = [
            "api_key",
            "apikey",
            "api-key",
            "key",
            "access_token",
            "token",
            "auth",
            "sig",
            "signature",
            "X-Amz-Signature",
            "X-Amz-Credential",
            "X-Amz-Security-Token",
            "password",
            "passwd",
            "pwd",
            "secret",
            "client_secret",
            "sslkey",
            "private_key",
            "session_id",
            "jwt",
            "code",
            "AWSAccessKeyId",
            "Signature",
            "authorization",
            "sv",
        ];
        for name in secret {
            let shown = url(&url::Url::parse(&format!("https://h/p?{name}=hunter2&x=1")).unwrap());
            assert!(!shown.contains("hunter2"), "{name}: {shown}");
            assert!(shown.contains("x=1"), "{name}: {shown}");
        }
        for name in ["sslmode", "region", "versionId", "partNumber", "application_name", "timeout", "prefix", "list-type", "design"] {
            let shown = url(&url::Url::parse(&format!("https://h/p?{name}=visible")).unwrap());
            assert!(shown.contains("visible"), "{name} is not a secret: {shown}");
        }
    }

    #[test]
    fn io_errors_in_short() {
        assert_eq!(io_reason(&std::io::Error::from(std::io::ErrorKind::ConnectionRefused)), "connection refused");
        assert_eq!(io_reason(&std::io::Error::from_raw_os_error(104)), "Connection reset by peer");
    }
}
