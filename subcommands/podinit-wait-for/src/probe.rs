//! One check of one target, and what can wake a waiter early.
//!
//! A [`Prober`] is built once per target (HTTP client, DNS resolver, inotify watch) and then
//! asked [`Prober::check`] repeatedly by the shared retry helper; for files,
//! [`Prober::changed`] resolves on an inotify event so a new check runs at once. Errors are
//! one-line descriptions of why the target is not ready yet; none carries a password.

mod file;
mod http;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use podinit_core::Error;
use podinit_core::redact::io_reason;

use crate::target::{Database, RecordType, SysvKind, Target};

pub(crate) use file::FileCheck;
pub(crate) use http::HttpCheck;

/// Settings that shape checks, from the command line.
#[derive(Clone, Debug, Default)]
pub(crate) struct Settings {
    pub(crate) http: HttpSettings,
    pub(crate) file: FileCheck,
    pub(crate) attempt_timeout: Duration,
}

pub(crate) use http::HttpSettings;
pub use http::StatusSet;

/// A target with what it needs to be checked.
pub(crate) struct Prober {
    target: Target,
    kind: Kind,
}

enum Kind {
    Plain,
    Http(HttpCheck),
    Dns(hickory_resolver::TokioResolver),
    File(file::Watcher),
}

impl Prober {
    /// Prepares a target; bad settings (an unreadable CA file) are usage errors.
    pub(crate) fn new(target: Target, settings: &Settings) -> Result<Self, Error> {
        let kind = match &target {
            Target::Http { .. } => Kind::Http(HttpCheck::new(&settings.http, settings.attempt_timeout)?),
            Target::Dns { record, .. } if *record != RecordType::Addr => {
                let resolver = hickory_resolver::TokioResolver::builder_tokio()
                    .and_then(hickory_resolver::ResolverBuilder::build)
                    .map_err(|e| Error::usage(format!("{target}: reading the resolver configuration (/etc/resolv.conf): {e}")))?;
                Kind::Dns(resolver)
            }
            Target::File { path } => Kind::File(file::Watcher::new(path.clone(), settings.file.clone())),
            _ => Kind::Plain,
        };
        Ok(Self { target, kind })
    }

    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    /// Whether the target can announce changes (then polling is only a safety net).
    pub(crate) fn event_driven(&self) -> bool {
        matches!(&self.kind, Kind::File(w) if w.has_inotify())
    }

    /// Resolves when something changed that may make the target ready (files: inotify);
    /// never, for targets that can only be polled.
    pub(crate) async fn changed(&self) {
        match &self.kind {
            Kind::File(watcher) => watcher.changed().await,
            _ => std::future::pending().await,
        }
    }

    /// One check: `Ok` when ready, else why not.
    pub(crate) async fn check(&self) -> anyhow::Result<()> {
        match (&self.target, &self.kind) {
            (Target::Tcp { host, port }, _) => tcp(host, *port).await,
            (Target::Unix { path }, _) => unix(path).await,
            (Target::Http { url }, Kind::Http(http)) => http.check(url).await,
            (Target::Dns { name, record: RecordType::Addr }, _) => dns_addr(name).await,
            (Target::Dns { name, record }, Kind::Dns(resolver)) => dns_record(resolver, name, *record).await,
            (Target::Db { kind, url }, _) => database(*kind, url).await,
            (Target::File { .. }, Kind::File(watcher)) => watcher.check(),
            (Target::PosixMq { name }, _) => posix_mq(name),
            (Target::Sysv { kind, key }, _) => sysv(*kind, *key),
            (target, _) => bail!("internal error: no prober for {target}"),
        }
    }
}

async fn tcp(host: &str, port: u16) -> anyhow::Result<()> {
    let addrs: Vec<std::net::SocketAddr> =
        tokio::net::lookup_host((host, port)).await.with_context(|| format!("resolving {host}"))?.collect();
    match addrs.as_slice() {
        [] => bail!("{host} resolves to no address"),
        // The common case, without a task per attempt: fewer wake-ups while waiting long.
        [addr] => {
            return match tokio::net::TcpStream::connect(addr).await {
                Ok(_stream) => Ok(()),
                Err(err) => Err(anyhow!("connecting to {addr}: {}", io_reason(&err))),
            };
        }
        _ => {}
    }
    // Every address in parallel: ready when any accepts (dual-stack names, several A records).
    let mut attempts = tokio::task::JoinSet::new();
    for addr in addrs {
        attempts.spawn(async move { tokio::net::TcpStream::connect(addr).await.map_err(|e| (addr, e)) });
    }
    let mut last = None;
    while let Some(joined) = attempts.join_next().await {
        match joined {
            Ok(Ok(_stream)) => return Ok(()),
            Ok(Err((addr, err))) => last = Some(anyhow!("connecting to {addr}: {}", io_reason(&err))),
            Err(join) => last = Some(anyhow!("connect task failed: {join}")),
        }
    }
    Err(last.unwrap_or_else(|| anyhow!("no address answered")))
}

async fn unix(path: &PathBuf) -> anyhow::Result<()> {
    match tokio::net::UnixStream::connect(path).await {
        Ok(_stream) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => bail!("no socket at {} yet", path.display()),
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => bail!("{} exists but nothing listens on it yet", path.display()),
        Err(err) => Err(anyhow!("connecting to {}: {}", path.display(), io_reason(&err))),
    }
}

async fn dns_addr(name: &str) -> anyhow::Result<()> {
    // getaddrinfo: /etc/hosts, the pod's search domains and ndots, as the app will resolve it.
    let found = tokio::net::lookup_host((name, 0)).await.map_err(|e| anyhow!("{name} does not resolve: {e}"))?.next();
    match found {
        Some(_) => Ok(()),
        None => bail!("{name} resolves to no address"),
    }
}

async fn dns_record(resolver: &hickory_resolver::TokioResolver, name: &str, record: RecordType) -> anyhow::Result<()> {
    use hickory_resolver::proto::rr::RecordType as R;
    let wanted = match record {
        RecordType::A | RecordType::Addr => R::A,
        RecordType::Aaaa => R::AAAA,
        RecordType::Cname => R::CNAME,
        RecordType::Mx => R::MX,
        RecordType::Ns => R::NS,
        RecordType::Srv => R::SRV,
        RecordType::Txt => R::TXT,
    };
    let lookup = resolver.lookup(name, wanted).await.map_err(|e| {
        if e.is_nx_domain() {
            anyhow!("{name} does not exist (NXDOMAIN)")
        } else if e.is_no_records_found() {
            anyhow!("{name} has no {wanted} record")
        } else {
            anyhow!("looking up {wanted} {name}: {e}")
        }
    })?;
    if lookup.answers().iter().any(|r| r.record_type() == wanted) { Ok(()) } else { bail!("{name} has no {wanted} record") }
}

/// A session is ready when the server authenticates us and answers a ping: more than an
/// open port (PostgreSQL listens before it accepts sessions, "the database system is
/// starting up").
#[cfg(feature = "databases")]
async fn database(kind: Database, url: &url::Url) -> anyhow::Result<()> {
    match kind {
        Database::Postgres => session::<sqlx::PgConnection>(url).await,
        Database::Mysql => session::<sqlx::MySqlConnection>(url).await,
    }
}

/// Without the `databases` feature, database targets are refused when parsed.
#[cfg(not(feature = "databases"))]
async fn database(_: Database, _: &url::Url) -> anyhow::Result<()> {
    bail!("database targets are not compiled into this build")
}

#[cfg(feature = "databases")]
async fn session<C: sqlx::Connection>(url: &url::Url) -> anyhow::Result<()> {
    let options: C::Options = url.as_str().parse().map_err(|e| anyhow!("the URL is not usable: {}", db_reason(&e)))?;
    let mut conn = C::connect_with(&options).await.map_err(|e| anyhow!("{}", db_reason(&e)))?;
    conn.ping().await.map_err(|e| anyhow!("{}", db_reason(&e)))?;
    let _ = conn.close().await;
    Ok(())
}

/// sqlx's message, which names the server's complaint but never the password.
#[cfg(feature = "databases")]
fn db_reason(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Database(db) => db.message().to_owned(),
        sqlx::Error::Io(io) => io_reason(io),
        other => other.to_string(),
    }
}

fn posix_mq(name: &str) -> anyhow::Result<()> {
    use nix::errno::Errno;
    use nix::mqueue::{MQ_OFlag, mq_close, mq_open};
    use nix::sys::stat::Mode;
    match mq_open(name, MQ_OFlag::O_RDONLY | MQ_OFlag::O_NONBLOCK, Mode::empty(), None) {
        Ok(mq) => {
            let _ = mq_close(mq);
            Ok(())
        }
        // It exists; we may just not be allowed to read it, which is not our question.
        Err(Errno::EACCES) => Ok(()),
        Err(Errno::ENOENT) => bail!("no message queue {name} yet"),
        Err(Errno::ENOSYS) => bail!("this kernel has no POSIX message queues"),
        Err(err) => bail!("opening message queue {name}: {}", err.desc()),
    }
}

/// SysV objects are listed, with their keys, in /proc/sysvipc (of this IPC namespace):
/// reading it needs no syscall wrappers and no permission on the object.
fn sysv(kind: SysvKind, key: i32) -> anyhow::Result<()> {
    let table = std::fs::read_to_string(kind.proc_file()).with_context(|| format!("reading {} (is /proc mounted?)", kind.proc_file()))?;
    if sysv_table_has_key(&table, key) {
        Ok(())
    } else {
        let what = match kind {
            SysvKind::Msg => "message queue",
            SysvKind::Shm => "shared memory segment",
            SysvKind::Sem => "semaphore set",
        };
        bail!("no SysV {what} with key {:#x} yet", key.cast_unsigned())
    }
}

fn sysv_table_has_key(table: &str, key: i32) -> bool {
    table
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next()?.parse::<i64>().ok())
        .any(|k| k == i64::from(key) || k == i64::from(key.cast_unsigned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysv_tables_are_matched_by_key() {
        let table = "       key      msqid perms      cbytes       qnum lspid lrpid   uid   gid  cuid  cgid      stime      rtime      ctime\n      4660          0   600           0          0     0     0     0     0     0     0          0          0 1763770000\n        -1          1   600           0          0     0     0     0     0     0     0          0          0 1763770000\n";
        assert!(sysv_table_has_key(table, 0x1234));
        assert!(sysv_table_has_key(table, -1));
        assert!(!sysv_table_has_key(table, 0x1235));
        assert!(!sysv_table_has_key("       key      msqid\n", 0x1234));
    }
}
