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
//! matches, its clap `Subcommand` (so `parse_only` can build the parser with one applet),
//! `ALL` and `COMPILED`; the compiler checks every match is complete. Each applet's
//! help text comes from its own `Args` doc comment.

use podinit_core::{Context, Error, GlobalArgs};

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

thread_local! {
    /// The one applet the next parser is built with, or `None` for all of them.
    static ONLY: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

/// The first argument of `argv` (after the program) that is an applet's name.
pub(crate) fn named_in(argv: &[std::ffi::OsString]) -> Option<&'static str> {
    argv.iter().skip(1).find_map(|arg| ALL.iter().copied().find(|name| std::ffi::OsStr::new(name) == arg))
}

/// Parses `argv` with a parser that knows only the applet it names, falling back to the whole
/// parser (all applets) when that does not succeed, so help, errors and suggestions are the
/// whole parser's. The applet is the first argument that is an applet's name ([`named_in`]);
/// a global option's value that happens to be one (`--termination-log cp`), or an applet not
/// in this build, only costs the whole parser.
pub(crate) fn parse_only<T: clap::Parser>(argv: &[std::ffi::OsString]) -> Result<T, clap::Error> {
    if let Some(name) = named_in(argv).filter(|name| COMPILED.contains(name)) {
        ONLY.set(Some(name));
        let parsed = T::try_parse_from(argv);
        ONLY.set(None);
        if let Ok(parsed) = parsed {
            return Ok(parsed);
        }
    }
    T::try_parse_from(argv)
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
        #[derive(Debug)]
        pub(crate) enum Applet {
            $(
                #[cfg(feature = $feature)]
                $variant($($module)::+::Args),
            )*
        }

        // What `#[derive(clap::Subcommand)]` writes, but the parser gets only the applet
        // `parse_only` names (see there): building all eleven applets' arguments doubled the
        // instructions and page faults of a start.
        impl clap::Subcommand for Applet {
            fn augment_subcommands(cmd: clap::Command) -> clap::Command {
                let only = ONLY.get();
                $(
                    #[cfg(feature = $feature)]
                    let cmd = if only.is_none_or(|o| o == $name) {
                        cmd.subcommand(<$($module)::+::Args as clap::Args>::augment_args(clap::Command::new($name)))
                    } else {
                        cmd
                    };
                )*
                cmd
            }

            fn augment_subcommands_for_update(cmd: clap::Command) -> clap::Command {
                Self::augment_subcommands(cmd)
            }

            fn has_subcommand(name: &str) -> bool {
                COMPILED.contains(&name)
            }
        }

        impl clap::FromArgMatches for Applet {
            fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
                Self::from_arg_matches_mut(&mut matches.clone())
            }

            fn from_arg_matches_mut(matches: &mut clap::ArgMatches) -> Result<Self, clap::Error> {
                let Some((name, mut sub)) = matches.remove_subcommand() else {
                    return Err(clap::Error::raw(clap::error::ErrorKind::MissingSubcommand, "no applet given"));
                };
                $(
                    #[cfg(feature = $feature)]
                    if name == $name {
                        return Ok(Self::$variant(<$($module)::+::Args as clap::FromArgMatches>::from_arg_matches_mut(&mut sub)?));
                    }
                )*
                Err(clap::Error::raw(clap::error::ErrorKind::InvalidSubcommand, format!("unknown applet '{name}'")))
            }

            fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
                *self = Self::from_arg_matches(matches)?;
                Ok(())
            }
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

            /// Runs a `blocking` applet to completion, with a context whose stop signals raise
            /// a flag ([`Context::blocking`]); hands any other back, with no signal handler
            /// installed for it.
            pub(crate) fn run_blocking(self, global: &GlobalArgs) -> Result<Result<(), Error>, Box<Self>> {
                match self {
                    $( #[cfg(feature = $feature)] Self::$variant(args) => registry!(@blocking $runtime, $($module)::+, $variant, $name, global, args), )*
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
    (@blocking blocking, $($module:ident)::+, $variant:ident, $name:literal, $global:ident, $args:ident) => {
        Ok($($module)::+::run(&Context::blocking($name, $global), $args))
    };
    (@blocking $other:ident, $($module:ident)::+, $variant:ident, $name:literal, $global:ident, $args:ident) => {
        Err(Box::new(Self::$variant($args)))
    };
    (@async blocking, $($module:ident)::+, $ctx:ident, $args:ident) => { $($module)::+::run($ctx, $args) };
    (@async $other:ident, $($module:ident)::+, $ctx:ident, $args:ident) => { $($module)::+::run($ctx, $args).await };
}

registry! {
    Certs "certs" "certs" podinit_certs::certs => current;
    Chmod "chmod" "chmod" podinit_fs::chmod => blocking;
    Chown "chown" "chown" podinit_fs::chown => blocking;
    Cp "cp" "cp" podinit_fs::cp => blocking;
    Envsubst "envsubst" "envsubst" podinit_render::envsubst => blocking;
    GitClone "git-clone" "git-clone" podinit_git_clone => current;
    HttpGet "http-get" "http-get" podinit_http_get => multi;
    Ln "ln" "ln" podinit_fs::ln => blocking;
    Migrate "migrate" "migrate" podinit_migrate => current;
    Mkdir "mkdir" "mkdir" podinit_fs::mkdir => blocking;
    Mv "mv" "mv" podinit_fs::mv => blocking;
    Render "render" "render" podinit_render => blocking;
    Rm "rm" "rm" podinit_fs::rm => blocking;
    S3Get "s3-get" "s3-get" podinit_s3_get => multi;
    Sysctl "sysctl" "sysctl" podinit_sysctl => blocking;
    Sysfs "sysfs" "sysfs" podinit_sysctl::sysfs => blocking;
    Touch "touch" "touch" podinit_fs::touch => blocking;
    Truststore "truststore" "truststore" podinit_certs::truststore => blocking;
    VaultFetch "vault-fetch" "vault-fetch" podinit_vault_fetch => current;
    WaitFor "wait-for" "wait-for" podinit_wait_for => current;
}
