//! Java's JKS keystore format (what older JVMs read, and what many Java charts still name):
//! OpenJDK's `JavaKeyStore.engineStore`, version 2, with trusted certificates and private keys.
//!
//! ```text
//! u32 0xFEEDFEED, u32 2, u32 count,
//! trusted certificate: u32 2, UTF alias, u64 date (ms), UTF "X.509", u32 len, DER
//! private key:         u32 1, UTF alias, u64 date (ms), u32 len, EncryptedPrivateKeyInfo,
//!                      u32 chain length, per certificate: UTF "X.509", u32 len, DER
//! SHA-1(password as UTF-16BE, "Mighty Aphrodite", everything above)
//! ```
//! `UTF` is Java's `DataOutput.writeUTF`: a u16 length, then the (modified) UTF-8 bytes. The
//! private key is protected as OpenJDK's `KeyProtector.protect` does (the only scheme JKS has):
//! a SHA-1 keystream from the password and a 20-byte salt XORed over the PKCS#8 key, then
//! SHA-1(password, key) as a check. The salt is derived from the password and the key rather
//! than drawn at random, so the same key and password give the same bytes and a rerun can
//! compare files instead of decrypting them (the salt is public in the file either way).

use sha1::{Digest as _, Sha1};

/// One entry of a JKS file.
pub(crate) enum Entry<'a> {
    /// A trusted certificate (`trustedCertEntry`).
    Trusted { alias: &'a str, date_ms: u64, der: &'a [u8] },
    /// A private key with its certificate chain, leaf first (`PrivateKeyEntry`).
    Key { alias: &'a str, date_ms: u64, pkcs8: &'a [u8], chain: Vec<&'a [u8]> },
}

/// OpenJDK's KeyProtector algorithm, 1.3.6.1.4.1.42.2.17.1.1.
const KEY_PROTECTOR_OID: &[u8] = &[0x06, 0x0A, 0x2B, 0x06, 0x01, 0x04, 0x01, 0x2A, 0x02, 0x11, 0x01, 0x01];

/// A JKS file holding `entries`, its integrity (and the keys) protected by `password`.
/// Aliases are lowercased, as JKS does.
pub(crate) fn write(entries: &[Entry<'_>], password: &str) -> Result<Vec<u8>, String> {
    let password: Vec<u8> = password.encode_utf16().flat_map(u16::to_be_bytes).collect();
    let mut out = Vec::new();
    out.extend_from_slice(&0xFEED_FEEDu32.to_be_bytes());
    out.extend_from_slice(&2u32.to_be_bytes());
    out.extend_from_slice(&len32(entries.len(), "entries")?.to_be_bytes());
    for entry in entries {
        match entry {
            Entry::Trusted { alias, date_ms, der } => {
                out.extend_from_slice(&2u32.to_be_bytes());
                utf(&mut out, &alias.to_lowercase())?;
                out.extend_from_slice(&date_ms.to_be_bytes());
                certificate(&mut out, der)?;
            }
            Entry::Key { alias, date_ms, pkcs8, chain } => {
                out.extend_from_slice(&1u32.to_be_bytes());
                utf(&mut out, &alias.to_lowercase())?;
                out.extend_from_slice(&date_ms.to_be_bytes());
                let protected = protect(pkcs8, &password);
                out.extend_from_slice(&len32(protected.len(), "key")?.to_be_bytes());
                out.extend_from_slice(&protected);
                out.extend_from_slice(&len32(chain.len(), "chain")?.to_be_bytes());
                for der in chain {
                    certificate(&mut out, der)?;
                }
            }
        }
    }
    let mut sha = Sha1::new();
    sha.update(&password);
    sha.update(b"Mighty Aphrodite");
    sha.update(&out);
    out.extend_from_slice(&sha.finalize());
    Ok(out)
}

/// `KeyProtector.protect`: EncryptedPrivateKeyInfo { KeyProtector OID, NULL }, salt || key
/// XOR keystream || SHA-1(password, key) }.
fn protect(pkcs8: &[u8], password: &[u8]) -> Vec<u8> {
    let salt: [u8; 20] = Sha1::new().chain_update(b"podinit JKS key salt").chain_update(password).chain_update(pkcs8).finalize().into();
    let mut protected = salt.to_vec();
    let mut digest = salt;
    for chunk in pkcs8.chunks(20) {
        digest = Sha1::new().chain_update(password).chain_update(digest).finalize().into();
        protected.extend(chunk.iter().zip(digest).map(|(k, x)| k ^ x));
    }
    protected.extend_from_slice(&Sha1::new().chain_update(password).chain_update(pkcs8).finalize());
    let mut algorithm = KEY_PROTECTOR_OID.to_vec();
    algorithm.extend_from_slice(&[0x05, 0x00]);
    let mut body = der(0x30, &algorithm);
    body.extend(der(0x04, &protected));
    der(0x30, &body)
}

/// A DER element: tag, definite length, contents.
fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
    out
}

fn certificate(out: &mut Vec<u8>, der: &[u8]) -> Result<(), String> {
    utf(out, "X.509")?;
    out.extend_from_slice(&len32(der.len(), "certificate")?.to_be_bytes());
    out.extend_from_slice(der);
    Ok(())
}

fn len32(len: usize, what: &str) -> Result<u32, String> {
    u32::try_from(len).map_err(|_| format!("{what}: too large for JKS"))
}

fn utf(out: &mut Vec<u8>, text: &str) -> Result<(), String> {
    // Modified UTF-8 differs from UTF-8 only for NUL and characters outside the BMP, which
    // aliases here (from certificate names, sanitised) never hold.
    let len = u16::try_from(text.len()).map_err(|_| format!("{text:?} is too long for JKS"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Entry;

    #[test]
    fn layout_and_digest() {
        let jks = super::write(&[Entry::Trusted { alias: "A", date_ms: 1, der: &[0x30, 0x00] }], "changeit").unwrap();
        assert_eq!(&jks[..12], &[0xFE, 0xED, 0xFE, 0xED, 0, 0, 0, 2, 0, 0, 0, 1]);
        // tag 2, alias "a" (lowercased), date 1, "X.509", length 2, the DER.
        assert_eq!(&jks[12..16], &[0, 0, 0, 2]);
        assert_eq!(&jks[16..19], &[0, 1, b'a']);
        assert_eq!(&jks[19..27], &1u64.to_be_bytes());
        assert_eq!(&jks[27..34], b"\0\x05X.509");
        assert_eq!(&jks[34..40], &[0, 0, 0, 2, 0x30, 0x00]);
        assert_eq!(jks.len(), 40 + 20);
    }

    #[test]
    fn a_protected_key_unmasks_with_the_password_and_long_lengths_are_der() {
        // KeyProtector.recover, written out: the keystream from the salt gives the key back.
        use sha1::{Digest as _, Sha1};
        let key: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        let password: Vec<u8> = "pw".encode_utf16().flat_map(u16::to_be_bytes).collect();
        let protected = super::protect(&key, &password);
        // 30 82 01 68 | 30 0e OID(12) 05 00 | 04 82 01 54 salt(20) masked(300) check(20)
        assert_eq!(&protected[..4], &[0x30, 0x82, 0x01, 0x68]);
        assert_eq!(&protected[4..6], &[0x30, 0x0E]);
        assert_eq!(&protected[18..20], &[0x05, 0x00]);
        assert_eq!(&protected[20..24], &[0x04, 0x82, 0x01, 0x54]);
        let body = &protected[24..];
        let (salt, rest) = body.split_at(20);
        let (masked, check) = rest.split_at(300);
        let mut digest: [u8; 20] = salt.try_into().unwrap();
        let mut plain = Vec::new();
        for chunk in masked.chunks(20) {
            digest = Sha1::new().chain_update(&password).chain_update(digest).finalize().into();
            plain.extend(chunk.iter().zip(digest).map(|(k, x)| k ^ x));
        }
        assert_eq!(plain, key);
        assert_eq!(check, Sha1::new().chain_update(&password).chain_update(&key).finalize().as_slice());
        // Deterministic: the same key and password, the same bytes.
        assert_eq!(protected, super::protect(&key, &password));
    }
}
