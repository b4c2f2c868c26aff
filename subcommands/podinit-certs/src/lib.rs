//! podinit's TLS material applets: `certs` (a CA and a serving certificate, or one signed by a
//! mounted CA) and `truststore` (PKCS#12, JKS or PEM bundles from CA certificates) — the jobs
//! charts do with openssl, cfssl or keytool in a shell image, made only when needed.
//!
//! One crate for the two (they share certificate reading); each has its own Cargo feature.
//! X.509 generation is rcgen's (ring), parsing x509-parser's, PKCS#12 p12-keystore's (`p12.rs`);
//! JKS is written here (`jks.rs`, a simple format). See ARCHITECTURE.md for the choices.

pub mod certs;
pub mod truststore;

mod jks;
mod keystore;
mod p12;
mod read;
