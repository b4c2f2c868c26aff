//! Secrets out of what podinit prints: URLs with their passwords masked, I/O errors in short.
//!
//! Every applet that logs a URL given by the operator (a database, a health endpoint, a store)
//! shows it through [`url`], so a password in the user part or in a query parameter
//! (`?password=`, `sslkey=`, `…token…`, `…secret…`) never reaches a log line, an error or the
//! termination message.

/// The URL with its password and secret-looking query values replaced by `***`.
pub fn url(url: &url::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
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

fn is_secret_param(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password") || k.contains("secret") || k.contains("token") || k == "sslkey"
}

/// "connection refused" rather than "Connection refused (os error 111)".
pub fn io_reason(err: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match err.kind() {
        ErrorKind::ConnectionRefused => "connection refused".into(),
        ErrorKind::TimedOut => "timed out".into(),
        ErrorKind::NotFound => "not found".into(),
        ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let text = err.to_string();
            text.split(" (os error").next().unwrap_or(&text).to_owned()
        }
    }
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
        assert_eq!(url(&u("postgres://app:s3cr3t@db:5432/app?sslmode=disable")), "postgres://app:***@db:5432/app?sslmode=disable");
        let shown = url(&u("postgres://app@db/app?password=hunter2&application_name=x&sslkey=/k&api_token=t"));
        assert!(!shown.contains("hunter2") && !shown.contains("/k") && !shown.contains("=t"), "{shown}");
        assert!(shown.contains("application_name=x"), "{shown}");
        assert_eq!(url(&u("http://example.org/healthz")), "http://example.org/healthz");
        assert_eq!(url_text("postgres://app:s3cr3t@"), "***@");
        assert!(!url_text("http://user:s3cr3t@host/").contains("s3cr3t"));
    }

    #[test]
    fn io_errors_in_short() {
        assert_eq!(io_reason(&std::io::Error::from(std::io::ErrorKind::ConnectionRefused)), "connection refused");
        assert_eq!(io_reason(&std::io::Error::from_raw_os_error(104)), "Connection reset by peer");
    }
}
