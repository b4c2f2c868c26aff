//! One check of one target, and what can wake a waiter early.
//!
//! A [`Prober`] is built once per target (HTTP client, DNS resolver, inotify watch) and then
//! asked [`Prober::check`] repeatedly by the shared retry helper; for files,
//! [`Prober::changed`] resolves on an inotify event so a new check runs at once. Errors are
//! one-line descriptions of why the target is not ready yet; none carries a password.

pub(crate) mod amqp;
mod file;
#[cfg(feature = "grpc")]
mod grpc;
mod http;
mod memcached;
pub(crate) mod nats;
pub(crate) mod redis;
mod wire;
mod zookeeper;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use podinit_core::Error;
use podinit_core::redact::io_reason;

use crate::target::{Database, RecordType, Service, SysvKind, Target};

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
    /// A protocol target over TLS (rediss, amqps).
    Tls(Arc<rustls::ClientConfig>),
    #[cfg(feature = "grpc")]
    Grpc(grpc::GrpcCheck),
}

/// A check that can never succeed as configured (a query with a syntax error, a permission
/// the user lacks): the wait ends at once with this message instead of running out the clock.
#[derive(Debug)]
pub(crate) struct Fatal(pub(crate) String);

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Fatal {}

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
            #[cfg(feature = "grpc")]
            Target::Service { service: Service::Grpc { .. }, .. } => {
                Kind::Grpc(grpc::GrpcCheck::new(http::tls_config(&settings.http)?, settings.attempt_timeout)?)
            }
            Target::Service { tls: true, .. } => Kind::Tls(Arc::new(http::tls_config(&settings.http)?)),
            _ => Kind::Plain,
        };
        Ok(Self { target, kind })
    }

    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    #[cfg(feature = "grpc")]
    fn target_url(&self) -> &url::Url {
        match &self.target {
            Target::Service { url, .. } | Target::Http { url } | Target::Db { url, .. } => url,
            _ => unreachable!("only URL targets have a URL"),
        }
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
            (Target::Dns { name, record: RecordType::Addr, min }, _) => dns_addr(name, *min).await,
            (Target::Dns { name, record, min }, Kind::Dns(resolver)) => dns_record(resolver, name, *record, *min).await,
            (Target::Db { kind, url, query }, _) => database(*kind, url, query.as_deref()).await,
            (Target::Service { service, .. }, kind) => {
                let tls = if let Kind::Tls(config) = kind { Some(config) } else { None };
                // A server may repeat what it was sent (an unknown AUTH, an echoed CONNECT): its
                // words never carry our credentials into a log.
                let secrets: Vec<&str> = match service {
                    Service::Redis(c) => c.password.iter().map(String::as_str).collect(),
                    Service::Nats(c) => c.user.iter().chain(&c.password).map(String::as_str).collect(),
                    Service::Amqp(c) => vec![c.password.as_str()],
                    _ => Vec::new(),
                };
                let checked = match (service, kind) {
                    (Service::Redis(c), _) => redis::check(c, tls).await,
                    (Service::Memcached { host, port }, _) => memcached::check(host, *port).await,
                    (Service::Nats(c), _) => nats::check(c).await,
                    (Service::Zookeeper { host, port, znode }, _) => zookeeper::check(host, *port, znode.as_deref()).await,
                    (Service::Amqp(c), _) => amqp::check(c, tls).await,
                    #[cfg(feature = "grpc")]
                    (Service::Grpc { service }, Kind::Grpc(grpc)) => grpc.check(self.target_url(), service).await,
                    #[allow(unreachable_patterns, reason = "without the grpc feature, grpc targets are refused when parsed")]
                    (Service::Grpc { .. }, _) => bail!("gRPC targets are not compiled into this build"),
                };
                checked.map_err(|e| wire::masked(e, &secrets))
            }
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

async fn dns_addr(name: &str, min: usize) -> anyhow::Result<()> {
    // getaddrinfo: /etc/hosts, the pod's search domains and ndots, as the app will resolve it.
    let found: std::collections::BTreeSet<std::net::IpAddr> =
        tokio::net::lookup_host((name, 0)).await.map_err(|e| anyhow!("{name} does not resolve: {e}"))?.map(|a| a.ip()).collect();
    match found.len() {
        0 => bail!("{name} resolves to no address"),
        n if n < min => bail!("{name} resolves to {n} addresses, fewer than {min}"),
        _ => Ok(()),
    }
}

async fn dns_record(resolver: &hickory_resolver::TokioResolver, name: &str, record: RecordType, min: usize) -> anyhow::Result<()> {
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
    let found = lookup.answers().iter().filter(|r| r.record_type() == wanted).count();
    match found {
        0 => bail!("{name} has no {wanted} record"),
        n if n < min => bail!("{name} has {n} {wanted} records, fewer than {min}"),
        _ => Ok(()),
    }
}

/// A session is ready when the server authenticates us and answers a ping: more than an
/// open port (PostgreSQL listens before it accepts sessions, "the database system is
/// starting up").
#[cfg(feature = "databases")]
async fn database(kind: Database, url: &url::Url, query: Option<&str>) -> anyhow::Result<()> {
    match kind {
        Database::Postgres => session::<sqlx::PgConnection>(url, query).await,
        Database::Mysql => session::<sqlx::MySqlConnection>(url, query).await,
    }
}

/// Without the `databases` feature, database targets are refused when parsed.
#[cfg(not(feature = "databases"))]
async fn database(_: Database, _: &url::Url, _: Option<&str>) -> anyhow::Result<()> {
    bail!("database targets are not compiled into this build")
}

#[cfg(feature = "databases")]
async fn session<C>(url: &url::Url, query: Option<&str>) -> anyhow::Result<()>
where
    C: sqlx::Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
    C::Database: sqlx::Database<Row: DbRow>,
{
    let options: C::Options = url.as_str().parse().map_err(|e| anyhow!("the URL is not usable: {}", db_reason(&e)))?;
    let mut conn = C::connect_with(&options).await.map_err(|e| anyhow!("{}", db_reason(&e)))?;
    let result = match query {
        None => conn.ping().await.map_err(|e| anyhow!("{}", db_reason(&e))),
        Some(sql) => match sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).fetch_optional(&mut conn).await {
            Ok(None) => Err(anyhow!("the query returned no row yet")),
            Ok(Some(row)) => match row.first_column() {
                Ok((true, _)) => Ok(()),
                Ok((false, shown)) => Err(anyhow!("the query's answer is {shown} yet")),
                Err(err) => Err(err),
            },
            Err(err) => Err(query_error(&err)),
        },
    };
    let _ = conn.close().await;
    result
}

/// A query error that waiting cannot cure is [`Fatal`]: a syntax error, a missing function,
/// a permission denied. A missing table or column (migrations not run yet) and everything
/// else is "not ready yet".
#[cfg(feature = "databases")]
fn query_error(err: &sqlx::Error) -> anyhow::Error {
    let reason = db_reason(err);
    let code = match err {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    };
    // PostgreSQL SQLSTATE 42601 syntax, 42883 no such function, 42501 permission; MySQL
    // 1064 syntax, 1044/1142/1143 access denied, 1305 no such function (its SQLSTATE 42000
    // also covers other things, so MySQL is judged by its error number in the message).
    let fatal = match code.as_deref() {
        Some("42601" | "42883" | "42501") => true,
        Some("42000") => {
            ["You have an error in your SQL syntax", "command denied", "Access denied", "does not exist"].iter().any(|m| reason.contains(m))
        }
        _ => false,
    };
    if fatal {
        anyhow::Error::new(Fatal(format!("the query fails in a way waiting cannot fix: {reason}")))
    } else {
        anyhow!("the query fails: {reason}")
    }
}

/// The first column of a row, judged: true, a non-zero number, a non-empty text; and how it
/// reads in the "not ready" message (never a text's content).
#[cfg(feature = "databases")]
trait DbRow {
    fn first_column(&self) -> anyhow::Result<(bool, String)>;
}

#[cfg(feature = "databases")]
macro_rules! db_row {
    ($row:ty, $($number:ty),+) => {
        impl DbRow for $row {
            fn first_column(&self) -> anyhow::Result<(bool, String)> {
                use sqlx::Row as _;
                if sqlx::Row::len(self) == 0 {
                    return Err(anyhow::Error::new(Fatal("the query returns no column: select the value that says ready".into())));
                }
                if self.try_get_raw(0).is_ok_and(|v| sqlx::ValueRef::is_null(&v)) {
                    return Ok((false, "NULL".into()));
                }
                if let Ok(v) = self.try_get::<bool, _>(0) {
                    return Ok((v, v.to_string()));
                }
                $(
                    if let Ok(v) = self.try_get::<$number, _>(0) {
                        return Ok((v != <$number>::default(), v.to_string()));
                    }
                )+
                if let Ok(v) = self.try_get::<String, _>(0) {
                    return Ok((!v.is_empty(), "empty".into()));
                }
                if let Ok(v) = self.try_get::<Vec<u8>, _>(0) {
                    return Ok((!v.is_empty(), "empty".into()));
                }
                Err(anyhow::Error::new(Fatal("the query's first column is not a boolean, number or text: cast it".into())))
            }
        }
    };
}

#[cfg(feature = "databases")]
db_row!(sqlx::postgres::PgRow, i64, i32, i16, i8, f64);
#[cfg(feature = "databases")]
db_row!(sqlx::mysql::MySqlRow, i64, i32, i16, i8, u64, u32, u8, f64);

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
