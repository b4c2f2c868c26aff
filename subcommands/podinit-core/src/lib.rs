//! The runtime every podinit applet shares, and nothing else.
//!
//! What belongs here: a piece used by two or more applets, or a contract that is the
//! same for the whole process (exit codes, log format, how a wait ends). This crate
//! knows nothing of Vault, S3, SQL or sysctl; applets depend on it, never on each other.
//!
//! - [`error`]: [`Error`] and [`Kind`], whose kind is the exit-status contract.
//! - [`args`]: [`GlobalArgs`], the flags every applet accepts (`--timeout`, `--log-format`, …).
//! - [`context`]: [`Context`], handed to every applet: deadline, shutdown, progress mode.
//! - [`retry`]: the one helper for every wait in the product.
//! - [`fs`]: atomic file output, confined to a destination directory.
//! - [`progress`]: an indicatif bar on a terminal, periodic log lines otherwise.
//! - [`logging`]: `podinit <applet>:`-prefixed text or JSON lines on stderr.
//! - [`termination`]: the summary a pod shows in `kubectl describe pod`.
//! - [`redact`]: URLs without their passwords, I/O errors in short.
//! - [`redirect`]: which HTTP redirects are followed, and where credentials may go.

pub mod args;
pub mod context;
pub mod error;
pub mod fs;
pub mod logging;
pub mod progress;
pub mod redact;
pub mod redirect;
pub mod retry;
pub mod termination;

pub use args::GlobalArgs;
pub use context::Context;
pub use error::{Error, Kind, ResultExt};
