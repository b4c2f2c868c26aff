//! `zookeeper://HOST[:PORT][/ZNODE]`: ready when the server grants a session (a member of an
//! ensemble without quorum, or one still starting, closes the connection instead: a listening
//! port is not enough) and, with a path, when that znode exists. The session is closed again
//! at once. Works whether or not four-letter words are enabled (3.5+ disables most).

use anyhow::{anyhow, bail};

use super::wire::Conn;

/// Largest reply frame read (a Stat is 68 bytes).
const MAX_FRAME: usize = 1 << 20;
/// Frames read while looking for our reply (the server may send a ping or an event first).
const MAX_FRAMES: usize = 8;
/// Session timeout asked for (ms); the server clamps it to its own bounds.
const SESSION_TIMEOUT_MS: i32 = 4000;
const OP_EXISTS: i32 = 3;
const OP_CLOSE: i32 = -11;
const ERR_NO_NODE: i32 = -101;

pub(crate) async fn check(host: &str, port: u16, znode: Option<&str>) -> anyhow::Result<()> {
    let mut conn = Conn::open(host, port, None).await?;
    conn.send(&frame(&connect_request())).await?;
    let reply = read_frame(&mut conn).await.map_err(|e| anyhow!("no session granted (not serving yet?): {e:#}"))?;
    let timeout = reply
        .get(4..8)
        .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| anyhow!("a connect reply too short: is this ZooKeeper?"))?;
    if timeout <= 0 {
        bail!("the server refused the session (timeout {timeout})");
    }
    let result = match znode {
        None => Ok(()),
        Some(path) => exists(&mut conn, path).await,
    };
    let _ = conn.send(&frame(&header(2, OP_CLOSE))).await;
    result
}

async fn exists(conn: &mut Conn, path: &str) -> anyhow::Result<()> {
    let mut request = header(1, OP_EXISTS);
    let len = i32::try_from(path.len()).map_err(|_| anyhow!("the znode path is too long"))?;
    request.extend_from_slice(&len.to_be_bytes());
    request.extend_from_slice(path.as_bytes());
    request.push(0); // no watch
    conn.send(&frame(&request)).await?;
    for _ in 0..MAX_FRAMES {
        let reply = read_frame(conn).await?;
        let (xid, err) = match (reply.get(0..4), reply.get(12..16)) {
            (Some(x), Some(e)) => (i32::from_be_bytes([x[0], x[1], x[2], x[3]]), i32::from_be_bytes([e[0], e[1], e[2], e[3]])),
            _ => bail!("a reply too short: is this ZooKeeper?"),
        };
        if xid != 1 {
            continue; // a ping (-2) or a watch event (-1)
        }
        return match err {
            0 => Ok(()),
            ERR_NO_NODE => Err(anyhow!("znode {path} does not exist yet")),
            other => Err(anyhow!("checking znode {path}: ZooKeeper error {other}")),
        };
    }
    bail!("no reply to exists({path}) after {MAX_FRAMES} frames")
}

/// ConnectRequest: protocol 0, last zxid 0, the timeout, session 0, a 16-byte empty
/// password, read-only false.
fn connect_request() -> Vec<u8> {
    let mut out = Vec::with_capacity(45);
    out.extend_from_slice(&0_i32.to_be_bytes());
    out.extend_from_slice(&0_i64.to_be_bytes());
    out.extend_from_slice(&SESSION_TIMEOUT_MS.to_be_bytes());
    out.extend_from_slice(&0_i64.to_be_bytes());
    out.extend_from_slice(&16_i32.to_be_bytes());
    out.extend_from_slice(&[0; 16]);
    out.push(0);
    out
}

fn header(xid: i32, op: i32) -> Vec<u8> {
    let mut out = xid.to_be_bytes().to_vec();
    out.extend_from_slice(&op.to_be_bytes());
    out
}

/// Length-prefixed (jute's framing).
fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

async fn read_frame(conn: &mut Conn) -> anyhow::Result<Vec<u8>> {
    let len = conn.exact(4).await?;
    let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
    let len = usize::try_from(len).ok().filter(|n| *n <= MAX_FRAME).ok_or_else(|| anyhow!("a frame of {len} bytes: is this ZooKeeper?"))?;
    conn.exact(len).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connect_request_is_zookeepers() {
        let request = frame(&connect_request());
        assert_eq!(request.len(), 4 + 45);
        assert_eq!(&request[..4], &45_u32.to_be_bytes());
        assert_eq!(&request[4 + 12..4 + 16], &4000_i32.to_be_bytes());
        assert_eq!(&request[4 + 24..4 + 28], &16_i32.to_be_bytes());
        assert_eq!(header(1, OP_EXISTS), [0, 0, 0, 1, 0, 0, 0, 3]);
    }
}
