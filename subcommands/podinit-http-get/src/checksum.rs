//! Pure: the digest a file must have (`--sha256`, `--sha512`, or its line of a SHA256SUMS-style
//! file from `--checksum-url`), and hashing the bytes against it.

/// The digest the bytes must have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Want {
    Sha256(String),
    Sha512(String),
}

impl Want {
    /// From a digest in hex: its length says which algorithm (64 digits: SHA-256, 128: SHA-512).
    pub(crate) fn from_hex(hex: &str) -> Option<Self> {
        let hex = hex.to_ascii_lowercase();
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        match hex.len() {
            64 => Some(Self::Sha256(hex)),
            128 => Some(Self::Sha512(hex)),
            _ => None,
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Sha256(_) => "SHA-256",
            Self::Sha512(_) => "SHA-512",
        }
    }

    pub(crate) fn hex(&self) -> &str {
        match self {
            Self::Sha256(h) | Self::Sha512(h) => h,
        }
    }
}

/// The digest for `name` in a checksum file: GNU coreutils' `HEX  NAME` / `HEX *NAME` lines
/// (`sha256sum`, as release pages publish them; a path's last component counts as its
/// name) or BSD's `SHA256 (NAME) = HEX`. A file holding one bare digest is that digest.
pub(crate) fn pick(text: &str, name: &str) -> Result<Want, String> {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    if let [only] = lines.as_slice()
        && let Some(want) = Want::from_hex(only)
    {
        return Ok(want);
    }
    let mut found = None;
    for line in &lines {
        let (hex, file) = if let Some(rest) = line.strip_prefix("SHA256 (").or_else(|| line.strip_prefix("SHA512 (")) {
            match rest.rsplit_once(") = ") {
                Some((file, hex)) => (hex.trim(), file),
                None => continue,
            }
        } else {
            match line.split_once(char::is_whitespace) {
                Some((hex, file)) => (hex, file.trim_start().trim_start_matches('*')),
                None => continue,
            }
        };
        let base = file.rsplit('/').next().unwrap_or(file);
        if file == name || base == name {
            let want = Want::from_hex(hex).ok_or_else(|| format!("the line for '{name}' has no SHA-256 or SHA-512 digest"))?;
            if found.as_ref().is_some_and(|f| *f != want) {
                return Err(format!("two lines for '{name}' with different digests"));
            }
            found = Some(want);
        }
    }
    found.ok_or_else(|| format!("no line for '{name}'"))
}

/// Hashes the bytes, fed in order, for the digest wanted (or nothing). ring's digests (the
/// TLS stack's, already linked) use the CPU's SHA extensions: 1 GiB cost 0.6-0.8 s of CPU
/// here, where the `sha2` crate took 3.3 s (see ARCHITECTURE.md).
pub(crate) struct Hasher(Option<ring::digest::Context>);

impl Hasher {
    pub(crate) fn new(want: Option<&Want>) -> Self {
        Self(want.map(|want| {
            ring::digest::Context::new(match want {
                Want::Sha256(_) => &ring::digest::SHA256,
                Want::Sha512(_) => &ring::digest::SHA512,
            })
        }))
    }

    /// The hex digest of the bytes, if one was computed.
    pub(crate) fn finish(self) -> Option<String> {
        self.0.map(|h| podinit_transfer::hex(h.finish().as_ref()))
    }
}

impl podinit_transfer::Digest for Hasher {
    fn is_idle(&self) -> bool {
        self.0.is_none()
    }

    fn update(&mut self, data: &[u8]) {
        if let Some(h) = &mut self.0 {
            h.update(data);
        }
    }
}

/// What was verified, or what did not match.
pub(crate) fn check(want: Option<&Want>, got: Option<String>) -> Result<String, String> {
    match (want, got) {
        (None, _) => Ok("size only (no --sha256, --sha512 or --checksum-url)".to_owned()),
        (Some(want), Some(got)) if got == want.hex() => Ok(want.name().to_owned()),
        (Some(want), got) => Err(format!("{} mismatch: expected {}, the bytes give {}", want.name(), want.hex(), got.unwrap_or_default())),
    }
}

#[cfg(test)]
mod tests {
    use podinit_transfer::Digest as _;

    use super::*;

    const A: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn sums_files() {
        let b = "0".repeat(64);
        let text = format!("{b}  helm-v3.17.0-linux-arm64.tar.gz\n{A}  helm-v3.17.0-linux-amd64.tar.gz\n");
        assert_eq!(pick(&text, "helm-v3.17.0-linux-amd64.tar.gz"), Ok(Want::Sha256(A.into())));
        assert_eq!(pick(&format!("{A} *dist/tool.zip\n"), "tool.zip"), Ok(Want::Sha256(A.into())));
        assert_eq!(pick(&format!("SHA256 (tool.zip) = {A}\n"), "tool.zip"), Ok(Want::Sha256(A.into())));
        assert_eq!(pick(&format!("{}\n", A.to_uppercase()), "anything"), Ok(Want::Sha256(A.into())), "a bare digest");
        let long = "ab".repeat(64);
        assert_eq!(pick(&format!("{long}  x.bin\n"), "x.bin"), Ok(Want::Sha512(long)));
        assert!(pick(&text, "helm-v3.17.0-linux-arm64.tar").unwrap_err().contains("no line"), "a prefix is not a match");
        assert!(pick("xyz  a.bin\n", "a.bin").is_err());
        assert!(pick(&format!("{A}  a.bin\n{b}  a.bin\n"), "a.bin").is_err());
    }

    #[test]
    fn hashing_and_checking() {
        let want = Want::from_hex(A).unwrap();
        let mut h = Hasher::new(Some(&want));
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(check(Some(&want), h.finish()), Ok("SHA-256".into()));
        let mut h = Hasher::new(Some(&want));
        h.update(b"abd");
        assert!(check(Some(&want), h.finish()).unwrap_err().starts_with("SHA-256 mismatch"));
        assert!(Hasher::new(None).is_idle());
        assert!(Want::from_hex("abc").is_none() && Want::from_hex(&"g".repeat(64)).is_none());
    }
}
