//! Looking at certificates already on disk, to decide whether one can be kept: the names it
//! carries, how much of its life is left, whether a key is its own and whether a CA signed
//! it. Shared by `certs` and `vault-fetch --pki` (feature `inspect`), which both keep a
//! serving certificate across pod restarts instead of minting one each time.

use std::net::IpAddr;

use ring::signature::KeyPair as _;
pub use x509_parser::prelude::X509Certificate;
use x509_parser::prelude::{FromDer as _, GeneralName};

/// The DER certificates of a PEM text, in order; `None` when it is not PEM or a block is not
/// an X.509 certificate. Other blocks (keys) are skipped.
pub fn pem_certificates(text: &[u8]) -> Option<Vec<Vec<u8>>> {
    let blocks = pem::parse_many(text).ok()?;
    let mut ders = Vec::new();
    for block in blocks.into_iter().filter(|b| b.tag() == "CERTIFICATE") {
        X509Certificate::from_der(block.contents()).ok()?;
        ders.push(block.into_contents());
    }
    Some(ders)
}

/// PEM text of a DER certificate (LF line ends).
pub fn certificate_pem(der: &[u8]) -> String {
    pem::encode_config(&pem::Pem::new("CERTIFICATE", der.to_vec()), pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF))
}

/// Parses one DER certificate.
pub fn parse(der: &[u8]) -> Option<X509Certificate<'_>> {
    X509Certificate::from_der(der).ok().map(|(_, c)| c)
}

/// The names a certificate is for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Names {
    /// The subject's first common name.
    pub common_name: Option<String>,
    /// DNS subject alternative names, sorted.
    pub dns: Vec<String>,
    /// IP subject alternative names, sorted.
    pub ips: Vec<IpAddr>,
}

/// The names of `cert`; `None` when it carries an alternative name of another kind (email,
/// URI, …) that podinit never asks for, so such a certificate is never taken as current.
pub fn names(cert: &X509Certificate<'_>) -> Option<Names> {
    let mut names = Names {
        common_name: cert.subject().iter_common_name().next().and_then(|c| c.as_str().ok()).map(str::to_owned),
        ..Names::default()
    };
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => names.dns.push((*d).to_owned()),
                GeneralName::IPAddress(bytes) => names.ips.push(match bytes.len() {
                    4 => IpAddr::from(<[u8; 4]>::try_from(*bytes).ok()?),
                    16 => IpAddr::from(<[u8; 16]>::try_from(*bytes).ok()?),
                    _ => return None,
                }),
                _ => return None,
            }
        }
    } else if cert.subject_alternative_name().is_err() {
        return None;
    }
    names.dns.sort();
    names.dns.dedup();
    names.ips.sort();
    names.ips.dedup();
    Some(names)
}

/// The fraction of a certificate's lifetime still ahead at `now` (Unix seconds): 0 when it
/// expired or is not valid yet.
pub fn life_left(cert: &X509Certificate<'_>, now: i64) -> f64 {
    let (from, to) = (cert.validity().not_before.timestamp(), cert.validity().not_after.timestamp());
    if to <= from || now >= to || now < from {
        return 0.0;
    }
    (to - now) as f64 / (to - from) as f64
}

/// Whether `issuer` signed `cert` (names chained and the signature verifies).
pub fn issued_by(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    cert.issuer().as_raw() == issuer.subject().as_raw() && cert.verify_signature(Some(issuer.public_key())).is_ok()
}

/// Whether a certificate is self-signed (a root).
pub fn is_self_signed(cert: &X509Certificate<'_>) -> bool {
    issued_by(cert, cert)
}

/// Whether the PEM PKCS#8 private key `key_pem` (`BEGIN PRIVATE KEY`: EC P-256/P-384, RSA,
/// Ed25519) is the key of `cert`. Anything else (another key, an encrypted or PKCS#1 key, not
/// PEM) is `false`.
pub fn key_matches(cert: &X509Certificate<'_>, key_pem: &[u8]) -> bool {
    let Some(block) = std::str::from_utf8(key_pem).ok().and_then(|t| pem::parse(t).ok()) else { return false };
    if block.tag() != "PRIVATE KEY" {
        return false;
    }
    let der = block.contents();
    let public = cert.public_key().subject_public_key.data.as_ref();
    let rng = ring::rand::SystemRandom::new();
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
    if let Ok(pair) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der, &rng) {
        return pair.public_key().as_ref() == public;
    }
    if let Ok(pair) = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, der, &rng) {
        return pair.public_key().as_ref() == public;
    }
    if let Ok(pair) = RsaKeyPair::from_pkcs8(der) {
        return pair.public_key().as_ref() == public;
    }
    if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
        return pair.public_key().as_ref() == public;
    }
    false
}
