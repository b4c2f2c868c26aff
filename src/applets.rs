//! The applet registry: the only place that lists every applet.
//!
//! Adding an applet: one variant and one arm in each `match` here, a crate under
//! `subcommands/`, and a Cargo feature of the same name. The compiler checks the matches are
//! complete. Each applet's help text comes from its own `Args` doc comment.

use podinit_core::{Context, Error};

/// Every applet podinit has, compiled in or not (a slim build leaves some out).
pub(crate) const ALL: &[&str] = &["migrate", "s3-get", "sysctl", "vault-fetch", "wait-for"];

/// The applets compiled into this binary, in `--list` order. A unit test checks it against
/// the parser's subcommands, so the two cannot drift.
pub(crate) const COMPILED: &[&str] = &[
    #[cfg(feature = "migrate")]
    "migrate",
    #[cfg(feature = "s3-get")]
    "s3-get",
    #[cfg(feature = "sysctl")]
    "sysctl",
    #[cfg(feature = "vault-fetch")]
    "vault-fetch",
    #[cfg(feature = "wait-for")]
    "wait-for",
];

#[cfg(not(any(feature = "migrate", feature = "s3-get", feature = "sysctl", feature = "vault-fetch", feature = "wait-for")))]
compile_error!("enable at least one applet feature, e.g. --features sysctl");

/// The applets compiled into this binary.
// One value per process, so variant sizes do not matter (allow: slim builds have one variant).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Applet {
    #[cfg(feature = "migrate")]
    Migrate(podinit_migrate::Args),
    #[cfg(feature = "s3-get")]
    S3Get(podinit_s3_get::Args),
    #[cfg(feature = "sysctl")]
    Sysctl(podinit_sysctl::Args),
    #[cfg(feature = "vault-fetch")]
    VaultFetch(podinit_vault_fetch::Args),
    #[cfg(feature = "wait-for")]
    WaitFor(podinit_wait_for::Args),
}

impl Applet {
    /// The name used on the command line, for links, and in `podinit <applet>:` prefixes.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            #[cfg(feature = "migrate")]
            Self::Migrate(_) => "migrate",
            #[cfg(feature = "s3-get")]
            Self::S3Get(_) => "s3-get",
            #[cfg(feature = "sysctl")]
            Self::Sysctl(_) => "sysctl",
            #[cfg(feature = "vault-fetch")]
            Self::VaultFetch(_) => "vault-fetch",
            #[cfg(feature = "wait-for")]
            Self::WaitFor(_) => "wait-for",
        }
    }

    /// Whether the applet does enough CPU work (TLS, hashing, writing gigabytes) to want a
    /// thread per core; the others run on one thread, which starts faster and uses less memory.
    pub(crate) fn multi_threaded(&self) -> bool {
        match self {
            #[cfg(feature = "s3-get")]
            Self::S3Get(_) => true,
            #[allow(unreachable_patterns, reason = "a slim build may have no other applet")]
            _ => false,
        }
    }

    /// Runs the applet to completion.
    pub(crate) async fn run(self, ctx: &Context) -> Result<(), Error> {
        match self {
            #[cfg(feature = "migrate")]
            Self::Migrate(args) => podinit_migrate::run(ctx, args).await,
            #[cfg(feature = "s3-get")]
            Self::S3Get(args) => podinit_s3_get::run(ctx, args).await,
            #[cfg(feature = "sysctl")]
            Self::Sysctl(args) => podinit_sysctl::run(ctx, args).await,
            #[cfg(feature = "vault-fetch")]
            Self::VaultFetch(args) => podinit_vault_fetch::run(ctx, args).await,
            #[cfg(feature = "wait-for")]
            Self::WaitFor(args) => podinit_wait_for::run(ctx, args).await,
        }
    }
}
