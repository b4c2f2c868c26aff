//! Java's JKS keystore format, for trusted certificates only (what older JVMs read as a
//! truststore): OpenJDK's `JavaKeyStore.engineStore`, version 2.
//!
//! ```text
//! u32 0xFEEDFEED, u32 2, u32 count,
//! per entry: u32 2 (trusted certificate), UTF alias, u64 date (ms), UTF "X.509", u32 len, DER
//! SHA-1(password as UTF-16BE, "Mighty Aphrodite", everything above)
//! ```
//! `UTF` is Java's `DataOutput.writeUTF`: a u16 length, then the (modified) UTF-8 bytes.

use sha1::{Digest as _, Sha1};

/// A JKS file holding `certs` as trusted certificate entries `(alias, date in ms, DER)`.
/// Aliases are lowercased, as JKS does.
pub(crate) fn write(certs: &[(String, u64, Vec<u8>)], password: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xFEED_FEEDu32.to_be_bytes());
    out.extend_from_slice(&2u32.to_be_bytes());
    out.extend_from_slice(&u32::try_from(certs.len()).map_err(|_| "too many certificates")?.to_be_bytes());
    for (alias, date, der) in certs {
        out.extend_from_slice(&2u32.to_be_bytes());
        utf(&mut out, &alias.to_lowercase())?;
        out.extend_from_slice(&date.to_be_bytes());
        utf(&mut out, "X.509")?;
        out.extend_from_slice(&u32::try_from(der.len()).map_err(|_| "certificate too large")?.to_be_bytes());
        out.extend_from_slice(der);
    }
    let mut sha = Sha1::new();
    for unit in password.encode_utf16() {
        sha.update(unit.to_be_bytes());
    }
    sha.update(b"Mighty Aphrodite");
    sha.update(&out);
    out.extend_from_slice(&sha.finalize());
    Ok(out)
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
    #[test]
    fn layout_and_digest() {
        let jks = super::write(&[("A".into(), 1, vec![0x30, 0x00])], "changeit").unwrap();
        assert_eq!(&jks[..12], &[0xFE, 0xED, 0xFE, 0xED, 0, 0, 0, 2, 0, 0, 0, 1]);
        // tag 2, alias "a" (lowercased), date 1, "X.509", length 2, the DER.
        assert_eq!(&jks[12..16], &[0, 0, 0, 2]);
        assert_eq!(&jks[16..19], &[0, 1, b'a']);
        assert_eq!(&jks[19..27], &1u64.to_be_bytes());
        assert_eq!(&jks[27..34], b"\0\x05X.509");
        assert_eq!(&jks[34..40], &[0, 0, 0, 2, 0x30, 0x00]);
        assert_eq!(jks.len(), 40 + 20);
    }
}
