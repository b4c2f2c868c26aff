//! The applet registry: the one list of applets, everything else derived from it.
//!
//! Adding an applet: one line in [`registry!`] below, its crate (or module) under
//! `subcommands/`, and a Cargo feature of the same name. The line gives the variant, the name
//! on the command line (and of links), the feature, the module whose `Args` and `run` it is,
//! and how it runs:
//! - `blocking`: `fn run(&Context, Args)`, no Tokio runtime at all (starts fastest);
//! - `current`: `async fn run`, on a current-thread runtime;
//! - `multi`: `async fn run`, on a thread per core (TLS, hashing and writing gigabytes).
//!
//! The macro makes the `Applet` enum (one cfg-gated variant per applet), its exhaustive
//! matches, `ALL` and `COMPILED`; the compiler checks every match is complete. Each applet's
//! help text comes from its own `Args` doc comment.

use podinit_core::{Context, Error};

/// How an applet runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[allow(dead_code, reason = "a slim build may have blocking applets only")]
pub(crate) enum Runtime {
    /// No Tokio runtime.
    Blocking,
    /// A current-thread runtime.
    Current,
    /// A runtime with a thread per core.
    Multi,
}

macro_rules! registry {
    ($( $variant:ident $name:literal $feature:literal $($module:ident)::+ => $runtime:ident; )*) => {
        /// Every applet podinit has, compiled in or not (a slim build leaves some out).
        pub(crate) const ALL: &[&str] = &[$($name),*];

        /// The applets compiled into this binary, in `--list` order. A unit test checks it
        /// against the parser's subcommands.
        pub(crate) const COMPILED: &[&str] = &[$( #[cfg(feature = $feature)] $name, )*];

        /// The applets compiled into this binary.
        // One value per process, so variant sizes do not matter (allow: slim builds have one variant).
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, clap::Subcommand)]
        pub(crate) enum Applet {
            $(
                #[cfg(feature = $feature)]
                #[command(name = $name)]
                $variant($($module)::+::Args),
            )*
        }

        impl Applet {
            /// The name used on the command line, for links, and in `podinit <applet>:` prefixes.
            pub(crate) fn name(&self) -> &'static str {
                match *self {
                    $( #[cfg(feature = $feature)] Self::$variant(_) => $name, )*
                }
            }

            /// How it runs (see the module docs).
            pub(crate) fn runtime(&self) -> Runtime {
                match *self {
                    $( #[cfg(feature = $feature)] Self::$variant(_) => registry!(@runtime $runtime), )*
                }
            }

            /// Runs a `blocking` applet to completion; hands any other back.
            pub(crate) fn run_blocking(self, ctx: &Context) -> Result<Result<(), Error>, Box<Self>> {
                match self {
                    $( #[cfg(feature = $feature)] Self::$variant(args) => registry!(@blocking $runtime, $($module)::+, $variant, ctx, args), )*
                }
            }

            /// Runs an applet on the runtime (a `blocking` one too, as part of a multi-step run).
            pub(crate) async fn run(self, ctx: &Context) -> Result<(), Error> {
                match self {
                    $( #[cfg(feature = $feature)] Self::$variant(args) => registry!(@async $runtime, $($module)::+, ctx, args), )*
                }
            }
        }

        #[cfg(not(any($(feature = $feature),*)))]
        compile_error!("enable at least one applet feature, e.g. --features sysctl");
    };
    (@runtime blocking) => { Runtime::Blocking };
    (@runtime current) => { Runtime::Current };
    (@runtime multi) => { Runtime::Multi };
    (@blocking blocking, $($module:ident)::+, $variant:ident, $ctx:ident, $args:ident) => { Ok($($module)::+::run($ctx, $args)) };
    (@blocking $other:ident, $($module:ident)::+, $variant:ident, $ctx:ident, $args:ident) => { Err(Box::new(Self::$variant($args))) };
    (@async blocking, $($module:ident)::+, $ctx:ident, $args:ident) => { $($module)::+::run($ctx, $args) };
    (@async $other:ident, $($module:ident)::+, $ctx:ident, $args:ident) => { $($module)::+::run($ctx, $args).await };
}

registry! {
    Chmod "chmod" "chmod" podinit_fs::chmod => blocking;
    Chown "chown" "chown" podinit_fs::chown => blocking;
    Cp "cp" "cp" podinit_fs::cp => blocking;
    Ln "ln" "ln" podinit_fs::ln => blocking;
    Migrate "migrate" "migrate" podinit_migrate => current;
    Mkdir "mkdir" "mkdir" podinit_fs::mkdir => blocking;
    S3Get "s3-get" "s3-get" podinit_s3_get => multi;
    Sysctl "sysctl" "sysctl" podinit_sysctl => blocking;
    Touch "touch" "touch" podinit_fs::touch => blocking;
    VaultFetch "vault-fetch" "vault-fetch" podinit_vault_fetch => current;
    WaitFor "wait-for" "wait-for" podinit_wait_for => current;
}
