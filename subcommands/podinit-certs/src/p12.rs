//! PKCS#12 stores through p12-keystore (AES-256-CBC and HMAC-SHA-256, what OpenSSL 3 and Java
//! 8u301+, 11.0.12+ and 12+ read; older JVMs cannot check the HMAC-SHA-256 MAC): trusted certificates for truststores, a private key with its chain for keystores.
//! Salted, so the same content gives other bytes each time: a rerun opens the existing store
//! with the password and compares what it holds.

use std::collections::BTreeSet;

use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKeyChain};

/// A store of trusted-certificate entries `(alias, DER)`.
pub(crate) fn trusted<'a>(entries: impl IntoIterator<Item = (&'a str, &'a [u8])>, password: &str) -> Result<Vec<u8>, String> {
    let mut store = KeyStore::new();
    for (alias, der) in entries {
        let cert = Certificate::from_der(der).map_err(|e| format!("certificate {alias}: {e}"))?;
        store.add_entry(alias, KeyStoreEntry::Certificate(cert));
    }
    store.writer(password).write().map_err(|e| format!("writing PKCS#12: {e}"))
}

/// A store of one private key (PKCS#8 DER) with its chain, leaf first, under `alias`; its
/// localKeyId is the leaf's SHA-1, as keytool and openssl set it.
pub(crate) fn key(alias: &str, pkcs8: &[u8], chain: &[&[u8]], password: &str) -> Result<Vec<u8>, String> {
    use sha1::Digest as _;
    let certs =
        chain.iter().map(|der| Certificate::from_der(der)).collect::<Result<Vec<_>, _>>().map_err(|e| format!("certificate: {e}"))?;
    let local_key_id = sha1::Sha1::digest(chain.first().copied().unwrap_or_default()).to_vec();
    let mut store = KeyStore::new();
    store.add_entry(alias, KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(pkcs8, local_key_id, certs)));
    store.writer(password).write().map_err(|e| format!("writing PKCS#12: {e}"))
}

/// Whether `bytes` open with `password` and hold exactly the certificates `entries`, as trusted
/// entries under these aliases, and nothing else.
pub(crate) fn holds_trusted(bytes: &[u8], password: &str, entries: &BTreeSet<(&str, &[u8])>) -> bool {
    let Ok(store) = KeyStore::from_pkcs12(bytes, password) else { return false };
    let mut held = BTreeSet::new();
    for (alias, entry) in store.entries() {
        match entry {
            KeyStoreEntry::Certificate(cert) => {
                held.insert((alias, cert.as_der()));
            }
            _ => return false,
        }
    }
    held.len() == entries.len() && held.iter().all(|(alias, der)| entries.contains(&(alias.as_str(), *der)))
}

/// Whether `bytes` open with `password` and hold exactly this key and chain under `alias`.
pub(crate) fn holds_key(bytes: &[u8], password: &str, alias: &str, pkcs8: &[u8], chain: &[&[u8]]) -> bool {
    let Ok(store) = KeyStore::from_pkcs12(bytes, password) else { return false };
    store.entries_count() == 1
        && store.private_key_chain().is_some_and(|(held_alias, held)| {
            held_alias == alias && held.key() == pkcs8 && held.chain().iter().map(Certificate::as_der).eq(chain.iter().copied())
        })
}
