//! One error type for every applet; its [`Kind`] decides the exit status.
//!
//! Applets build errors with `anyhow` and `.context("what we were doing")`; a bare
//! `anyhow::Error` becomes [`Kind::Failed`]. Where the cause matters to the operator
//! (bad input, missing privileges, a deadline) the applet says so with [`Error::new`] or
//! [`ResultExt::kind`], and may attach `hint:` lines that tell the operator what to do.
//! The codes are documented in `docs/exit-codes.md`; [`Kind::exit_code`] is the only
//! place that numbers them.

use std::fmt;

/// Why an applet failed, as far as the exit status is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The operation failed (exit 1). Includes bugs and anything not classified.
    Failed,
    /// Bad flag, bad value, bad file: the pod spec is wrong and a retry cannot help (exit 2).
    Usage,
    /// The container lacks a privilege, e.g. a read-only `/proc/sys` (exit 77, `EX_NOPERM`).
    NotPermitted,
    /// The deadline (`--timeout`) passed while waiting (exit 124, as `timeout(1)`).
    Timeout,
    /// The command after `--` exists but cannot be executed (exit 126, as a shell).
    CommandNotExecutable,
    /// The command after `--`, or the applet, does not exist (exit 127, as a shell).
    NotFound,
    /// Stopped by SIGTERM or SIGINT (exit 143 = 128 + 15, what the kubelet expects).
    Interrupted,
}

impl Kind {
    /// The process exit status for this kind. The contract of docs/exit-codes.md.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Failed => 1,
            Self::Usage => 2,
            Self::NotPermitted => 77,
            Self::Timeout => 124,
            Self::CommandNotExecutable => 126,
            Self::NotFound => 127,
            Self::Interrupted => 143,
        }
    }

    /// A short word for logs and JSON (`"usage"`, `"timeout"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::Usage => "usage",
            Self::NotPermitted => "not-permitted",
            Self::Timeout => "timeout",
            Self::CommandNotExecutable => "not-executable",
            Self::NotFound => "not-found",
            Self::Interrupted => "interrupted",
        }
    }
}

/// An applet failure: an `anyhow` chain for humans, a [`Kind`] for the exit status, and
/// hints that say what to do about it.
pub struct Error {
    kind: Kind,
    source: anyhow::Error,
    hints: Vec<String>,
}

impl Error {
    /// An error of the given kind.
    pub fn new(kind: Kind, source: impl Into<anyhow::Error>) -> Self {
        Self { kind, source: source.into(), hints: Vec::new() }
    }

    /// A usage error (exit 2) with the given message.
    pub fn usage(message: impl fmt::Display) -> Self {
        Self::new(Kind::Usage, anyhow::anyhow!("{message}"))
    }

    /// Adds a `hint:` line telling the operator what to do.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }

    /// Changes the kind, keeping message and hints.
    #[must_use]
    pub fn with_kind(mut self, kind: Kind) -> Self {
        self.kind = kind;
        self
    }

    /// Wraps the message in one more layer of context.
    #[must_use]
    pub fn context(mut self, context: impl fmt::Display + Send + Sync + 'static) -> Self {
        self.source = self.source.context(context);
        self
    }

    /// The kind, which decides the exit status.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The hints, in the order they were added.
    pub fn hints(&self) -> &[String] {
        &self.hints
    }

    /// The whole cause chain on one line: `outer: inner: root cause`. A cause that spans
    /// lines (the AWS SDK lists every credential provider it tried, one per line) is joined
    /// with `; `, so the error line and the termination message stay one line.
    pub fn message(&self) -> String {
        let text = format!("{:#}", self.source);
        if !text.contains('\n') {
            return text;
        }
        let mut joined = String::with_capacity(text.len());
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if !joined.is_empty() {
                joined.push_str(if joined.ends_with(':') { " " } else { "; " });
            }
            joined.push_str(line);
        }
        joined
    }

    /// The message without its outermost context: for an error from [`crate::retry`] that
    /// gave up, the last attempt's own error.
    pub fn inner_message(&self) -> String {
        self.source.chain().skip(1).map(ToString::to_string).collect::<Vec<_>>().join(": ")
    }

    /// The underlying chain, e.g. to look for a root cause.
    pub fn source_error(&self) -> &anyhow::Error {
        &self.source
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error").field("kind", &self.kind).field("message", &self.message()).field("hints", &self.hints).finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.source)
    }
}

/// Lets applets write `thing().context("reading the token file")?`.
///
/// The only `From`: a bare `?` on an `io::Error` does not compile, so every foreign error
/// gets a context line saying what podinit was doing.
impl From<anyhow::Error> for Error {
    fn from(source: anyhow::Error) -> Self {
        // An Error that travelled through anyhow (e.g. out of a retry closure) keeps its kind.
        match source.downcast::<Self>() {
            Ok(inner) => inner,
            Err(source) => Self::new(Kind::Failed, source),
        }
    }
}

impl std::error::Error for Error {}

/// Classifying a `Result` on the way out of an applet: `read().kind(Kind::Usage)?`.
pub trait ResultExt<T> {
    /// Turns the error into an [`Error`] of this kind.
    fn kind(self, kind: Kind) -> Result<T, Error>;
}

impl<T, E: Into<anyhow::Error>> ResultExt<T> for Result<T, E> {
    fn kind(self, kind: Kind) -> Result<T, Error> {
        self.map_err(|err| Error::new(kind, err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn exit_codes_are_the_documented_contract() {
        let codes: Vec<u8> =
            [Kind::Failed, Kind::Usage, Kind::NotPermitted, Kind::Timeout, Kind::CommandNotExecutable, Kind::NotFound, Kind::Interrupted]
                .iter()
                .map(|k| k.exit_code())
                .collect();
        assert_eq!(codes, [1, 2, 77, 124, 126, 127, 143]);
    }

    #[test]
    fn message_is_one_line_with_the_whole_chain() {
        let err: Error = Err::<(), _>(std::io::Error::other("disk on fire")).context("writing /out/x").unwrap_err().into();
        assert_eq!(err.kind(), Kind::Failed);
        assert_eq!(err.message(), "writing /out/x: disk on fire");
        let listed = Error::new(Kind::Failed, anyhow::anyhow!("no credentials. Attempted:\n  Environment: not set\n\n  Profile: none\n"));
        assert_eq!(listed.message(), "no credentials. Attempted: Environment: not set; Profile: none");
    }

    #[test]
    fn kind_survives_a_trip_through_anyhow() {
        let inner = Error::usage("bad key").with_hint("fix it");
        let back = Error::from(anyhow::Error::new(inner));
        assert_eq!(back.kind(), Kind::Usage);
        assert_eq!(back.hints(), ["fix it"]);
    }
}
