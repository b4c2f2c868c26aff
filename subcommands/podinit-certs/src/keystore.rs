//! `certs --keystore`: the Java stores cert-manager's `keystores` adds to a certificate's
//! Secret, made from the set's own files — a keystore with the key and its chain (alias
//! `certificate`) and a truststore with the CA (alias `ca`), as PKCS#12 or JKS — and whether a
//! set already holds exactly them.

use std::collections::BTreeSet;
use std::path::Path;

use clap::ValueEnum as _;
use podinit_core::fs::root::Dir;
use podinit_core::{Error, Kind};
use x509_parser::prelude::{FromDer as _, X509Certificate};

use crate::read;

/// Java store formats of `--keystore`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Keystore {
    /// PKCS#12 (Java 8u301+, 11.0.12+, 12+ and OpenSSL: its integrity MAC is HMAC-SHA-256):
    /// keystore.p12 and truststore.p12.
    Pkcs12,
    /// Java KeyStore (every Java): keystore.jks and truststore.jks.
    Jks,
}

impl Keystore {
    /// The keystore's and the truststore's names in the set.
    pub(crate) fn names(self) -> (&'static str, &'static str) {
        match self {
            Self::Pkcs12 => ("keystore.p12", "truststore.p12"),
            Self::Jks => ("keystore.jks", "truststore.jks"),
        }
    }
}

/// The alias of the key entry and of the CA's entry, cert-manager's.
const KEY_ALIAS: &str = "certificate";
const CA_ALIAS: &str = "ca";

/// What the stores are made of: the key as PKCS#8 DER, the chain and the CA as DER, and the
/// certificate's start as the entries' date (so JKS bytes depend on the set alone).
pub(crate) struct Parts {
    pkcs8: Vec<u8>,
    chain: Vec<Vec<u8>>,
    ca: Vec<u8>,
    date_ms: u64,
}

impl Parts {
    /// From the set's tls.crt (the chain), tls.key (PEM PKCS#8) and ca.crt.
    pub(crate) fn of(chain: &[u8], key: &[u8], ca: &[u8]) -> Result<Self, String> {
        let key = pem::parse(key).map_err(|e| format!("tls.key: {e}"))?;
        if key.tag() != "PRIVATE KEY" {
            return Err(format!("tls.key: a {} block, not PKCS#8", key.tag()));
        }
        let chain: Vec<Vec<u8>> =
            read::certificates(Path::new("tls.crt"), chain).map_err(|e| e.to_string())?.into_iter().map(|c| c.der).collect();
        let ca = read::certificates(Path::new("ca.crt"), ca).map_err(|e| e.to_string())?.into_iter().next().map(|c| c.der);
        let (Some(leaf), Some(ca)) = (chain.first(), ca) else { return Err("tls.crt or ca.crt holds no certificate".into()) };
        let start = X509Certificate::from_der(leaf).map_err(|e| format!("tls.crt: {e}"))?.1.validity().not_before.timestamp();
        Ok(Self { pkcs8: key.into_contents(), date_ms: u64::try_from(start).unwrap_or(0) * 1000, chain, ca })
    }

    fn chain(&self) -> Vec<&[u8]> {
        self.chain.iter().map(Vec::as_slice).collect()
    }

    fn jks(&self, password: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
        let key = crate::jks::Entry::Key { alias: KEY_ALIAS, date_ms: self.date_ms, pkcs8: &self.pkcs8, chain: self.chain() };
        let ca = crate::jks::Entry::Trusted { alias: CA_ALIAS, date_ms: self.date_ms, der: &self.ca };
        Ok((crate::jks::write(&[key], password)?, crate::jks::write(&[ca], password)?))
    }
}

/// A file of the set: name, bytes, mode.
pub(crate) type SetFile = (&'static str, Vec<u8>, u32);

/// The stores of `format`, the keystore with the key's `key_mode`.
pub(crate) fn files(format: Keystore, password: &str, parts: &Parts, key_mode: u32) -> Result<Vec<SetFile>, Error> {
    let (keystore, truststore) = format.names();
    let failed = |name: &'static str| move |e: String| Error::new(Kind::Failed, anyhow::anyhow!("making {name}: {e}"));
    let (key, trust) = match format {
        Keystore::Pkcs12 => (
            crate::p12::key(KEY_ALIAS, &parts.pkcs8, &parts.chain(), password).map_err(failed(keystore))?,
            crate::p12::trusted([(CA_ALIAS, parts.ca.as_slice())], password).map_err(failed(truststore))?,
        ),
        Keystore::Jks => parts.jks(password).map_err(failed(keystore))?,
    };
    Ok(vec![(keystore, key, key_mode), (truststore, trust, 0o644)])
}

/// Whether the set `dir` holds exactly the stores asked for (`asked`: format, password and
/// what they hold; `None`: no stores) and none of another format, each as `as_asked` wants it
/// (mode, owner), opening with the password and holding this key, chain and CA under their
/// aliases. PKCS#12 is salted, so its content is compared; JKS is deterministic, so its bytes.
pub(crate) fn held(dir: &Dir, asked: Option<(Keystore, &str, &Parts)>, key_mode: u32, as_asked: impl Fn(&str, u32) -> bool) -> bool {
    let jks = match asked {
        Some((Keystore::Jks, password, parts)) => match parts.jks(password) {
            Ok(bytes) => Some(bytes),
            Err(_) => return false,
        },
        _ => None,
    };
    Keystore::value_variants().iter().all(|format| {
        let (keystore, truststore) = format.names();
        [(keystore, key_mode), (truststore, 0o644)].into_iter().all(|(name, mode)| match asked {
            Some((wanted, password, parts)) if wanted == *format => {
                if !as_asked(name, mode) {
                    return false;
                }
                let Ok(bytes) = dir.read(std::ffi::OsStr::new(name)) else { return false };
                match (&jks, name == keystore) {
                    (Some((key, _)), true) => bytes == *key,
                    (Some((_, trust)), false) => bytes == *trust,
                    (None, true) => crate::p12::holds_key(&bytes, password, KEY_ALIAS, &parts.pkcs8, &parts.chain()),
                    (None, false) => crate::p12::holds_trusted(&bytes, password, &BTreeSet::from([(CA_ALIAS, parts.ca.as_slice())])),
                }
            }
            _ => matches!(dir.stat(std::ffi::OsStr::new(name)), Ok(None)),
        })
    })
}
