//! `nats://[USER:PASS@|TOKEN@]HOST[:PORT]`: ready when the server, after its INFO, accepts our
//! CONNECT (user and password, or a token) and answers PING with PONG. An authorization
//! failure is `-ERR 'Authorization Violation'`: not ready (the account may come later), named.

use anyhow::bail;

use super::wire::{Conn, said};

/// Lines read after CONNECT before PONG must have come (INFO updates, +OK, server PINGs).
const MAX_LINES: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Check {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
}

pub(crate) async fn check(c: &Check) -> anyhow::Result<()> {
    let mut conn = Conn::open(&c.host, c.port, None).await?;
    let info = conn.line().await?;
    let Some(json) = info.strip_prefix("INFO ") else {
        bail!("began with '{}' instead of INFO: is this NATS?", said(&info));
    };
    let info: serde_json::Value = serde_json::from_str(json).map_err(|e| anyhow::anyhow!("its INFO is not JSON: {e}"))?;
    if info.get("tls_required").and_then(serde_json::Value::as_bool) == Some(true) {
        bail!("the server requires TLS, which nats:// targets do not speak yet: wait for tcp://{}:{} instead", c.host, c.port);
    }
    conn.send(&connect(c)).await?;
    for _ in 0..MAX_LINES {
        let line = conn.line().await?;
        match line.as_str() {
            "PONG" => return Ok(()),
            "PING" => conn.send(b"PONG\r\n").await?,
            "+OK" => {}
            l if l.starts_with("INFO ") => {}
            l if l.starts_with("-ERR") => bail!("refused: {}", said(l.trim_start_matches("-ERR").trim())),
            l => bail!("answered '{}': is this NATS?", said(l)),
        }
    }
    bail!("no PONG after {MAX_LINES} lines")
}

/// CONNECT with the credentials (a token when there is a user part only) and PING.
fn connect(c: &Check) -> Vec<u8> {
    let mut options = serde_json::json!({
        "verbose": false,
        "pedantic": false,
        "tls_required": false,
        "name": "podinit wait-for",
        "lang": "rust",
        "version": env!("CARGO_PKG_VERSION"),
        "protocol": 1,
        "echo": false,
    });
    match (c.user.as_deref().filter(|u| !u.is_empty()), &c.password) {
        (Some(user), Some(pass)) => {
            options["user"] = user.into();
            options["pass"] = pass.as_str().into();
        }
        (Some(token), None) => options["auth_token"] = token.into(),
        (None, Some(token)) => options["auth_token"] = token.as_str().into(),
        (None, None) => {}
    }
    format!("CONNECT {options}\r\nPING\r\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_carries_a_user_and_password_or_a_token() {
        let c = |user: Option<&str>, password: Option<&str>| Check {
            host: "n".into(),
            port: 4222,
            user: user.map(str::to_owned),
            password: password.map(str::to_owned),
        };
        let text = |c: &Check| String::from_utf8(connect(c)).unwrap();
        let both = text(&c(Some("app"), Some("p\"w")));
        assert!(both.starts_with("CONNECT {") && both.ends_with("}\r\nPING\r\n"), "{both}");
        assert!(both.contains(r#""user":"app""#) && both.contains(r#""pass":"p\"w""#), "{both}");
        assert!(text(&c(Some("tok"), None)).contains(r#""auth_token":"tok""#));
        assert!(!text(&c(None, None)).contains("auth_token"));
    }
}
