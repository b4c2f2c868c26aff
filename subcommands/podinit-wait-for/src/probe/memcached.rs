//! `memcached://HOST[:PORT]`: ready when the server answers `version` with `VERSION …`.

use anyhow::bail;

use super::wire::{Conn, said};

pub(crate) async fn check(host: &str, port: u16) -> anyhow::Result<()> {
    let mut conn = Conn::open(host, port, None).await?;
    conn.send(b"version\r\n").await?;
    let line = conn.line().await?;
    if !line.starts_with("VERSION ") {
        bail!("answered '{}' to version: is this memcached?", said(&line));
    }
    let _ = conn.send(b"quit\r\n").await;
    Ok(())
}
