//! `amqp://[USER:PASS@]HOST[:PORT][/VHOST]` and `amqps://` (TLS): ready when an AMQP 0-9-1
//! broker (RabbitMQ) takes the handshake through to `Connection.Open-Ok` on the vhost: the
//! credentials are accepted (PLAIN) and the vhost exists and may be used. A refusal (403
//! ACCESS_REFUSED, 530 NOT_ALLOWED for a missing vhost) is not ready, named; the user and
//! vhost may be created by a job that has not run yet. Without a user part: guest/guest, as
//! the AMQP URI spec's clients do.

use std::sync::Arc;

use anyhow::{anyhow, bail};

use super::wire::{Conn, said};

/// Largest frame read (Connection.Start is well under 1 KiB).
const MAX_FRAME: usize = 128 << 10;
/// Frames read while waiting for one method (heartbeats may come between).
const MAX_FRAMES: usize = 8;
const FRAME_METHOD: u8 = 1;
const FRAME_HEARTBEAT: u8 = 8;
const FRAME_END: u8 = 0xce;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Check {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) password: String,
    pub(crate) vhost: String,
}

pub(crate) async fn check(c: &Check, tls: Option<&Arc<rustls::ClientConfig>>) -> anyhow::Result<()> {
    let mut conn = Conn::open(&c.host, c.port, tls).await?;
    conn.send(b"AMQP\x00\x00\x09\x01").await?;
    let start = method(&mut conn, (10, 10), "Connection.Start").await?;
    let mut r = Reader(&start);
    let (major, minor) = (r.u8()?, r.u8()?);
    if (major, minor) != (0, 9) {
        bail!("the broker speaks AMQP {major}-{minor}, not 0-9-1");
    }
    r.long_bytes()?; // server properties
    let mechanisms = String::from_utf8_lossy(r.long_bytes()?).into_owned();
    if !mechanisms.split(' ').any(|m| m == "PLAIN") {
        bail!("the broker offers no PLAIN login (offers: {})", said(&mechanisms));
    }
    let mut start_ok = method_head(10, 11);
    start_ok.extend_from_slice(&client_properties());
    short(&mut start_ok, b"PLAIN");
    let response = [b"\0", c.user.as_bytes(), b"\0", c.password.as_bytes()].concat();
    long(&mut start_ok, &response);
    short(&mut start_ok, b"en_US");
    conn.send(&frame(&start_ok)).await?;

    let tune = method(&mut conn, (10, 30), "Connection.Tune").await?;
    let mut r = Reader(&tune);
    let (channels, frame_max) = (r.u16()?, r.u32()?);
    let mut tune_ok = method_head(10, 31);
    tune_ok.extend_from_slice(&channels.to_be_bytes());
    tune_ok.extend_from_slice(&frame_max.to_be_bytes());
    tune_ok.extend_from_slice(&0_u16.to_be_bytes()); // no heartbeats: we leave at once
    conn.send(&frame(&tune_ok)).await?;
    let mut open = method_head(10, 40);
    short(&mut open, c.vhost.as_bytes());
    short(&mut open, b"");
    open.push(0);
    conn.send(&frame(&open)).await?;
    method(&mut conn, (10, 41), "Connection.Open-Ok").await?;

    let mut close = method_head(10, 50);
    close.extend_from_slice(&200_u16.to_be_bytes());
    short(&mut close, b"bye");
    close.extend_from_slice(&[0, 0, 0, 0]);
    let _ = conn.send(&frame(&close)).await;
    Ok(())
}

/// Reads frames until a method arrives; it must be `want`, else the broker's Close (with its
/// reply code and text) or the surprise is the error.
async fn method(conn: &mut Conn, want: (u16, u16), name: &str) -> anyhow::Result<Vec<u8>> {
    for _ in 0..MAX_FRAMES {
        let head = conn.exact(7).await.map_err(|e| anyhow!("waiting for {name}: {e:#}"))?;
        let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]);
        let size =
            usize::try_from(size).ok().filter(|n| *n <= MAX_FRAME).ok_or_else(|| anyhow!("a frame of {size} bytes: is this AMQP?"))?;
        let mut payload = conn.exact(size + 1).await?;
        if payload.pop() != Some(FRAME_END) {
            bail!("a frame without its end marker: is this AMQP 0-9-1?");
        }
        match head[0] {
            FRAME_HEARTBEAT => continue,
            FRAME_METHOD => {}
            other => bail!("frame type {other} where {name} was expected"),
        }
        let mut r = Reader(&payload);
        let got = (r.u16()?, r.u16()?);
        if got == want {
            return Ok(r.0.to_vec());
        }
        if got == (10, 50) {
            let code = r.u16()?;
            let text = String::from_utf8_lossy(r.short_bytes()?).into_owned();
            bail!("the broker refused: {code} {}", said(&text));
        }
        bail!("method {}.{} where {name} was expected", got.0, got.1);
    }
    bail!("no {name} after {MAX_FRAMES} frames")
}

fn method_head(class: u16, method: u16) -> Vec<u8> {
    let mut out = class.to_be_bytes().to_vec();
    out.extend_from_slice(&method.to_be_bytes());
    out
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![FRAME_METHOD, 0, 0];
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(payload);
    out.push(FRAME_END);
    out
}

fn short(out: &mut Vec<u8>, text: &[u8]) {
    let text = &text[..text.len().min(255)];
    out.push(u8::try_from(text.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(text);
}

fn long(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(data);
}

/// `{product: "podinit", capabilities: {authentication_failure_close: true}}`: the
/// capability makes RabbitMQ say why a login failed instead of only closing.
fn client_properties() -> Vec<u8> {
    let mut capabilities = Vec::new();
    short(&mut capabilities, b"authentication_failure_close");
    capabilities.extend_from_slice(b"t\x01");
    let mut table = Vec::new();
    short(&mut table, b"product");
    table.push(b'S');
    long(&mut table, b"podinit wait-for");
    short(&mut table, b"capabilities");
    table.push(b'F');
    long(&mut table, &capabilities);
    let mut out = Vec::new();
    long(&mut out, &table);
    out
}

/// Reads AMQP fields off a method's arguments.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> anyhow::Result<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n).ok_or_else(|| anyhow!("a method shorter than its fields: is this AMQP 0-9-1?"))?;
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> anyhow::Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> anyhow::Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> anyhow::Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn short_bytes(&mut self) -> anyhow::Result<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
    fn long_bytes(&mut self) -> anyhow::Result<&'a [u8]> {
        let n = self.u32()?;
        self.take(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_fields() {
        let f = frame(&method_head(10, 41));
        assert_eq!(f, [1, 0, 0, 0, 0, 0, 4, 0, 10, 0, 41, 0xce]);
        let props = client_properties();
        let mut r = Reader(&props);
        let table = r.long_bytes().unwrap();
        assert_eq!(table.len(), props.len() - 4);
        let mut r = Reader(table);
        assert_eq!(r.short_bytes().unwrap(), b"product");
        assert!(Reader(&[0, 5, b'a']).long_bytes().is_err(), "a length past the end is an error, not a panic");
    }
}
