//! Reading certificates and keys from PEM files, with errors that name the file.

use std::path::{Path, PathBuf};

use podinit_core::Error;

/// One certificate as found: its DER bytes and where it came from.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub(crate) der: Vec<u8>,
    pub(crate) file: PathBuf,
}

/// The certificates of a PEM file. A file that is not PEM, or a CERTIFICATE block that is not
/// X.509, is a usage error naming the file; other blocks (keys) are skipped.
pub(crate) fn certificates(file: &Path, text: &[u8]) -> Result<Vec<Found>, Error> {
    let blocks = pem::parse_many(text).map_err(|e| Error::usage(format!("{}: not PEM: {e}", file.display())))?;
    if blocks.is_empty() {
        return Err(Error::usage(format!("{}: no PEM block in the file", file.display()))
            .with_hint("give PEM files of certificates (BEGIN CERTIFICATE)"));
    }
    let mut found = Vec::new();
    for block in blocks {
        if block.tag().contains("PRIVATE KEY") {
            // A Secret's tls.key next to its ca.crt, or a combined PEM: never copied along.
            tracing::warn!("{}: holds a private key ({}): skipped, only certificates are read", file.display(), block.tag());
            continue;
        }
        if block.tag() != "CERTIFICATE" {
            tracing::debug!("{}: skipping a {} block", file.display(), block.tag());
            continue;
        }
        x509_parser::parse_x509_certificate(block.contents())
            .map_err(|e| Error::usage(format!("{}: a CERTIFICATE block is not an X.509 certificate: {e}", file.display())))?;
        found.push(Found { der: block.contents().to_vec(), file: file.to_owned() });
    }
    Ok(found)
}

/// Reads a file given on the command line; a missing file is a usage error with a hint.
pub(crate) fn file(flag: &str, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| {
        Error::usage(format!("{flag} {}: {}", path.display(), podinit_core::redact::io_reason(&e)))
            .with_hint("mount the Secret or ConfigMap at that path")
    })
}
