//! A byte stream for protocol checks (Redis, memcached, NATS, ZooKeeper, AMQP): TCP, or TLS
//! on it, with reads that never take more than the caller allows. Every check runs inside
//! the attempt timeout, so a server that accepts and then stalls is "not ready", never a hang.

use std::sync::Arc;

use anyhow::{anyhow, bail};
use podinit_core::redact::io_reason;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader};

/// Longest line a line protocol may send (NATS's INFO carries a JSON object).
const MAX_LINE: u64 = 64 << 10;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One connection to a server.
pub(crate) struct Conn {
    io: BufReader<Box<dyn Io>>,
    peer: String,
}

impl Conn {
    /// Connects to `host:port` (any address it resolves to, in order), then does the TLS
    /// handshake when `tls` is given (SNI for `host`; verification for `host`, or for
    /// --tls-server-name when `tls` was made with it).
    pub(crate) async fn open(host: &str, port: u16, tls: Option<&Arc<rustls::ClientConfig>>) -> anyhow::Result<Self> {
        let peer = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let tcp = tokio::net::TcpStream::connect((host, port)).await.map_err(|e| anyhow!("connecting to {peer}: {}", io_reason(&e)))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match tls {
            None => Box::new(tcp),
            Some(config) => {
                let name =
                    ServerName::try_from(host.to_owned()).map_err(|_| anyhow!("'{host}' is not a DNS name or IP address for TLS"))?;
                let stream = tokio_rustls::TlsConnector::from(Arc::clone(config))
                    .connect(name, tcp)
                    .await
                    .map_err(|e| anyhow!("TLS handshake with {peer}: {}", io_reason(&e)))?;
                Box::new(stream)
            }
        };
        Ok(Self { io: BufReader::new(io), peer })
    }

    /// Writes all of `bytes`.
    pub(crate) async fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let io = self.io.get_mut();
        io.write_all(bytes).await.map_err(|e| anyhow!("writing to {}: {}", self.peer, io_reason(&e)))?;
        io.flush().await.map_err(|e| anyhow!("writing to {}: {}", self.peer, io_reason(&e)))
    }

    /// One line, without its `\r\n` or `\n`; an error when the server closes first or the
    /// line is longer than 64 KiB.
    pub(crate) async fn line(&mut self) -> anyhow::Result<String> {
        let mut buf = Vec::new();
        let n = (&mut self.io).take(MAX_LINE).read_until(b'\n', &mut buf).await.map_err(|e| self.read_error(&e))?;
        if n == 0 {
            bail!("{} closed the connection", self.peer);
        }
        if buf.last() != Some(&b'\n') {
            if n as u64 >= MAX_LINE {
                bail!("{} sent a line longer than {} KiB", self.peer, MAX_LINE >> 10);
            }
            bail!("{} closed the connection mid-line", self.peer);
        }
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    /// Exactly `n` bytes (the caller bounds `n`).
    pub(crate) async fn exact(&mut self, n: usize) -> anyhow::Result<Vec<u8>> {
        let mut buf = vec![0; n];
        self.io.read_exact(&mut buf).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof { anyhow!("{} closed the connection", self.peer) } else { self.read_error(&e) }
        })?;
        Ok(buf)
    }

    fn read_error(&self, err: &std::io::Error) -> anyhow::Error {
        anyhow!("reading from {}: {}", self.peer, io_reason(err))
    }
}

/// What a server said, cut to 200 characters, for an error message (the log escapes control
/// characters).
pub(crate) fn said(text: &str) -> String {
    let mut out: String = text.chars().take(200).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// `err` with every non-empty one of `secrets` in its text replaced by `***`.
pub(crate) fn masked(err: anyhow::Error, secrets: &[&str]) -> anyhow::Error {
    let text = format!("{err:#}");
    let secrets: Vec<&str> = secrets.iter().copied().filter(|s| !s.is_empty() && text.contains(*s)).collect();
    if secrets.is_empty() {
        return err;
    }
    anyhow!("{}", secrets.iter().fold(text, |text, secret| text.replace(secret, "***")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_server_repeating_a_password_does_not_put_it_in_the_error() {
        let err = anyhow::anyhow!("AUTH refused: ERR unknown command 'AUTH', with args beginning with: 'app' 's3cret'");
        let shown = super::masked(err, &["s3cret", ""]).to_string();
        assert_eq!(shown, "AUTH refused: ERR unknown command 'AUTH', with args beginning with: 'app' '***'");
        assert_eq!(super::masked(anyhow::anyhow!("no echo"), &["s3cret"]).to_string(), "no echo");
    }
}
