//! `redis://[USER:PASS@]HOST[:PORT][/DB][?role=master|replica]` and `rediss://` (TLS): ready
//! when the server answers PING with PONG after AUTH (ACL user or password) and SELECT. A
//! Redis that accepts connections while it loads its dataset answers `-LOADING`; a replica
//! cut off from its master `-MASTERDOWN`; one running a long script `-BUSY`: not ready. With
//! `role=master`, only a master counts; with `role=replica`, only a replica whose link to its
//! master is up (ROLE says `connected`).

use std::sync::Arc;

use anyhow::{anyhow, bail};

use super::wire::{Conn, said};

/// Largest bulk string read (ROLE and errors are small).
const MAX_BULK: usize = 1 << 20;
/// Most elements in one array, and deepest nesting (ROLE of a master: replicas' arrays).
const MAX_ITEMS: usize = 1024;
const MAX_DEPTH: u32 = 3;
/// What one whole reply may cost, however it nests: bytes read and elements.
const REPLY_BYTES: usize = 1 << 20;
const REPLY_ITEMS: usize = 4096;

/// What one Redis target asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Check {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) db: Option<u32>,
    pub(crate) role: Option<Role>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Master,
    Replica,
}

impl Role {
    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "master" | "primary" => Some(Self::Master),
            "replica" | "slave" => Some(Self::Replica),
            _ => None,
        }
    }
}

/// A RESP2 reply.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

pub(crate) async fn check(c: &Check, tls: Option<&Arc<rustls::ClientConfig>>) -> anyhow::Result<()> {
    let mut conn = Conn::open(&c.host, c.port, tls).await?;
    if let Some(password) = &c.password {
        let mut args: Vec<&[u8]> = vec![b"AUTH"];
        if let Some(user) = c.user.as_deref().filter(|u| !u.is_empty()) {
            args.push(user.as_bytes());
        }
        args.push(password.as_bytes());
        match command(&mut conn, &args).await? {
            Reply::Simple(ok) if ok == "OK" => {}
            // WRONGPASS does not repeat the password, but an unknown AUTH (renamed, a proxy)
            // does: `check`'s caller masks it.
            Reply::Error(e) => bail!("AUTH refused: {}", said(&e)),
            other => bail!("AUTH answered {}", shown(&other)),
        }
    }
    if let Some(db) = c.db {
        match command(&mut conn, &[b"SELECT", db.to_string().as_bytes()]).await? {
            Reply::Simple(ok) if ok == "OK" => {}
            Reply::Error(e) => bail!("SELECT {db}: {}", said(&e)),
            other => bail!("SELECT {db} answered {}", shown(&other)),
        }
    }
    match command(&mut conn, &[b"PING"]).await? {
        Reply::Simple(pong) if pong == "PONG" => {}
        Reply::Error(e) if e.starts_with("LOADING") => bail!("loading its dataset into memory (LOADING)"),
        Reply::Error(e) if e.starts_with("NOAUTH") => {
            bail!("the server wants a password (NOAUTH): put it in the URL's password part or --password-file")
        }
        Reply::Error(e) => bail!("PING: {}", said(&e)),
        other => bail!("PING answered {}", shown(&other)),
    }
    if let Some(want) = c.role {
        let reply = command(&mut conn, &[b"ROLE"]).await?;
        let (role, state) = match &reply {
            Reply::Array(Some(items)) => (text(items.first()), text(items.get(3))),
            Reply::Error(e) => bail!("ROLE: {}", said(e)),
            other => bail!("ROLE answered {}", shown(other)),
        };
        match (want, role.as_deref()) {
            (Role::Master, Some("master")) => {}
            (Role::Replica, Some("slave")) if state.as_deref() == Some("connected") => {}
            (Role::Replica, Some("slave")) => {
                bail!("a replica whose link to its master is {}", state.as_deref().unwrap_or("unknown"))
            }
            (Role::Master, other) => bail!("its role is {}, not master", other.unwrap_or("unknown")),
            (Role::Replica, other) => bail!("its role is {}, not replica", other.unwrap_or("unknown")),
        }
    }
    let _ = conn.send(b"*1\r\n$4\r\nQUIT\r\n").await;
    Ok(())
}

fn text(reply: Option<&Reply>) -> Option<String> {
    match reply? {
        Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        Reply::Simple(s) => Some(s.clone()),
        _ => None,
    }
}

/// A reply as an error message shows it (never a bulk string's content).
fn shown(reply: &Reply) -> String {
    match reply {
        Reply::Simple(s) => format!("+{}", said(s)),
        Reply::Error(e) => format!("-{}", said(e)),
        Reply::Int(n) => format!(":{n}"),
        Reply::Bulk(b) => format!("a bulk string of {} bytes", b.as_ref().map_or(0, Vec::len)),
        Reply::Array(a) => format!("an array of {} items", a.as_ref().map_or(0, Vec::len)),
    }
}

/// Sends one command (a RESP array of bulk strings) and reads its reply.
async fn command(conn: &mut Conn, args: &[&[u8]]) -> anyhow::Result<Reply> {
    conn.send(&encode(args)).await?;
    read(conn, 0, &mut Budget::new()).await
}

fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// What is left of one reply's budget.
struct Budget {
    bytes: usize,
    items: usize,
}

impl Budget {
    fn new() -> Self {
        Self { bytes: REPLY_BYTES, items: REPLY_ITEMS }
    }

    fn spend(&mut self, bytes: usize) -> anyhow::Result<()> {
        self.bytes =
            self.bytes.checked_sub(bytes).ok_or_else(|| anyhow!("a reply larger than {} KiB: is this Redis?", REPLY_BYTES >> 10))?;
        self.items = self.items.checked_sub(1).ok_or_else(|| anyhow!("a reply of more than {REPLY_ITEMS} elements: is this Redis?"))?;
        Ok(())
    }
}

async fn read(conn: &mut Conn, depth: u32, budget: &mut Budget) -> anyhow::Result<Reply> {
    let line = conn.line().await?;
    budget.spend(line.len() + 2)?;
    let (kind, rest) = line.split_at_checked(1).ok_or_else(|| anyhow!("an empty line where a reply was expected: is this Redis?"))?;
    let number = || rest.parse::<i64>().map_err(|_| anyhow!("'{}' is not a RESP length: is this Redis?", said(&line)));
    Ok(match kind {
        "+" => Reply::Simple(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Int(number()?),
        "$" => match number()? {
            -1 => Reply::Bulk(None),
            n => {
                let n = usize::try_from(n).map_err(|_| anyhow!("a bulk reply of {n} bytes: is this Redis?"))?;
                if n > MAX_BULK {
                    bail!("a bulk reply of {n} bytes: too large");
                }
                budget.spend(n + 2)?;
                let mut data = conn.exact(n + 2).await?;
                if !data.ends_with(b"\r\n") {
                    bail!("a bulk reply not ended by CRLF: is this Redis?");
                }
                data.truncate(n);
                Reply::Bulk(Some(data))
            }
        },
        "*" => match number()? {
            -1 => Reply::Array(None),
            n => {
                let n = usize::try_from(n)
                    .ok()
                    .filter(|n| *n <= MAX_ITEMS)
                    .ok_or_else(|| anyhow!("an array reply of {n} items: too many or negative"))?;
                if depth >= MAX_DEPTH {
                    bail!("arrays nested deeper than {MAX_DEPTH}");
                }
                // Reserved as the items come: a 7-byte header must not reserve for 1024.
                let mut items = Vec::with_capacity(n.min(16));
                for _ in 0..n {
                    items.push(Box::pin(read(conn, depth + 1, budget)).await?);
                }
                Reply::Array(Some(items))
            }
        },
        _ => bail!("'{}' is not a Redis reply: is this Redis?", said(&line)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_resp_arrays_of_bulk_strings() {
        assert_eq!(encode(&[b"AUTH", b"app", b"p w"]), b"*3\r\n$4\r\nAUTH\r\n$3\r\napp\r\n$3\r\np w\r\n");
        assert_eq!(Role::parse("primary"), Some(Role::Master));
        assert_eq!(Role::parse("leader"), None);
    }

    /// A server that answers whatever is sent with `reply`, once.
    fn hostile(reply: Vec<u8>) -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            use std::io::{Read as _, Write as _};
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = [0u8; 64];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(&reply);
        });
        port
    }

    #[tokio::test]
    async fn a_hostile_reply_is_refused_within_its_budget() {
        let target = |port| Check { host: "127.0.0.1".into(), port, user: None, password: None, db: None, role: None };
        // Nested arrays of 1024 small integers: 4096 elements at most, whatever the nesting.
        let mut nested = b"*1024\r\n".to_vec();
        for _ in 0..8 {
            nested.extend_from_slice(b"*1024\r\n");
            nested.extend(b":0\r\n".repeat(1024));
        }
        let err = check(&target(hostile(nested)), None).await.unwrap_err().to_string();
        assert!(err.contains("more than 4096 elements"), "{err}");
        // Bulks of 1 MiB, one after another in an array: the byte budget stops them.
        let mut bulks = b"*8\r\n".to_vec();
        for _ in 0..2 {
            bulks.extend_from_slice(format!("${}\r\n", MAX_BULK).as_bytes());
            bulks.extend(vec![b'x'; MAX_BULK]);
            bulks.extend_from_slice(b"\r\n");
        }
        let err = check(&target(hostile(bulks)), None).await.unwrap_err().to_string();
        assert!(err.contains("larger than 1024 KiB"), "{err}");
        let err = check(&target(hostile(b"$-5\r\n".to_vec())), None).await.unwrap_err().to_string();
        assert!(err.contains("is this Redis"), "{err}");
        let err = check(&target(hostile(b"$3\r\nabcXY".to_vec())), None).await.unwrap_err().to_string();
        assert!(err.contains("not ended by CRLF"), "{err}");
    }
}
