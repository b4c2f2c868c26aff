//! `podinit git-clone`: a repository at a ref into a volume, once, atomically, in the
//! layout of git-sync (`--one-time`), so an app that reads git-sync's link reads podinit's.
//!
//! ```text
//! DEST/.git/                         a bare repository: the objects fetched (shallow)
//! DEST/.worktrees/<commit>/          the files of exactly one commit (no .git inside)
//! DEST/<link> -> .worktrees/<commit> what the app reads; replaced by one rename
//! DEST/..<link>.podinit-git-clone   the commit and settings the link's tree was made with
//! DEST/..podinit.lock                held by the writer (replicas sharing a volume)
//! ```
//!
//! A run resolves the ref at the remote ([`remote`]); when the link already names that commit
//! (and the same sparse and submodule settings made it) nothing is written. Otherwise the
//! commit is fetched into `.git`, checked out into a hidden directory beside the others
//! ([`tree`]), the file system is synced, the directory renamed to its commit, and the link
//! switched with one `rename`; the old worktree goes last. Killed at any point, the link names
//! the old tree or the new one, complete; the next run removes what was left.
//!
//! gix does the git work, blocking, on a thread of Tokio's blocking pool; SIGTERM and the
//! deadline raise its interrupt flag.

mod meter;
mod remote;
mod tree;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::builder::BoolishValueParser;
use podinit_core::progress::Unit;
use podinit_core::{Context, Error};

/// Clone a git repository at a branch, tag or commit into DEST: shallow, the files of one
/// commit behind a link switched atomically (git-sync's layout); a rerun changes nothing when
/// the ref still names the same commit.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    podinit git-clone https://git.example.com/team/dags.git /git --ref main\n  \
    podinit git-clone https://github.com/org/site.git /srv --ref v1.4.0 --link html \\\n      \
      --username x-access-token --password-file /secrets/token")]
pub struct Args {
    /// The repository: https://, http:// or git:// (ssh and file:// are not built in).
    #[arg(value_name = "REPO")]
    pub repo: String,

    /// The root directory (git-sync's --root); created when missing.
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,

    /// Branch, tag or full commit id to check out; HEAD is the remote's default branch.
    #[arg(long = "ref", env = "PODINIT_GIT_CLONE_REF", value_name = "REF", default_value = "HEAD")]
    pub git_ref: String,

    /// Name of the link in DEST that points at the checked-out tree (default: the last
    /// component of REPO without .git, as git-sync).
    #[arg(long, env = "PODINIT_GIT_CLONE_LINK", value_name = "NAME")]
    pub link: Option<String>,

    /// Commits of history to fetch; 0 fetches all of it.
    #[arg(long, env = "PODINIT_GIT_CLONE_DEPTH", value_name = "N", default_value_t = 1)]
    pub depth: u32,

    /// Check out the repository's submodules too (recursively, shallow, at the commits the
    /// tree records).
    #[arg(long, env = "PODINIT_GIT_CLONE_SUBMODULES", value_parser = BoolishValueParser::new())]
    pub submodules: bool,

    /// Check out only these directories or files of the tree (repeatable).
    #[arg(long, env = "PODINIT_GIT_CLONE_SPARSE", value_name = "PATH", value_delimiter = ',')]
    pub sparse: Vec<String>,

    /// User name for HTTPS basic authentication (with --password-file).
    #[arg(long, env = "PODINIT_GIT_CLONE_USERNAME", value_name = "NAME", requires = "password_file")]
    pub username: Option<String>,

    /// File holding the password or access token for --username.
    #[arg(long, env = "PODINIT_GIT_CLONE_PASSWORD_FILE", value_name = "FILE", requires = "username")]
    pub password_file: Option<PathBuf>,

    /// File holding a bearer token, sent as `Authorization: Bearer` to the repository's host.
    #[arg(long, env = "PODINIT_GIT_CLONE_BEARER_TOKEN_FILE", value_name = "FILE", conflicts_with = "password_file")]
    pub bearer_token_file: Option<PathBuf>,

    /// PEM file with the CA certificates to trust for HTTPS (instead of the system's).
    #[arg(long, alias = "ca-cert", env = "PODINIT_GIT_CLONE_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// Most files a checkout may write (a budget against hostile repositories).
    #[arg(long, env = "PODINIT_GIT_CLONE_MAX_FILES", value_name = "N", default_value_t = 1_000_000)]
    pub max_files: u64,

    /// Most bytes a checkout may write, e.g. 4GiB.
    #[arg(long, env = "PODINIT_GIT_CLONE_MAX_SIZE", value_name = "SIZE", default_value = "8GiB", value_parser = podinit_core::args::parse_size)]
    pub max_size: u64,
}

/// Runs `podinit git-clone`.
pub async fn run(ctx: &Context, args: Args) -> Result<(), Error> {
    let plan = remote::Plan::from_args(&args)?;
    let layout = tree::Layout::open(ctx, &args.dest, plan.link.clone()).await?;
    let settings = tree::Settings { sparse: plan.sparse.clone(), submodules: args.submodules };
    let current = layout.current(&settings);
    if let (Some(current), Some(want)) = (current, plan.fixed_commit())
        && current == want
    {
        tracing::info!("{} is at {want} already (no request made)", layout.link_path().display());
        return Ok(());
    }
    let fetched = {
        let (plan, git_dir) = (Arc::new(plan.clone()), layout.git_dir());
        podinit_core::retry::retry(
            ctx,
            &format!("fetching {} from {}", plan.git_ref, plan.shown),
            remote::BACKOFF,
            remote::classify,
            |_| {
                let (plan, git_dir) = (Arc::clone(&plan), git_dir.clone());
                let received = gix::progress::StepShared::default();
                let watch = meter::Watch { counter: Arc::clone(&received), what: "receiving".into(), unit: Unit::Bytes };
                async move { blocking(ctx, watch, move |stop| remote::fetch(&plan, &git_dir, current.as_ref(), stop, &received)).await }
            },
        )
        .await?
    };
    let commit = match fetched {
        remote::Fetched::Unchanged(commit) => {
            tracing::info!("{} is at {commit} already, the commit {} names", layout.link_path().display(), plan.git_ref);
            return Ok(());
        }
        remote::Fetched::New(commit) => commit,
    };
    let staged = {
        let (layout, plan, settings) = (layout.clone_paths(), plan.clone(), settings.clone());
        let budget = tree::Budget { files: args.max_files, bytes: args.max_size };
        let written = gix::progress::StepShared::default();
        let watch = meter::Watch { counter: Arc::clone(&written), what: "checking out (files)".into(), unit: Unit::Items };
        blocking(ctx, watch, move |stop| layout.checkout(&plan, commit, &settings, budget, stop, &written))
            .await
            .map_err(|e| e.context(format!("checking out {commit}")))?
    };
    layout.publish(staged, commit, &settings).map_err(|e| podinit_core::fs::explain_write(e, &args.dest))?;
    Ok(())
}

/// Runs blocking git work on Tokio's blocking pool, showing `watch`'s counter as progress once
/// the work has taken a second. SIGTERM, SIGINT, the deadline, and this future being dropped
/// (the retry helper ends an attempt on a signal) raise the work's `stop` flag (gix checks it
/// between objects and files); what the work leaves behind is in hidden names the next run
/// removes.
async fn blocking<T: Send + 'static>(
    ctx: &Context,
    watch: meter::Watch,
    work: impl FnOnce(&AtomicBool) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let stop = RaiseOnDrop(Arc::new(AtomicBool::new(false)));
    let flag = Arc::clone(&stop.0);
    let mut task = tokio::task::spawn_blocking(move || work(&flag));
    let mut progress: Option<podinit_core::progress::Progress> = None;
    let mut shown = 0u64;
    loop {
        tokio::select! {
            joined = &mut task => return joined.map_err(|e| anyhow::anyhow!("the git worker failed: {e}"))?,
            slept = ctx.sleep(std::time::Duration::from_secs(1)) => {
                if let Err(err) = slept {
                    return Err(anyhow::Error::new(err));
                }
                let now = watch.counter.load(Ordering::Relaxed) as u64;
                if now > shown {
                    progress.get_or_insert_with(|| ctx.progress(watch.what.clone(), None, watch.unit)).inc(now - shown);
                    shown = now;
                } else if let Some(progress) = &progress {
                    progress.tick();
                }
            }
        }
    }
}

/// Raises the flag when dropped: however [`blocking`] ends, its work is told to stop.
struct RaiseOnDrop(Arc<AtomicBool>);

impl Drop for RaiseOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
