//! `podinit truststore`: one truststore from CA certificates in PEM files and directories —
//! PKCS#12 (Java 8u301+, 11.0.12+, 12+ and openssl), JKS (any Java) or a PEM bundle — rewritten only when the
//! set of certificates changed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use podinit_core::fs::FileOptions;
use podinit_core::{Context, Error, Kind};
use podinit_tls::inspect;
use x509_parser::prelude::{FromDer as _, X509Certificate};

use crate::read::{self, Found};

/// The CA bundle in podinit's image (and Debian's).
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Build a truststore (PKCS#12, JKS or PEM) from CA certificates, only when they changed.
///
/// Certificates come from PEM files and directories (/etc/ssl/certs, a mounted Secret or
/// ConfigMap: its ..data entries skipped; the service account's ca.crt) and, with --system,
/// the image's own bundle. Duplicates are kept once; a file that does not parse fails the run,
/// naming it. The output is written atomically, and not at all when it already holds the same
/// certificates.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Examples:
  podinit truststore --system --pem /var/run/secrets/kubernetes.io/serviceaccount/ca.crt --pem /private-ca/ --out /truststore/cacerts.p12
  podinit truststore --pem /private-ca/ca.crt --format jks --password-file /secrets/store-password --out /truststore/cacerts.jks")]
pub struct Args {
    /// A PEM file or a directory of PEM files with CA certificates; repeatable.
    #[arg(long = "pem", value_name = "FILE_OR_DIR")]
    pub pem: Vec<PathBuf>,

    /// Also the image's CA bundle (/etc/ssl/certs/ca-certificates.crt).
    #[arg(long, env = "PODINIT_TRUSTSTORE_SYSTEM")]
    pub system: bool,

    /// The truststore to write.
    #[arg(long, env = "PODINIT_TRUSTSTORE_OUT", value_name = "FILE")]
    pub out: PathBuf,

    /// Format [default: from --out's extension: .jks → jks, .pem/.crt → pem, else pkcs12].
    #[arg(long, env = "PODINIT_TRUSTSTORE_FORMAT", value_enum)]
    pub format: Option<Format>,

    /// A file holding the store's password (pkcs12, jks) [default: changeit, Java's].
    #[arg(long, env = "PODINIT_TRUSTSTORE_PASSWORD_FILE", value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    /// Mode of the truststore.
    #[arg(long, env = "PODINIT_TRUSTSTORE_MODE", value_name = "OCTAL", default_value = "0644", value_parser = podinit_core::args::parse_mode)]
    pub mode: u32,

    /// Owner (numeric uid) of the truststore.
    #[arg(long, env = "PODINIT_TRUSTSTORE_UID", value_name = "UID")]
    pub uid: Option<u32>,

    /// Group (numeric gid) of the truststore.
    #[arg(long, env = "PODINIT_TRUSTSTORE_GID", value_name = "GID")]
    pub gid: Option<u32>,
}

/// Truststore formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// PKCS#12 with trusted-certificate entries (Java 8u301+, 11.0.12+, 12+; openssl).
    Pkcs12,
    /// Java KeyStore (Java 8 and older).
    Jks,
    /// PEM certificates, one after the other.
    Pem,
}

/// Runs `podinit truststore` to completion.
pub fn run(ctx: &Context, args: Args) -> Result<(), Error> {
    if args.pem.is_empty() && !args.system {
        return Err(Error::usage("no certificates: give --pem FILE_OR_DIR (repeatable) or --system"));
    }
    let format =
        args.format.unwrap_or_else(|| match args.out.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("jks") => Format::Jks,
            Some("pem" | "crt") => Format::Pem,
            _ => Format::Pkcs12,
        });
    let password = match &args.password_file {
        Some(path) => podinit_core::fs::read_secret_file("--password-file", path)?,
        None => "changeit".to_owned(),
    };
    let mut sources = Vec::new();
    if args.system {
        sources.push(PathBuf::from(SYSTEM_BUNDLE));
    }
    sources.extend(args.pem.iter().cloned());
    let mut certs: Vec<Found> = Vec::new();
    let mut seen = BTreeSet::new();
    for source in &sources {
        ctx.check_shutdown()?;
        for file in files(source)? {
            let text = read::file("--pem", &file)?;
            for found in read::certificates(&file, &text)? {
                if seen.insert(found.der.clone()) {
                    certs.push(found);
                }
            }
        }
    }
    if certs.is_empty() {
        return Err(Error::usage("no certificate found in the --pem files"));
    }
    let entries = aliases(&certs)?;
    let options = FileOptions { mode: args.mode, uid: args.uid, gid: args.gid };
    let held: BTreeSet<(&str, &[u8])> = entries.iter().map(|(alias, _, der)| (alias.as_str(), der.as_slice())).collect();
    let bytes = match format {
        Format::Pem => certs.iter().map(|c| inspect::certificate_pem(&c.der)).collect::<String>().into_bytes(),
        Format::Jks => {
            let entries: Vec<_> =
                entries.iter().map(|(alias, date_ms, der)| crate::jks::Entry::Trusted { alias, date_ms: *date_ms, der }).collect();
            crate::jks::write(&entries, &password).map_err(|e| Error::usage(format!("--out {}: {e}", args.out.display())))?
        }
        Format::Pkcs12 => {
            // PKCS#12 is salted: the same certificates give other bytes. Current when the file
            // opens with the password and holds exactly these certificates, with our mode.
            if pkcs12_holds(&args.out, &password, &held, options) {
                tracing::info!("{}: already holds these {} certificates: kept", args.out.display(), certs.len());
                return Ok(());
            }
            crate::p12::trusted(entries.iter().map(|(alias, _, der)| (alias.as_str(), der.as_slice())), &password)
                .map_err(|e| Error::new(Kind::Failed, anyhow::anyhow!(e)))?
        }
    };
    // A missing directory is made, as `certs --out` makes its own (its mode: 0755, less the umask).
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
        std::fs::DirBuilder::new().recursive(true).create(parent).map_err(|e| {
            podinit_core::fs::explain_write(podinit_core::fs::io_error(e, format!("creating {}", parent.display())), parent)
        })?;
    }
    let written = podinit_core::fs::write_atomic(&args.out, &bytes, options).map_err(|e| podinit_core::fs::explain_write(e, &args.out))?;
    let verb = if written { "written" } else { "kept (unchanged)" };
    tracing::info!("{}: {verb}: {} certificates ({format:?}) from {} sources", args.out.display(), certs.len(), sources.len());
    Ok(())
}

/// The files of a `--pem` argument: the file, or the regular files of the directory (links
/// followed; the kubelet's `..` entries skipped; not recursive), sorted.
fn files(source: &Path) -> Result<Vec<PathBuf>, Error> {
    let meta = std::fs::metadata(source).map_err(|e| {
        Error::usage(format!("--pem {}: {}", source.display(), podinit_core::redact::io_reason(&e)))
            .with_hint("mount the Secret or ConfigMap at that path")
    })?;
    if !meta.is_dir() {
        return Ok(vec![source.to_owned()]);
    }
    let mut files = Vec::new();
    let entries = std::fs::read_dir(source)
        .map_err(|e| Error::usage(format!("--pem {}: {}", source.display(), podinit_core::redact::io_reason(&e))))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::usage(format!("--pem {}: {}", source.display(), podinit_core::redact::io_reason(&e))))?;
        if entry.file_name().as_encoded_bytes().starts_with(b"..") {
            continue;
        }
        let path = entry.path();
        if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// `(alias, date ms, DER)` per certificate: the alias from the common name (or organisation),
/// lowercased, made of `[a-z0-9._-]`, unique; the date its notBefore (so a JKS file is the same
/// bytes for the same certificates).
fn aliases(certs: &[Found]) -> Result<Vec<(String, u64, Vec<u8>)>, Error> {
    let mut used = BTreeSet::new();
    let mut out = Vec::with_capacity(certs.len());
    for cert in certs {
        let (_, parsed) = X509Certificate::from_der(&cert.der).map_err(|e| Error::usage(format!("{}: {e}", cert.file.display())))?;
        let name = parsed
            .subject()
            .iter_common_name()
            .chain(parsed.subject().iter_organization())
            .find_map(|a| a.as_str().ok())
            .unwrap_or("certificate");
        let mut base: String =
            name.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect();
        base.truncate(64);
        let mut alias = base.clone();
        let mut n = 2;
        while !used.insert(alias.clone()) {
            alias = format!("{base}_{n}");
            n += 1;
        }
        let date = u64::try_from(parsed.validity().not_before.timestamp()).unwrap_or(0) * 1000;
        out.push((alias, date, cert.der.clone()));
    }
    Ok(out)
}

fn pkcs12_holds(out: &Path, password: &str, entries: &BTreeSet<(&str, &[u8])>, options: FileOptions) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(out) else { return false };
    if !podinit_core::fs::as_asked(&meta, options) {
        return false;
    }
    let Ok(bytes) = podinit_core::fs::read_capped(out, podinit_core::fs::STATE_FILE_MAX) else { return false };
    crate::p12::holds_trusted(&bytes, password, entries)
}
