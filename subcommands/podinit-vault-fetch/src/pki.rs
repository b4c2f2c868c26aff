//! `--pki pki/issue/ROLE`: a serving certificate from Vault's PKI engine as `tls.crt`
//! (certificate and intermediates), `tls.key` (PKCS#8) and `ca.crt` (the root), the names of
//! a `kubernetes.io/tls` Secret, kept across pod restarts while it is still good.
//!
//! Keep rule: the set's `tls.crt` is kept when its key is `tls.key`, its common name and
//! names are exactly the asked ones (Vault adds the common name to the DNS names, or to the IP
//! names when it is an address, so that one may or may not be there), it is not self-signed
//! and chains to the mount's issuers as Vault reports them now (`<mount>/cert/ca_chain`,
//! read on every rerun; `ca.crt` is written from that answer, never trusted from disk), and
//! more than `--renew-below` of its life is left. Anything else issues a new one. A changed
//! `--ttl` or role takes effect at the next renewal (the certificate does not say what was
//! asked), and a revoked certificate is not noticed (nothing reads the CRL).

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use podinit_core::fs::root::Dir;
use podinit_core::{Error, Kind};
use podinit_tls::inspect;
use serde_json::{Map, Value};

use crate::output::Planned;

/// What `--pki` asks for.
#[derive(Clone, Debug)]
pub(crate) struct Request {
    /// `pki/issue/web` (or `pki/issue/web` under another mount).
    pub(crate) path: String,
    pub(crate) common_name: String,
    /// Extra DNS names, sorted.
    pub(crate) alt_names: Vec<String>,
    /// IP names, sorted.
    pub(crate) ip_sans: Vec<IpAddr>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) renew_below: f64,
}

pub(crate) const FILES: [&str; 3] = ["tls.crt", "tls.key", "ca.crt"];

impl Request {
    /// The body of the `issue` call: PEM, the key as PKCS#8 (what Go, Java and OpenSSL all
    /// read).
    pub(crate) fn body(&self) -> Map<String, Value> {
        let mut body = Map::new();
        body.insert("common_name".into(), self.common_name.clone().into());
        if !self.alt_names.is_empty() {
            body.insert("alt_names".into(), self.alt_names.join(",").into());
        }
        if !self.ip_sans.is_empty() {
            body.insert("ip_sans".into(), self.ip_sans.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(",").into());
        }
        if let Some(ttl) = self.ttl {
            body.insert("ttl".into(), format!("{}s", ttl.as_secs()).into());
        }
        body.insert("format".into(), "pem".into());
        body.insert("private_key_format".into(), "pkcs8".into());
        body
    }

    /// The mount of the issue path: `pki` of `pki/issue/web`.
    pub(crate) fn mount(&self) -> &str {
        self.path.rsplit_once("/issue/").map_or(self.path.as_str(), |(mount, _)| mount)
    }

    /// The set's certificate and key when they can stay, with the fraction of life left, and
    /// `ca.crt` from `vault_chain` (the mount's issuers now, DER): nothing on disk is trusted
    /// for the chain, so a planted self-signed pair or a certificate of another CA is replaced.
    pub(crate) fn kept(&self, current: &Dir, vault_chain: &[Vec<u8>]) -> Option<(Vec<Planned>, f64)> {
        let read = |name: &str| current.read(std::ffi::OsStr::new(name)).ok();
        let (crt, key) = (read(FILES[0])?, read(FILES[1])?);
        let chain = inspect::pem_certificates(&crt)?;
        let leaf = inspect::parse(chain.first()?)?;
        if inspect::is_self_signed(&leaf) {
            return None;
        }
        // The intermediates are Vault's; the leaf is signed by the first of them, or by one of
        // Vault's issuers when tls.crt holds the leaf alone.
        if !chain[1..].iter().all(|der| vault_chain.contains(der)) {
            return None;
        }
        let issuers: Vec<_> = vault_chain.iter().map(|der| inspect::parse(der)).collect::<Option<_>>()?;
        let signed = match chain.get(1) {
            Some(der) => inspect::parse(der).is_some_and(|issuer| inspect::issued_by(&leaf, &issuer)),
            None => issuers.iter().any(|issuer| inspect::issued_by(&leaf, issuer)),
        };
        let root = issuers.iter().zip(vault_chain).find(|(c, _)| inspect::is_self_signed(c)).map_or(vault_chain.last()?, |(_, der)| der);
        let names = inspect::names(&leaf)?;
        let mut want_dns = self.alt_names.clone();
        want_dns.push(self.common_name.clone());
        want_dns.sort();
        want_dns.dedup();
        let mut have_dns = names.dns.clone();
        have_dns.push(self.common_name.clone());
        have_dns.sort();
        have_dns.dedup();
        // A common name that is an address may be added to the IP names the same way.
        let cn_ip: Option<IpAddr> = self.common_name.parse().ok();
        let mut have_ips = names.ips.clone();
        let mut want_ips = self.ip_sans.clone();
        for ips in [&mut have_ips, &mut want_ips] {
            ips.extend(cn_ip);
            ips.sort();
            ips.dedup();
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let left = inspect::life_left(&leaf, now);
        let current = signed
            && inspect::key_matches(&leaf, &key)
            && names.common_name.as_deref() == Some(self.common_name.as_str())
            && have_dns == want_dns
            && have_ips == want_ips
            && left > self.renew_below;
        current.then(|| {
            let ca = inspect::certificate_pem(root);
            let files = FILES.iter().zip([crt, key, ca.into_bytes()]).map(|(name, bytes)| Planned { rel: (*name).into(), bytes }).collect();
            (files, left)
        })
    }
}

/// The files of an `issue` answer: `tls.crt` = certificate and intermediates, `ca.crt` = the
/// root of `ca_chain` (or `issuing_ca` when the chain has no root), `tls.key`.
pub(crate) fn files(path: &str, body: &Value) -> Result<Vec<Planned>, Error> {
    let fail = |what: &str| Error::new(Kind::Failed, anyhow::anyhow!("{path}: the answer has no {what}; is this a PKI issue path?"));
    let data = body.get("data").ok_or_else(|| fail("data"))?;
    let text = |key: &str| data.get(key).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| fail(key));
    let certificate = text("certificate")?;
    let key = text("private_key")?;
    let issuing = text("issuing_ca")?;
    let chain: Vec<String> = match data.get("ca_chain").and_then(Value::as_array) {
        Some(chain) if !chain.is_empty() => chain.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => vec![issuing.clone()],
    };
    let self_signed = |pem: &str| {
        inspect::pem_certificates(pem.as_bytes())
            .and_then(|ders| ders.first().and_then(|d| inspect::parse(d).map(|c| inspect::is_self_signed(&c))))
            .unwrap_or(false)
    };
    let (roots, intermediates): (Vec<&String>, Vec<&String>) = chain.iter().partition(|pem| self_signed(pem));
    let ca = roots.first().map_or(issuing.as_str(), |r| r.as_str());
    let mut crt = line(&certificate);
    for pem in intermediates {
        crt.push_str(&line(pem));
    }
    Ok(vec![
        Planned { rel: FILES[0].into(), bytes: crt.into_bytes() },
        Planned { rel: FILES[1].into(), bytes: line(&key).into_bytes() },
        Planned { rel: FILES[2].into(), bytes: line(ca).into_bytes() },
    ])
}

/// `pem` ending in one newline.
fn line(pem: &str) -> String {
    format!("{}\n", pem.trim_end())
}
