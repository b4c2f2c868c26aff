//! Targets: what `wait-for` waits on, parsed from URLs. Pure; no I/O.
//!
//! Every form is a URL so one argument says everything: `tcp://db:5432`, `http://…`,
//! `dns://name?type=MX`, `postgres://…`, `mysql://…`, `file:///abs/path`, `unix:///abs/path`,
//! `posix-mq:///name`, `sysv-msg://KEY` (also `sysv-shm`, `sysv-sem`). A target shows itself
//! with any password replaced by `***`, so it can be logged.

use std::fmt;
use std::path::PathBuf;

use podinit_core::redact;
use url::Url;

/// A DNS record type `dns://` can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordType {
    /// A or AAAA through the system resolver (getaddrinfo: /etc/hosts, search domains, ndots).
    Addr,
    A,
    Aaaa,
    Cname,
    Mx,
    Ns,
    Srv,
    Txt,
}

impl RecordType {
    fn parse(text: &str) -> Option<Self> {
        Some(match text.to_ascii_uppercase().as_str() {
            "A" => Self::A,
            "AAAA" => Self::Aaaa,
            "CNAME" => Self::Cname,
            "MX" => Self::Mx,
            "NS" => Self::Ns,
            "SRV" => Self::Srv,
            "TXT" => Self::Txt,
            _ => return None,
        })
    }
}

/// Which SysV IPC object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SysvKind {
    Msg,
    Shm,
    Sem,
}

impl SysvKind {
    /// The file under /proc/sysvipc that lists objects of this kind.
    pub(crate) fn proc_file(self) -> &'static str {
        match self {
            Self::Msg => "/proc/sysvipc/msg",
            Self::Shm => "/proc/sysvipc/shm",
            Self::Sem => "/proc/sysvipc/sem",
        }
    }
}

/// Which database protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Database {
    Postgres,
    Mysql,
}

/// A server whose own protocol says whether it is ready, and what the check needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Service {
    Redis(crate::probe::redis::Check),
    Memcached { host: String, port: u16 },
    Nats(crate::probe::nats::Check),
    Zookeeper { host: String, port: u16, znode: Option<String> },
    Amqp(crate::probe::amqp::Check),
    Grpc { service: String },
}

/// One thing to wait for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Tcp {
        host: String,
        port: u16,
    },
    Http {
        url: Url,
    },
    /// `min`: at least this many records (addresses) must be found.
    Dns {
        name: String,
        record: RecordType,
        min: usize,
    },
    /// `query`: ready when its first row's first column is true, non-zero or non-empty.
    Db {
        kind: Database,
        url: Url,
        query: Option<String>,
    },
    /// `url` is what the user wrote (shown with its password masked); `tls` for rediss,
    /// amqps, grpcs.
    Service {
        service: Service,
        url: Url,
        tls: bool,
    },
    File {
        path: PathBuf,
    },
    Unix {
        path: PathBuf,
    },
    PosixMq {
        name: String,
    },
    Sysv {
        kind: SysvKind,
        key: i32,
    },
}

/// How a target is polled: cheap local checks often, network checks less often.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cost {
    /// A syscall or a connect (unix socket, IPC object, file, TCP): poll every ≤ 50 ms; a
    /// refused connect costs microseconds.
    Cheap,
    /// A request with a server doing work (HTTP, DNS, database login): ≤ 1 s.
    Request,
    /// A short protocol handshake (Redis, NATS, ZooKeeper, AMQP, memcached, gRPC): cheap for
    /// the server, so polled like a connect, at most every second.
    Handshake,
}

impl Target {
    /// Parses a target, or says what is wrong with it and how to write it. The message never
    /// repeats a password the target carried.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        Self::parse_inner(text).map_err(|message| if text.contains('@') { message.replace(text, &redact::url_text(text)) } else { message })
    }

    fn parse_inner(text: &str) -> Result<Self, String> {
        let Some((scheme, _)) = text.split_once("://") else {
            return Err(format!(
                "'{text}' has no scheme: write tcp://HOST:PORT, http(s)://…, dns://NAME, postgres://…, mysql://…, file:///PATH, unix:///PATH, posix-mq:///NAME or sysv-msg|shm|sem://KEY"
            ));
        };
        let scheme = scheme.to_ascii_lowercase();
        let carries_credentials = matches!(
            scheme.as_str(),
            "http" | "https" | "postgres" | "postgresql" | "mysql" | "mariadb" | "redis" | "rediss" | "nats" | "amqp" | "amqps"
        );
        if !carries_credentials && text.contains('@') {
            return Err(format!("{scheme}:// targets carry no user or password; remove the part before '@'"));
        }
        match scheme.as_str() {
            "tcp" => parse_tcp(text),
            "http" | "https" => {
                let url = Url::parse(text).map_err(|e| format!("'{text}' is not a valid URL: {e}"))?;
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(format!("'{text}' has no host"));
                }
                Ok(Self::Http { url })
            }
            "dns" => parse_dns(text),
            "postgres" | "postgresql" | "mysql" | "mariadb" if !cfg!(feature = "databases") => Err(format!(
                "'{}': database targets are not compiled into this build; use the full podinit image, or wait for the port with tcp://HOST:PORT",
                redact::url_text(text)
            )),
            "postgres" | "postgresql" | "mysql" | "mariadb" => {
                let url = Url::parse(text).map_err(|e| format!("'{}' is not a valid URL: {e}", redact::url_text(text)))?;
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(format!("'{}' has no host", redact::url_text(text)));
                }
                no_fragment(&url)?;
                let kind = if scheme.starts_with("postgres") { Database::Postgres } else { Database::Mysql };
                let mut url = url;
                if scheme == "mariadb" {
                    // sqlx speaks the MySQL protocol under the mysql scheme.
                    let rest = &text["mariadb".len()..];
                    url = Url::parse(&format!("mysql{rest}")).map_err(|e| format!("'{}': {e}", redact::url_text(text)))?;
                }
                let query = take_query(&mut url).map_err(|e| format!("'{}': {e}", redact::url_text(text)))?;
                Ok(Self::Db { kind, url, query })
            }
            "redis" | "rediss" | "memcached" | "nats" | "zookeeper" | "amqp" | "amqps" | "grpc" | "grpcs" => parse_service(text, &scheme),
            "file" => Ok(Self::File { path: abs_path(text, "file")? }),
            "unix" => Ok(Self::Unix { path: abs_path(text, "unix")? }),
            "posix-mq" => {
                let rest = &text["posix-mq://".len()..];
                let name = rest.strip_prefix('/').unwrap_or(rest);
                if name.is_empty() || name.contains('/') || name.len() > 255 {
                    return Err(format!("'{text}': a POSIX message queue name is one component, e.g. posix-mq:///jobs"));
                }
                Ok(Self::PosixMq { name: format!("/{name}") })
            }
            "sysv-msg" | "sysv-shm" | "sysv-sem" => {
                let kind = match scheme.as_str() {
                    "sysv-msg" => SysvKind::Msg,
                    "sysv-shm" => SysvKind::Shm,
                    _ => SysvKind::Sem,
                };
                let raw = &text[scheme.len() + 3..];
                Ok(Self::Sysv { kind, key: parse_key(raw).map_err(|e| format!("'{text}': {e}"))? })
            }
            other => Err(format!("'{text}': unknown scheme '{other}://'")),
        }
    }

    /// Gives a target that logs in (database, Redis, NATS, AMQP) a password when its URL has
    /// none; whether it took it.
    pub(crate) fn set_default_password(&mut self, password: &str) -> bool {
        match self {
            Self::Db { url, .. } if url.password().is_none() => {
                let _ = url.set_password(Some(password));
            }
            Self::Service { service: Service::Redis(c), .. } if c.password.is_none() => c.password = Some(password.to_owned()),
            // `nats://TOKEN@host` has a user part and no password: a token, which a password
            // would turn into a user name.
            Self::Service { service: Service::Nats(c), .. } if c.user.is_none() && c.password.is_none() => {
                c.password = Some(password.to_owned());
            }
            Self::Service { service: Service::Amqp(c), url, .. } if url.password().is_none() => c.password = password.to_owned(),
            _ => return false,
        }
        true
    }

    /// How often it is worth checking.
    pub(crate) fn cost(&self) -> Cost {
        match self {
            Self::File { .. } | Self::Unix { .. } | Self::PosixMq { .. } | Self::Sysv { .. } | Self::Tcp { .. } => Cost::Cheap,
            Self::Http { .. } | Self::Dns { .. } | Self::Db { .. } => Cost::Request,
            Self::Service { .. } => Cost::Handshake,
        }
    }
}

/// Takes `query=SQL` out of a database URL (sqlx would refuse it): the value percent-decoded
/// as it is (a `+` stays a plus, as SQL needs it).
fn take_query(url: &mut Url) -> Result<Option<String>, String> {
    let Some(raw) = url.query().map(str::to_owned) else { return Ok(None) };
    let mut query = None;
    let mut kept = Vec::new();
    for pair in raw.split('&') {
        match pair.strip_prefix("query=") {
            Some(value) => {
                let sql = percent_decode(value).ok_or("query=… is not valid UTF-8 once decoded")?;
                if sql.trim().is_empty() {
                    return Err("query= is empty: give the SQL whose first column says ready".into());
                }
                query = Some(sql);
            }
            None => kept.push(pair),
        }
    }
    let kept = kept.join("&");
    url.set_query(if kept.is_empty() { None } else { Some(&kept) });
    Ok(query)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(u8::try_from(hi * 16 + lo).ok()?);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A `#` in a database or service URL: nothing there has a fragment, so it is a `#` of a
/// password left unencoded, which would cut the URL there (the rest read as the host).
fn no_fragment(url: &Url) -> Result<(), String> {
    match url.fragment() {
        Some(_) => Err(format!(
            "'{}' has a '#': a '#' in a password must be written %23 (or put the password in --password-file)",
            redact::url(url)
        )),
        None => Ok(()),
    }
}

/// `redis://`, `rediss://`, `memcached://`, `nats://`, `zookeeper://`, `amqp(s)://`, `grpc(s)://`.
fn parse_service(text: &str, scheme: &str) -> Result<Target, String> {
    let shown = || if text.contains('@') { redact::url_text(text) } else { text.to_owned() };
    let url = Url::parse(text).map_err(|e| format!("'{}' is not a valid URL: {e}", shown()))?;
    no_fragment(&url)?;
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| format!("'{}' has no host", shown()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let default_port = match scheme {
        "redis" | "rediss" => Some(6379),
        "memcached" => Some(11211),
        "nats" => Some(4222),
        "zookeeper" => Some(2181),
        "amqp" => Some(5672),
        "amqps" => Some(5671),
        "grpcs" => Some(443),
        _ => None,
    };
    let port = url.port().or(default_port).ok_or_else(|| format!("'{}' has no port: write grpc://HOST:PORT", shown()))?;
    let decode = |s: &str| percent_decode(s).ok_or_else(|| format!("'{}': the user or password is not valid UTF-8", shown()));
    let user = if url.username().is_empty() { None } else { Some(decode(url.username())?) };
    let password = url.password().map(decode).transpose()?;
    let path = url.path().trim_start_matches('/');
    let mut role = None;
    for (key, value) in url.query_pairs() {
        match (scheme, key.as_ref()) {
            ("redis" | "rediss", "role") => {
                role = Some(
                    crate::probe::redis::Role::parse(&value)
                        .ok_or_else(|| format!("'{}': role={value}: write role=master or role=replica", shown()))?,
                );
            }
            _ => {
                return Err(format!(
                    "'{}': unknown option '{key}'{}",
                    shown(),
                    if scheme.starts_with("redis") { " (only role=master|replica is known)" } else { "" }
                ));
            }
        }
    }
    let no_path = |what: &str| if path.is_empty() { Ok(()) } else { Err(format!("'{}': {scheme}:// targets take no path{what}", shown())) };
    let service = match scheme {
        "redis" | "rediss" => {
            let db = if path.is_empty() {
                None
            } else {
                Some(
                    path.parse::<u32>()
                        .map_err(|_| format!("'{}': the path is the database number, e.g. {scheme}://{host}:{port}/0", shown()))?,
                )
            };
            Service::Redis(crate::probe::redis::Check { host, port, user, password, db, role })
        }
        "memcached" => {
            no_path("")?;
            Service::Memcached { host, port }
        }
        "nats" => {
            no_path("")?;
            Service::Nats(crate::probe::nats::Check { host, port, user, password })
        }
        "zookeeper" => {
            let znode = if path.is_empty() {
                None
            } else {
                Some(format!("/{}", percent_decode(path).ok_or_else(|| format!("'{text}': the znode path is not valid UTF-8"))?))
            };
            Service::Zookeeper { host, port, znode }
        }
        "amqp" | "amqps" => {
            // The AMQP URI spec: the path (decoded) is the vhost; none means "/".
            let vhost = if path.is_empty() {
                "/".to_owned()
            } else {
                percent_decode(path).ok_or_else(|| format!("'{}': the vhost is not valid UTF-8", shown()))?
            };
            Service::Amqp(crate::probe::amqp::Check {
                host,
                port,
                user: user.unwrap_or_else(|| "guest".into()),
                password: password.unwrap_or_else(|| if url.username().is_empty() { "guest".into() } else { String::new() }),
                vhost,
            })
        }
        _ => {
            if !cfg!(feature = "grpc") {
                return Err(format!(
                    "'{text}': gRPC targets are not compiled into this build; use the full podinit image, or wait for the port with tcp://{host}:{port}"
                ));
            }
            Service::Grpc { service: path.to_owned() }
        }
    };
    Ok(Target::Service { service, tls: matches!(scheme, "rediss" | "amqps" | "grpcs"), url })
}

fn parse_tcp(text: &str) -> Result<Target, String> {
    let rest = text["tcp://".len()..].trim_end_matches('/');
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or_else(|| format!("'{text}': unclosed '[' in an IPv6 address"))?;
        let port = after.strip_prefix(':').ok_or_else(|| format!("'{text}' has no port: write tcp://[{addr}]:PORT"))?;
        addr.parse::<std::net::Ipv6Addr>().map_err(|_| format!("'{text}': '{addr}' is not an IPv6 address"))?;
        (addr.to_owned(), port)
    } else {
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| format!("'{text}' has no port: write tcp://HOST:PORT"))?;
        if host.contains(':') {
            return Err(format!("'{text}': put an IPv6 address in brackets, e.g. tcp://[::1]:5432"));
        }
        (host.to_owned(), port)
    };
    if host.is_empty() {
        return Err(format!("'{text}' has no host"));
    }
    let port = port.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| format!("'{text}': '{port}' is not a port (1-65535)"))?;
    Ok(Target::Tcp { host, port })
}

fn parse_dns(text: &str) -> Result<Target, String> {
    let rest = &text["dns://".len()..];
    let (name, query) = rest.split_once('?').unwrap_or((rest, ""));
    let name = name.trim_end_matches('/');
    if name.is_empty() || name.contains('/') {
        return Err(format!("'{text}': write dns://NAME or dns://NAME?type=MX"));
    }
    let mut record = RecordType::Addr;
    let mut min = 1;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("type", value)) => {
                record = RecordType::parse(value)
                    .ok_or_else(|| format!("'{text}': record type '{value}' is not one of A, AAAA, CNAME, MX, NS, SRV, TXT"))?;
            }
            Some(("min", value)) => {
                min = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| format!("'{text}': min={value}: give a count of records from 1 to 10000"))?;
            }
            _ => return Err(format!("'{text}': unknown option '{pair}' (type=… and min=… are known)")),
        }
    }
    Ok(Target::Dns { name: name.to_owned(), record, min })
}

fn abs_path(text: &str, scheme: &str) -> Result<PathBuf, String> {
    let rest = &text[scheme.len() + 3..];
    if !rest.starts_with('/') {
        return Err(format!("'{text}': the path must be absolute, e.g. {scheme}:///var/run/app.sock (three slashes)"));
    }
    if rest.len() == 1 {
        return Err(format!("'{text}' names no path"));
    }
    Ok(PathBuf::from(rest))
}

/// A SysV key: decimal (may be negative, as `ipcs` prints keys as signed) or 0x-hex.
fn parse_key(raw: &str) -> Result<i32, String> {
    let raw = raw.trim_end_matches('/');
    let parsed = if let Some(hex) = raw.strip_prefix("0x").or_else(|| raw.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16).ok().map(|v| v.cast_signed())
    } else {
        raw.parse::<i32>().ok().or_else(|| raw.parse::<u32>().ok().map(u32::cast_signed))
    };
    match parsed {
        Some(0) => Err("key 0 is IPC_PRIVATE, which no other process can wait for".into()),
        Some(key) => Ok(key),
        None => Err(format!("'{raw}' is not a key: give a decimal number or 0x-hex, e.g. 0x1234")),
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { host, port } if host.contains(':') => write!(f, "tcp://[{host}]:{port}"),
            Self::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            Self::Http { url } | Self::Db { url, .. } | Self::Service { url, .. } => f.write_str(&redact::url(url)),
            Self::Dns { name, record, min } => {
                write!(f, "dns://{name}")?;
                let mut sep = '?';
                if *record != RecordType::Addr {
                    write!(f, "?type={}", format!("{record:?}").to_ascii_uppercase())?;
                    sep = '&';
                }
                if *min > 1 {
                    write!(f, "{sep}min={min}")?;
                }
                Ok(())
            }
            Self::File { path } => write!(f, "file://{}", path.display()),
            Self::Unix { path } => write!(f, "unix://{}", path.display()),
            Self::PosixMq { name } => write!(f, "posix-mq://{name}"),
            Self::Sysv { kind, key } => {
                let scheme = match kind {
                    SysvKind::Msg => "sysv-msg",
                    SysvKind::Shm => "sysv-shm",
                    SysvKind::Sem => "sysv-sem",
                };
                write!(f, "{scheme}://{:#x}", key.cast_unsigned())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Target {
        Target::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn an_unencoded_hash_in_a_password_is_refused_without_showing_it() {
        // `p@ss#zq9x`: the URL parser reads host `ss` and a fragment `zq9x@…`.
        for text in ["redis://:p@ss#zq9x@cache:6379", "postgres://app:p@ss#zq9x@db/app", "nats://u:p@ss#zq9x@nats:4222"] {
            let err = Target::parse(text).unwrap_err();
            // (A build without database targets refuses the postgres one before looking.)
            assert!((err.contains("%23") || err.contains("not compiled")) && !err.contains("zq9x"), "{text}: {err}");
        }
    }

    #[test]
    fn a_password_file_never_turns_a_nats_token_into_a_user() {
        let mut token = ok("nats://s3cret-token@nats:4222");
        assert!(!token.set_default_password("from-file"));
        let mut bare = ok("nats://nats:4222");
        assert!(bare.set_default_password("from-file"));
    }

    #[test]
    fn tcp_targets() {
        assert_eq!(ok("tcp://db:5432"), Target::Tcp { host: "db".into(), port: 5432 });
        assert_eq!(ok("tcp://[::1]:80"), Target::Tcp { host: "::1".into(), port: 80 });
        assert_eq!(ok("tcp://[::1]:80").to_string(), "tcp://[::1]:80");
        assert_eq!(ok("TCP://10.0.0.1:1/"), Target::Tcp { host: "10.0.0.1".into(), port: 1 });
        for bad in
            ["tcp://db", "tcp://db:", "tcp://db:0", "tcp://db:70000", "tcp://:80", "tcp://::1:80", "tcp://[::1]", "tcp://[zz]:1", "db:5432"]
        {
            assert!(Target::parse(bad).is_err(), "{bad} must be refused");
        }
        assert!(Target::parse("db:5432").unwrap_err().contains("no scheme"));
    }

    #[test]
    #[cfg(not(feature = "databases"))]
    fn database_targets_are_refused_without_the_feature_and_keep_their_password_hidden() {
        let err = Target::parse("postgres://app:s3cr3t@db/app").unwrap_err();
        assert!(err.contains("not compiled into this build") && !err.contains("s3cr3t"), "{err}");
    }

    #[test]
    fn http_and_dns_targets() {
        assert!(matches!(ok("https://api.example/healthz?x=1"), Target::Http { .. }));
        assert!(Target::parse("http://").is_err());
        assert_eq!(ok("dns://db.default.svc"), Target::Dns { name: "db.default.svc".into(), record: RecordType::Addr, min: 1 });
        assert_eq!(ok("dns://example.org?type=mx"), Target::Dns { name: "example.org".into(), record: RecordType::Mx, min: 1 });
        assert_eq!(ok("dns://peers.db.svc?min=3").to_string(), "dns://peers.db.svc?min=3");
        assert_eq!(ok("dns://x?type=srv&min=2").to_string(), "dns://x?type=SRV&min=2");
        assert!(Target::parse("dns://x?min=0").unwrap_err().contains("min=0"));
        assert_eq!(ok("dns://example.org?type=mx").to_string(), "dns://example.org?type=MX");
        assert!(Target::parse("dns://x?type=BOGUS").unwrap_err().contains("record type"));
        assert!(Target::parse("dns://").is_err());
    }

    #[test]
    #[cfg(feature = "databases")]
    fn database_targets_hide_their_password() {
        let t = ok("postgres://app:s3cr3t@db:5432/app?sslmode=disable");
        assert!(matches!(t, Target::Db { kind: Database::Postgres, query: None, .. }));
        let q = ok("postgres://app@db/app?sslmode=disable&query=SELECT%20count(*)%3E0+1%20FROM%20t");
        assert!(
            matches!(&q, Target::Db { query: Some(q), url, .. } if q == "SELECT count(*)>0+1 FROM t" && url.query() == Some("sslmode=disable")),
            "{q:?}"
        );
        assert!(Target::parse("mysql://app@db/app?query=").unwrap_err().contains("query= is empty"));
        assert_eq!(t.to_string(), "postgres://***:***@db:5432/app?sslmode=disable");
        let t = ok("mariadb://app:pw@db/app?password=x");
        assert!(matches!(&t, Target::Db { kind: Database::Mysql, url, .. } if url.scheme() == "mysql"));
        assert!(!t.to_string().contains("pw@") && !t.to_string().contains("password=x"), "{t}");
        let err = Target::parse("postgres://app:s3cr3t@/x").unwrap_err();
        assert!(!err.contains("s3cr3t"), "{err}");
        for bad in ["http://user:s3cr3t@", "tcp://user:s3cr3t@db", "dns://user:s3cr3t@x?type=BAD"] {
            let err = Target::parse(bad).unwrap_err();
            assert!(!err.contains("s3cr3t"), "{bad}: {err}");
        }
        let mut t = ok("postgres://app@db/app");
        t.set_default_password("from-file");
        assert!(matches!(&t, Target::Db { url, .. } if url.password() == Some("from-file")));
        assert_eq!(t.to_string(), "postgres://***:***@db/app");
        let mut t = ok("postgres://app:given@db/app");
        t.set_default_password("from-file");
        assert!(matches!(&t, Target::Db { url, .. } if url.password() == Some("given")), "the URL's own password wins");
    }

    #[test]
    fn service_targets() {
        use crate::probe::redis::{Check, Role};
        let t = ok("rediss://app:p%40ss@cache:6380/2?role=master");
        assert_eq!(t.to_string(), "rediss://***:***@cache:6380/2?role=master");
        let Target::Service { service: Service::Redis(c), tls: true, .. } = t else { panic!("{t:?}") };
        assert_eq!(
            c,
            Check {
                host: "cache".into(),
                port: 6380,
                user: Some("app".into()),
                password: Some("p@ss".into()),
                db: Some(2),
                role: Some(Role::Master)
            }
        );
        let mut t = ok("redis://cache");
        assert!(t.set_default_password("from-file"));
        assert!(
            matches!(&t, Target::Service { service: Service::Redis(c), .. } if c.port == 6379 && c.password.as_deref() == Some("from-file"))
        );
        assert!(Target::parse("redis://cache/x").unwrap_err().contains("database number"));
        assert!(Target::parse("redis://cache?role=boss").unwrap_err().contains("role=master"));
        assert_eq!(
            ok("zookeeper://zk:2181/app/ready"),
            Target::Service {
                service: Service::Zookeeper { host: "zk".into(), port: 2181, znode: Some("/app/ready".into()) },
                url: Url::parse("zookeeper://zk:2181/app/ready").unwrap(),
                tls: false
            }
        );
        let Target::Service { service: Service::Amqp(a), .. } = ok("amqp://rabbit/%2f") else { panic!() };
        assert_eq!((a.user.as_str(), a.password.as_str(), a.vhost.as_str(), a.port), ("guest", "guest", "/", 5672));
        let Target::Service { service: Service::Amqp(a), .. } = ok("amqps://app@rabbit/orders") else { panic!() };
        assert_eq!((a.password.as_str(), a.vhost.as_str(), a.port), ("", "orders", 5671));
        assert!(matches!(ok("memcached://mc"), Target::Service { service: Service::Memcached { port: 11211, .. }, .. }));
        assert!(Target::parse("memcached://u:p@mc").unwrap_err().contains("carry no user"));
        assert!(Target::parse("nats://n/x").unwrap_err().contains("take no path"));
        let err = Target::parse("redis://app:s3cr3t@cache?x=1").unwrap_err();
        assert!(!err.contains("s3cr3t"), "{err}");
    }

    #[test]
    fn path_targets_are_absolute() {
        assert_eq!(ok("file:///run/ready"), Target::File { path: "/run/ready".into() });
        assert_eq!(ok("unix:///run/app.sock"), Target::Unix { path: "/run/app.sock".into() });
        assert!(Target::parse("file://run/ready").unwrap_err().contains("absolute"));
        assert!(Target::parse("unix://").is_err());
        assert!(Target::parse("file:///").is_err());
    }

    #[test]
    fn ipc_targets() {
        assert_eq!(ok("posix-mq:///jobs"), Target::PosixMq { name: "/jobs".into() });
        assert_eq!(ok("posix-mq://jobs"), Target::PosixMq { name: "/jobs".into() });
        assert!(Target::parse("posix-mq:///a/b").is_err());
        assert_eq!(ok("sysv-msg://0x1234"), Target::Sysv { kind: SysvKind::Msg, key: 0x1234 });
        assert_eq!(ok("sysv-shm://4660"), Target::Sysv { kind: SysvKind::Shm, key: 4660 });
        assert_eq!(ok("sysv-sem://0xffffffff"), Target::Sysv { kind: SysvKind::Sem, key: -1 });
        assert_eq!(ok("sysv-sem://-1"), Target::Sysv { kind: SysvKind::Sem, key: -1 });
        assert_eq!(ok("sysv-msg://0x1234").to_string(), "sysv-msg://0x1234");
        for bad in ["sysv-msg://", "sysv-msg://0", "sysv-msg://0xZZ", "sysv-msg://key", "sysv-msg://99999999999"] {
            assert!(Target::parse(bad).is_err(), "{bad} must be refused");
        }
        assert!(Target::parse("smb://x").unwrap_err().contains("unknown scheme 'smb://'"));
    }
}
