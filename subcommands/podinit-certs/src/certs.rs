//! `podinit certs`: a serving certificate for the pod, signed by a CA made here or mounted,
//! written as a kubernetes.io/tls Secret's files (`tls.crt`, `tls.key`, `ca.crt`) in one
//! all-or-nothing set, and kept on a rerun while it matches the request and has life left.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use podinit_core::fs::root::Dir;
use podinit_core::fs::set::DataSet;
use podinit_core::{Context, Error, Kind};
use podinit_tls::inspect;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PublicKeyData as _, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer as _, X509Certificate};

use crate::keystore;
pub use crate::keystore::Keystore;
use crate::read;

/// Make a serving certificate (and its CA) as a kubernetes.io/tls Secret's files, only when
/// needed.
///
/// Without --ca-cert, a CA is made here (its key kept in DIR only with --keep-ca-key); with
/// --ca-cert and --ca-key (a Secret from cert-manager or an operator), that CA signs. DIR gets
/// tls.crt (the certificate, then the CA), tls.key (mode 0600) and ca.crt as one set, with
/// --keystore also Java's keystore and truststore (PKCS#12 or JKS). A rerun
/// keeps what is there while it matches the request (names, key type, CA) and more than
/// --renew-below of its lifetime is left.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Examples:
  podinit certs --out /tls --common-name webhook.ns.svc --dns webhook.ns.svc --dns webhook.ns.svc.cluster.local
  podinit certs --out /tls --common-name api --dns api.ns.svc --ca-cert /ca/tls.crt --ca-key /ca/tls.key")]
pub struct Args {
    /// Directory of the set (tls.crt, tls.key, ca.crt), e.g. an emptyDir.
    #[arg(long, env = "PODINIT_CERTS_OUT", value_name = "DIR")]
    pub out: PathBuf,

    /// The certificate's common name.
    #[arg(long, env = "PODINIT_CERTS_COMMON_NAME", value_name = "NAME")]
    pub common_name: String,

    /// A DNS name the certificate is for (subjectAltName); repeatable. Without --dns and --ip
    /// the common name is the one DNS name (clients ignore a common name alone).
    #[arg(long = "dns", value_name = "NAME")]
    pub dns: Vec<String>,

    /// An IP address the certificate is for; repeatable.
    #[arg(long = "ip", value_name = "ADDR")]
    pub ip: Vec<IpAddr>,

    /// Sign with this CA certificate (PEM) instead of making a CA.
    #[arg(long, env = "PODINIT_CERTS_CA_CERT", value_name = "FILE", requires = "ca_key")]
    pub ca_cert: Option<PathBuf>,

    /// The CA's private key (PEM: PKCS#8, or PKCS#1 for RSA).
    #[arg(long, env = "PODINIT_CERTS_CA_KEY", value_name = "FILE", requires = "ca_cert")]
    pub ca_key: Option<PathBuf>,

    /// What the certificate is for (cert-manager's usages): server (TLS servers), client
    /// (presented to a server: MongoDB members, mutual TLS), or both: `server,client`.
    #[arg(long, env = "PODINIT_CERTS_USAGE", value_enum, value_delimiter = ',', default_value = "server")]
    pub usage: Vec<Usage>,

    /// Also Java stores, as cert-manager's `keystores` makes them: keystore.p12 (or .jks) with
    /// the key and its chain (alias `certificate`, mode --mode) and truststore.p12 (or .jks)
    /// with the CA (alias `ca`), for Kafka, Elasticsearch, Keycloak, Solr.
    #[arg(long, env = "PODINIT_CERTS_KEYSTORE", value_enum, value_name = "FORMAT", requires = "keystore_password_file")]
    pub keystore: Option<Keystore>,

    /// A file holding the stores' password (the key entry's too, as Java servers expect).
    #[arg(long, env = "PODINIT_CERTS_KEYSTORE_PASSWORD_FILE", value_name = "FILE", requires = "keystore")]
    pub keystore_password_file: Option<PathBuf>,

    /// Lifetime of the certificate, in days.
    #[arg(long, env = "PODINIT_CERTS_DAYS", value_name = "N", default_value = "365", value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,

    /// Lifetime of a CA made here, in days.
    #[arg(long, env = "PODINIT_CERTS_CA_DAYS", value_name = "N", default_value = "3650", value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub ca_days: u32,

    /// Key type of the certificate (and of a CA made here).
    #[arg(long, env = "PODINIT_CERTS_KEY_TYPE", value_enum, default_value = "ec-p256")]
    pub key_type: KeyType,

    /// Make a new certificate when less than this fraction of its lifetime is left.
    #[arg(long, env = "PODINIT_CERTS_RENEW_BELOW", value_name = "FRACTION", default_value = "0.33", value_parser = podinit_core::args::parse_fraction)]
    pub renew_below: f64,

    /// Keep the key of a CA made here in DIR (ca.key, mode 0600), so that a renewed certificate
    /// is signed by the same CA and clients that trust ca.crt keep trusting it.
    #[arg(long, env = "PODINIT_CERTS_KEEP_CA_KEY")]
    pub keep_ca_key: bool,

    /// Mode of the private keys (tls.key, ca.key) and of the keystore; certificates and the
    /// truststore get 0644.
    #[arg(long, env = "PODINIT_CERTS_MODE", value_name = "OCTAL", default_value = "0600", value_parser = podinit_core::args::parse_mode)]
    pub mode: u32,

    /// Owner (numeric uid) of the files.
    #[arg(long, env = "PODINIT_CERTS_UID", value_name = "UID")]
    pub uid: Option<u32>,

    /// Group (numeric gid) of the files.
    #[arg(long, env = "PODINIT_CERTS_GID", value_name = "GID")]
    pub gid: Option<u32>,
}

/// Extended key usages of the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Usage {
    /// TLS server authentication (id-kp-serverAuth).
    Server,
    /// TLS client authentication (id-kp-clientAuth).
    Client,
}

impl Usage {
    fn purpose(self) -> ExtendedKeyUsagePurpose {
        match self {
            Self::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Self::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }
    }
}

/// The usages asked for, each once, in a fixed order (so a rerun compares like with like).
fn usages(args: &Args) -> Vec<Usage> {
    let mut usages = args.usage.clone();
    usages.sort();
    usages.dedup();
    usages
}

/// Key types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyType {
    /// ECDSA on P-256 with SHA-256 (small, fast, accepted everywhere).
    #[value(name = "ec-p256")]
    EcP256,
    /// ECDSA on P-384 with SHA-384.
    #[value(name = "ec-p384")]
    EcP384,
    /// RSA 2048 bits (for clients that know nothing else).
    #[value(name = "rsa-2048")]
    Rsa2048,
    /// RSA 4096 bits.
    #[value(name = "rsa-4096")]
    Rsa4096,
    /// Ed25519 (not accepted by browsers or Java before 15).
    Ed25519,
}

impl KeyType {
    fn algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            Self::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            Self::Rsa2048 | Self::Rsa4096 => &rcgen::PKCS_RSA_SHA256,
            Self::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }

    fn generate(self) -> Result<KeyPair, Error> {
        let failed = |e: String| Error::new(Kind::Failed, anyhow::anyhow!("making a {self:?} key: {e}"));
        match self {
            Self::Rsa2048 | Self::Rsa4096 => {
                // ring signs with RSA keys but cannot make them; the rsa crate makes them.
                use rsa::pkcs8::EncodePrivateKey as _;
                let bits = if self == Self::Rsa2048 { 2048 } else { 4096 };
                let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, bits).map_err(|e| failed(e.to_string()))?;
                let der = key.to_pkcs8_der().map_err(|e| failed(e.to_string()))?;
                KeyPair::from_pkcs8_der_and_sign_algo(&der.as_bytes().into(), self.algorithm()).map_err(|e| failed(e.to_string()))
            }
            _ => KeyPair::generate_for(self.algorithm()).map_err(|e| failed(e.to_string())),
        }
    }

    /// Whether a certificate's public key algorithm (its OID, and the curve for EC) is this.
    fn matches(self, cert: &X509Certificate<'_>) -> bool {
        let spki = &cert.tbs_certificate.subject_pki;
        let alg = spki.algorithm.algorithm.to_id_string();
        let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string());
        let bits = match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => rsa.key_size(),
            _ => 0,
        };
        match self {
            Self::EcP256 => alg == "1.2.840.10045.2.1" && curve.as_deref() == Some("1.2.840.10045.3.1.7"),
            Self::EcP384 => alg == "1.2.840.10045.2.1" && curve.as_deref() == Some("1.3.132.0.34"),
            Self::Rsa2048 => alg == "1.2.840.113549.1.1.1" && bits == 2048,
            Self::Rsa4096 => alg == "1.2.840.113549.1.1.1" && bits == 4096,
            Self::Ed25519 => alg == "1.3.101.112",
        }
    }
}

/// A CA: its certificate (DER, PEM) and key.
struct Ca {
    der: Vec<u8>,
    key: KeyPair,
    /// Made in this run (its key written only with --keep-ca-key).
    made: bool,
}

/// The files of a set: what a kubernetes.io/tls Secret holds, the CA's key when kept here, and
/// the Java stores of `--keystore`.
struct Material {
    /// tls.crt: the certificate, then the CA.
    chain: Vec<u8>,
    /// tls.key, PEM PKCS#8.
    key: Vec<u8>,
    /// ca.crt.
    ca: Vec<u8>,
    /// ca.key, with --keep-ca-key and a CA made here.
    ca_key: Option<Vec<u8>>,
}

/// Runs `podinit certs` to completion.
pub async fn run(ctx: &Context, args: Args) -> Result<(), Error> {
    let (dns, ips) = names(&args)?;
    let password = match &args.keystore_password_file {
        Some(path) => {
            let password = podinit_core::fs::read_secret_file("--keystore-password-file", path)?;
            if password.is_empty() {
                return Err(Error::usage(format!("--keystore-password-file {}: the file is empty", path.display()))
                    .with_hint("put the keystore password in the Secret (Java refuses keys without one)"));
            }
            Some(password)
        }
        None => None,
    };
    let now = OffsetDateTime::now_utc();
    let set = DataSet::open(ctx, &args.out, 0o755).await?;
    let explain = |e: anyhow::Error| podinit_core::fs::explain_write(e, &args.out);
    let current = set.current().map_err(explain)?;
    let existing = |name: &str| current.as_ref().and_then(|dir| dir.read(std::ffi::OsStr::new(name)).ok());

    let mounted = match (&args.ca_cert, &args.ca_key) {
        (Some(cert), Some(key)) => Some(load_ca(cert, key)?),
        _ => None,
    };
    // Keep the set's certificate when it is what this run would make, against the CA this run
    // signs with: the mounted one, else the set's own (whose key is needed only to renew, so a
    // set made without --keep-ca-key is kept too until it must be renewed).
    let set_ca = existing("ca.crt").and_then(|pem| read::certificates(Path::new("ca.crt"), &pem).ok()).and_then(|c| c.into_iter().next());
    let keep_against = match &mounted {
        Some(ca) => Some(ca.der.clone()),
        None if args.keep_ca_key && existing("ca.key").is_none() => None,
        None => set_ca.map(|c| c.der),
    };
    let kept = keep_against.and_then(|ca_der| {
        let ca = existing("ca.crt").filter(|c| *c == inspect::certificate_pem(&ca_der).as_bytes())?;
        let (chain, key) = (existing("tls.crt")?, existing("tls.key")?);
        leaf_is_current(&args, &chain, &key, &ca_der, &dns, &ips, now).then(|| Material {
            chain,
            key,
            ca,
            ca_key: if args.ca_cert.is_none() && args.keep_ca_key { existing("ca.key") } else { None },
        })
    });
    // A key that cannot go into the asked keystore (not PKCS#8) is renewed, not kept.
    let kept = kept.and_then(|m| keystore_parts(&args, &m).ok().map(|parts| (m, parts)));
    let request = Request { args: &args, now, dns: &dns, ips: &ips };
    let (material, parts, made) = match kept {
        Some((material, parts)) => {
            let asked = args.keystore.zip(password.as_deref()).zip(parts.as_ref()).map(|((f, p), parts)| (f, p, parts));
            if current.as_ref().is_some_and(|dir| {
                files_as_asked(dir, &args) && keystore::held(dir, asked, args.mode, |name, mode| file_as_asked(dir, &args, name, mode))
            }) {
                set.ensure_visible().map_err(explain)?;
                tracing::info!("{}: the certificate for {} is current: kept", args.out.display(), args.common_name);
                return Ok(());
            }
            (material, parts, None)
        }
        None => {
            let (material, signer) = make(&request, mounted, &existing)?;
            let parts = keystore_parts(&args, &material)?;
            (material, parts, Some(signer))
        }
    };
    let stores = match (args.keystore, password.as_deref(), parts) {
        (Some(format), Some(password), Some(parts)) => keystore::files(format, password, &parts, args.mode)?,
        _ => Vec::new(),
    };

    let staged = set.stage(0o755, args.uid, args.gid).map_err(explain)?;
    let dir = staged.dir();
    let mut files: Vec<(&str, &[u8], u32)> =
        vec![("tls.crt", &material.chain, 0o644), ("ca.crt", &material.ca, 0o644), ("tls.key", &material.key, args.mode)];
    if let Some(ca_key) = &material.ca_key {
        files.push(("ca.key", ca_key, args.mode));
    }
    files.extend(stores.iter().map(|(name, bytes, mode)| (*name, bytes.as_slice(), *mode)));
    for (name, bytes, mode) in files {
        write(dir, name, bytes, mode, args.uid, args.gid).map_err(explain)?;
    }
    staged.commit().map_err(explain)?;
    let stores = args.keystore.map(|k| format!(", with {} and {}", k.names().0, k.names().1)).unwrap_or_default();
    match made {
        Some(signer) => tracing::info!(
            "{}: a certificate for {} ({}), valid {} days, signed by {signer}{stores}",
            args.out.display(),
            args.common_name,
            dns.iter().cloned().chain(ips.iter().map(IpAddr::to_string)).collect::<Vec<_>>().join(", "),
            args.days,
        ),
        None => tracing::info!(
            "{}: the certificate for {} is current; its files were written again for their mode, owner or stores{stores}",
            args.out.display(),
            args.common_name
        ),
    }
    Ok(())
}

/// What a new certificate is made for.
struct Request<'a> {
    args: &'a Args,
    now: OffsetDateTime,
    dns: &'a [String],
    ips: &'a [IpAddr],
}

/// What `--keystore` stores are made of, when it is given.
fn keystore_parts(args: &Args, material: &Material) -> Result<Option<keystore::Parts>, Error> {
    args.keystore
        .map(|format| {
            keystore::Parts::of(&material.chain, &material.key, &material.ca)
                .map_err(|e| Error::new(Kind::Failed, anyhow::anyhow!("making {}: {e}", format.names().0)))
        })
        .transpose()
}

/// Makes a new certificate and key, signed by the mounted CA, the set's CA (with its key,
/// while it has life left) or a new one; returns the set's files and who signed.
fn make(request: &Request<'_>, mounted: Option<Ca>, existing: &dyn Fn(&str) -> Option<Vec<u8>>) -> Result<(Material, &'static str), Error> {
    let Request { args, now, dns, ips } = *request;
    let ca = match mounted {
        Some(ca) => ca,
        None => match (existing("ca.crt"), existing("ca.key")) {
            (Some(cert), Some(key)) if args.keep_ca_key && reusable_ca(&cert, &key, now, args.renew_below) => {
                load_ca_bytes(&cert, &key, "the set's ca.crt")?
            }
            _ => make_ca(args, now)?,
        },
    };
    let ca_pem = inspect::certificate_pem(&ca.der);
    let ca_not_after = X509Certificate::from_der(&ca.der)
        .map(|(_, c)| c.validity().not_after.timestamp())
        .map_err(|e| Error::usage(format!("the CA certificate: {e}")))?;
    if ca_not_after <= now.unix_timestamp() {
        return Err(Error::usage("the CA certificate has expired").with_hint("renew the CA (the Secret given as --ca-cert)"));
    }

    let key = args.key_type.generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(&args.common_name);
    params.subject_alt_names = dns
        .iter()
        .map(|d| rcgen::string::Ia5String::try_from(d.as_str()).map(SanType::DnsName))
        .chain(ips.iter().map(|ip| Ok(SanType::IpAddress(*ip))))
        .collect::<Result<_, _>>()
        .map_err(|e| Error::usage(format!("--dns: {e}")))?;
    params.not_before = now - Duration::minutes(5);
    // Never beyond the CA's own end: a chain is only valid while every certificate is.
    params.not_after =
        std::cmp::min(now + Duration::days(i64::from(args.days)), OffsetDateTime::from_unix_timestamp(ca_not_after).unwrap_or(now));
    params.serial_number = Some(serial());
    // keyEncipherment only where the key can do it (RSA key exchange); EC and Ed25519 sign.
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if matches!(args.key_type, KeyType::Rsa2048 | KeyType::Rsa4096) {
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    params.extended_key_usages = usages(args).into_iter().map(Usage::purpose).collect();
    // CA:FALSE made explicit, which is also what makes rcgen write the Subject Key Identifier
    // (RFC 5280 4.2.1.2: SHOULD be in end-entity certificates; pkilint flags its absence); the
    // Authority Key Identifier names the CA's key.
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    let issuer =
        Issuer::from_ca_cert_der(&ca.der.as_slice().into(), &ca.key).map_err(|e| Error::usage(format!("the CA certificate: {e}")))?;
    let cert = params.signed_by(&key, &issuer).map_err(|e| Error::new(Kind::Failed, anyhow::anyhow!("signing the certificate: {e}")))?;
    let signer = if args.ca_cert.is_some() {
        "the mounted CA"
    } else if ca.made {
        "a new CA"
    } else {
        "the set's CA"
    };
    let material = Material {
        chain: format!("{}{ca_pem}", cert.pem()).into_bytes(),
        key: key_pem(&key).into_bytes(),
        ca: ca_pem.into_bytes(),
        ca_key: (args.ca_cert.is_none() && args.keep_ca_key).then(|| key_pem(&ca.key).into_bytes()),
    };
    Ok((material, signer))
}

/// The DNS names and IPs the certificate is for: the flags, or the common name alone.
fn names(args: &Args) -> Result<(Vec<String>, Vec<IpAddr>), Error> {
    if args.common_name.is_empty() {
        return Err(Error::usage("--common-name is empty"));
    }
    let mut dns = args.dns.clone();
    if dns.is_empty() && args.ip.is_empty() {
        dns.push(args.common_name.clone());
    }
    for name in &dns {
        let ok = !name.is_empty()
            && name.len() <= 253
            && name.split('.').enumerate().all(|(i, label)| {
                (!label.is_empty() && label.len() <= 63 && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
                    || (i == 0 && label == "*")
            });
        if !ok {
            return Err(Error::usage(format!("--dns {name:?} is not a DNS name"))
                .with_hint("give each name the certificate is for, e.g. --dns my-svc.my-ns.svc"));
        }
    }
    let mut dns_sorted = dns.clone();
    dns_sorted.sort();
    dns_sorted.dedup();
    let mut ips = args.ip.clone();
    ips.sort();
    ips.dedup();
    Ok((dns_sorted, ips))
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

fn make_ca(args: &Args, now: OffsetDateTime) -> Result<Ca, Error> {
    let key = args.key_type.generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(&format!("podinit CA for {}", args.common_name));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(i64::from(args.ca_days));
    params.serial_number = Some(serial());
    let cert = params.self_signed(&key).map_err(|e| Error::new(Kind::Failed, anyhow::anyhow!("making the CA: {e}")))?;
    Ok(Ca { der: cert.der().to_vec(), key, made: true })
}

fn load_ca(cert: &Path, key: &Path) -> Result<Ca, Error> {
    let cert_bytes = read::file("--ca-cert", cert)?;
    let key_bytes = read::file("--ca-key", key)?;
    load_ca_bytes(&cert_bytes, &key_bytes, &format!("--ca-cert {}", cert.display()))
}

fn load_ca_bytes(cert: &[u8], key: &[u8], what: &str) -> Result<Ca, Error> {
    let found = read::certificates(Path::new(what), cert)?;
    let Some(first) = found.first() else {
        return Err(Error::usage(format!("{what}: no certificate in it")));
    };
    let key = key_pair(key).map_err(|e| {
        Error::usage(format!("{what}: its key: {e}"))
            .with_hint("give the CA key as PEM (PKCS#8, or PKCS#1 for RSA); cert-manager: privateKey.encoding: PKCS8")
    })?;
    let (_, parsed) = X509Certificate::from_der(&first.der).map_err(|e| Error::usage(format!("{what}: {e}")))?;
    if parsed.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(Error::usage(format!("{what}: the key does not belong to the certificate")));
    }
    if !parsed.is_ca() {
        return Err(Error::usage(format!("{what}: not a CA certificate (no basicConstraints CA:TRUE)")));
    }
    Ok(Ca { der: first.der.clone(), key, made: false })
}

/// A key as PEM PKCS#8. ring writes Ed25519 keys as PKCS#8 v2 (RFC 5958, with the public key),
/// which OpenSSL 3.0 cannot read; those are written as v1 (RFC 8410: the 32-byte seed only).
fn key_pem(key: &KeyPair) -> String {
    let der = key.serialize_der();
    const V2_PREFIX: [u8; 16] = [0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    const V1_PREFIX: [u8; 16] = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    let der = match der.get(..48) {
        Some(head) if der.len() == 83 && head[..16] == V2_PREFIX => [&V1_PREFIX[..], &head[16..48]].concat(),
        _ => der,
    };
    pem::encode_config(&pem::Pem::new("PRIVATE KEY", der), pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF))
}

/// A key pair from PEM: PKCS#8 (any algorithm), or PKCS#1 RSA converted to PKCS#8.
fn key_pair(pem_bytes: &[u8]) -> Result<KeyPair, String> {
    let text = std::str::from_utf8(pem_bytes).map_err(|_| "not PEM text".to_owned())?;
    let block = pem::parse(text).map_err(|e| format!("not PEM: {e}"))?;
    match block.tag() {
        "PRIVATE KEY" => KeyPair::try_from(block.contents()).map_err(|e| e.to_string()),
        "RSA PRIVATE KEY" => {
            use rsa::pkcs1::DecodeRsaPrivateKey as _;
            use rsa::pkcs8::EncodePrivateKey as _;
            let key = rsa::RsaPrivateKey::from_pkcs1_der(block.contents()).map_err(|e| e.to_string())?;
            let der = key.to_pkcs8_der().map_err(|e| e.to_string())?;
            KeyPair::from_pkcs8_der_and_sign_algo(&der.as_bytes().into(), &rcgen::PKCS_RSA_SHA256).map_err(|e| e.to_string())
        }
        other => Err(format!("a {other} block (convert it to PKCS#8: openssl pkcs8 -topk8 -nocrypt)")),
    }
}

/// Whether a CA of the set (with its key) can sign again: the key is its own, and more than
/// the renewal fraction of its life is left.
/// The serverAuth/clientAuth usages a certificate carries, sorted as `usages` sorts them.
fn extended_key_usages(cert: &X509Certificate<'_>) -> Vec<Usage> {
    let Ok(Some(eku)) = cert.extended_key_usage() else { return Vec::new() };
    let mut found = Vec::new();
    if eku.value.server_auth {
        found.push(Usage::Server);
    }
    if eku.value.client_auth {
        found.push(Usage::Client);
    }
    found
}

fn reusable_ca(cert: &[u8], key: &[u8], now: OffsetDateTime, renew_below: f64) -> bool {
    let Ok(ca) = load_ca_bytes(cert, key, "the set's ca.crt") else { return false };
    X509Certificate::from_der(&ca.der).is_ok_and(|(_, c)| life_left(&c, now) > renew_below)
}

fn life_left(cert: &X509Certificate<'_>, now: OffsetDateTime) -> f64 {
    inspect::life_left(cert, now.unix_timestamp())
}

/// Whether the set's tls.crt and tls.key are what this run would make: the key is the
/// certificate's, of the asked type; the names are exactly the asked ones; it was issued by
/// the CA; and more than the renewal fraction of its life is left.
fn leaf_is_current(args: &Args, crt: &[u8], key: &[u8], ca_der: &[u8], dns: &[String], ips: &[IpAddr], now: OffsetDateTime) -> bool {
    let Ok(found) = read::certificates(Path::new("tls.crt"), crt) else { return false };
    let (Some(leaf), Some(chain_ca)) = (found.first(), found.get(1)) else { return false };
    if chain_ca.der != ca_der || found.len() != 2 {
        return false;
    }
    let (Ok((_, cert)), Ok((_, ca))) = (X509Certificate::from_der(&leaf.der), X509Certificate::from_der(ca_der)) else { return false };
    let Ok(key) = key_pair(key) else { return false };
    let Some(names) = inspect::names(&cert) else { return false };
    cert.public_key().raw == key.subject_public_key_info().as_slice()
        && args.key_type.matches(&cert)
        && names.common_name.as_deref() == Some(args.common_name.as_str())
        && names.dns == dns
        && names.ips == ips
        && extended_key_usages(&cert) == usages(args)
        && inspect::issued_by(&cert, &ca)
        && life_left(&cert, now) > args.renew_below
        && ca.validity().not_after.timestamp() > now.unix_timestamp()
}

/// Whether the set holds the files this run writes besides the stores, each as
/// `file_as_asked` wants it, and a `ca.key` exactly when asked (a changed --mode, --uid or --gid
/// rewrites the set, so the app can read its key; dropping --keep-ca-key removes the CA's key).
fn files_as_asked(dir: &Dir, args: &Args) -> bool {
    let ca_key = args.ca_cert.is_none() && args.keep_ca_key;
    [("tls.crt", 0o644), ("tls.key", args.mode), ("ca.crt", 0o644)].into_iter().all(|(name, mode)| file_as_asked(dir, args, name, mode))
        && if ca_key { file_as_asked(dir, args, "ca.key", args.mode) } else { matches!(dir.stat(std::ffi::OsStr::new("ca.key")), Ok(None)) }
}

/// Whether the set `dir` has `name` as a regular file with `mode` and the asked owner.
fn file_as_asked(dir: &Dir, args: &Args, name: &str, mode: u32) -> bool {
    matches!(dir.stat(std::ffi::OsStr::new(name)), Ok(Some(st))
        if st.st_mode & 0o170000 == 0o100000
            && st.st_mode & 0o7777 == mode
            && args.uid.is_none_or(|u| u == st.st_uid)
            && args.gid.is_none_or(|g| g == st.st_gid))
}

fn write(dir: &Dir, name: &str, bytes: &[u8], mode: u32, uid: Option<u32>, gid: Option<u32>) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut file = dir.create_file_with_mode(std::ffi::OsStr::new(name), mode)?;
    file.write_all(bytes)?;
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::fchown(&file, uid, gid)?;
    }
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    Ok(())
}
