//! Pure parsing and planning: `s3://` URLs, include/exclude globs, object keys mapped to
//! relative paths, ETag forms, byte ranges, digests given on the command line.

use std::path::PathBuf;

pub(crate) use podinit_transfer::{hex, parse_hex, ranges};

/// `s3://BUCKET/KEY` (one object) or `s3://BUCKET/PREFIX/` and `s3://BUCKET` (a prefix).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct S3Url {
    pub(crate) bucket: String,
    pub(crate) key: String,
}

impl S3Url {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let rest = text.strip_prefix("s3://").ok_or_else(|| format!("'{text}' is not an s3:// URL (e.g. s3://bucket/path/model.bin)"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("'{text}' names no bucket (s3://BUCKET/KEY)"));
        }
        let bucket_ok = bucket.len() <= 255 && bucket.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !bucket_ok {
            return Err(format!("'{bucket}' in '{text}' is not a bucket name (letters, digits, '.', '-', '_')"));
        }
        if key.starts_with('/') {
            return Err(format!(
                "'{text}' has an empty path segment after the bucket; write s3://{bucket}/{}",
                key.trim_start_matches('/')
            ));
        }
        Ok(Self { bucket: bucket.to_owned(), key: key.to_owned() })
    }

    /// A prefix (a "directory") rather than one object.
    pub(crate) fn is_prefix(&self) -> bool {
        self.key.is_empty() || self.key.ends_with('/')
    }

    /// The last segment of the key: the default file name.
    pub(crate) fn file_name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or(&self.key)
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// `--include` / `--exclude`: a key (relative to the prefix) is taken when it matches some
/// include (or there is none) and no exclude.
#[derive(Clone, Debug, Default)]
pub(crate) struct Filter {
    pub(crate) include: Vec<String>,
    pub(crate) exclude: Vec<String>,
}

impl Filter {
    pub(crate) fn takes(&self, relative_key: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| glob(p, relative_key)))
            && !self.exclude.iter().any(|p| glob(p, relative_key))
    }
}

/// Shell-style glob over a whole key: `*` matches any run of characters including `/` (as
/// in aws cli and s5cmd), `?` one character, `[abc]` / `[a-z]` / `[!a]` a class.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            while pi < p.len() && p[pi] == '*' {
                pi += 1;
            }
            star = Some((pi, ti));
            continue;
        }
        if pi < p.len()
            && let Some((true, len)) = match_one(&p[pi..], t[ti])
        {
            pi += len;
            ti += 1;
            continue;
        }
        match star {
            Some((sp, st)) => {
                pi = sp;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Matches one pattern element against `c`: `(matched, pattern length)`; `None` at a `*`.
fn match_one(p: &[char], c: char) -> Option<(bool, usize)> {
    match p[0] {
        '*' => None,
        '?' => Some((true, 1)),
        '[' => {
            let close = p.iter().skip(2).position(|x| *x == ']').map(|i| i + 2);
            let Some(close) = close else { return Some((c == '[', 1)) };
            let (negate, body) = match p[1] {
                '!' | '^' => (true, &p[2..close]),
                _ => (false, &p[1..close]),
            };
            let mut hit = false;
            let mut i = 0;
            while i < body.len() {
                if i + 2 < body.len() && body[i + 1] == '-' {
                    hit |= body[i] <= c && c <= body[i + 2];
                    i += 3;
                } else {
                    hit |= body[i] == c;
                    i += 1;
                }
            }
            Some((hit != negate, close + 1))
        }
        other => Some((other == c, 1)),
    }
}

/// Where an object lands under the destination directory: its key without the prefix, as a
/// relative path. Keys that would leave the directory, or that no file can carry, are refused
/// with the reason.
pub(crate) fn relative_path(prefix: &str, key: &str) -> Result<PathBuf, String> {
    let rest = key.strip_prefix(prefix).ok_or_else(|| format!("key '{key}' is not under the prefix '{prefix}'"))?;
    if rest.is_empty() {
        return Err(format!("key '{key}' is the prefix itself"));
    }
    if rest.starts_with('/') {
        return Err(format!("key '{key}' would be an absolute path"));
    }
    if rest.contains('\0') {
        return Err(format!("key '{key}' holds a NUL byte"));
    }
    let mut path = PathBuf::new();
    for segment in rest.split('/') {
        match segment {
            "" => return Err(format!("key '{key}' has an empty path segment ('//')")),
            "." | ".." => return Err(format!("key '{key}' has a '{segment}' segment, which would leave the destination")),
            s => path.push(s),
        }
    }
    Ok(path)
}

/// What an ETag says about the content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Etag {
    /// The MD5 of the content (a single-part upload without SSE-KMS/SSE-C).
    Md5([u8; 16]),
    /// `md5(md5(part 1) ‖ … ‖ md5(part N))-N` (a multipart upload).
    Multipart { digest: [u8; 16], parts: u32 },
    /// Anything else (another store's scheme, SSE-KMS): says nothing checkable.
    Opaque,
}

impl Etag {
    pub(crate) fn parse(etag: &str) -> Self {
        let bare = etag.trim_matches('"');
        let (hex, parts) = match bare.split_once('-') {
            Some((hex, n)) => match n.parse::<u32>() {
                Ok(n) if n >= 1 => (hex, Some(n)),
                _ => return Self::Opaque,
            },
            None => (bare, None),
        };
        let Some(digest) = parse_hex::<16>(hex) else { return Self::Opaque };
        match parts {
            None => Self::Md5(digest),
            Some(parts) => Self::Multipart { digest, parts },
        }
    }
}

/// The part size of a multipart upload, when parts are uniform (every part but the last of
/// one size, as every common uploader makes them): `part_1` bytes each, `parts` parts.
pub(crate) fn uniform_part_size(size: u64, parts: u32, part_1: u64) -> Option<u64> {
    let n = u64::from(parts);
    (part_1 > 0 && (n - 1) * part_1 < size && size <= n * part_1).then_some(part_1)
}

/// The archive format of `--extract`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ArchiveFormat {
    /// From the key's name: .tar, .tar.gz/.tgz, .tar.zst/.tzst.
    Auto,
    Tar,
    #[value(name = "tar.gz")]
    TarGz,
    #[value(name = "tar.zst")]
    TarZst,
}

impl ArchiveFormat {
    pub(crate) fn resolve(self, key: &str) -> Result<Self, String> {
        if self != Self::Auto {
            return Ok(self);
        }
        let k = key.to_ascii_lowercase();
        if k.ends_with(".tar") {
            Ok(Self::Tar)
        } else if k.ends_with(".tar.gz") || k.ends_with(".tgz") {
            Ok(Self::TarGz)
        } else if k.ends_with(".tar.zst") || k.ends_with(".tzst") || k.ends_with(".tar.zstd") {
            Ok(Self::TarZst)
        } else {
            Err(format!("cannot tell the archive format of '{key}' from its name; give --extract-format tar, tar.gz or tar.zst"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = S3Url::parse("s3://models/llm/v1/weights.bin").unwrap();
        assert_eq!(
            (u.bucket.as_str(), u.key.as_str(), u.is_prefix(), u.file_name()),
            ("models", "llm/v1/weights.bin", false, "weights.bin")
        );
        assert!(S3Url::parse("s3://models/llm/").unwrap().is_prefix());
        assert!(S3Url::parse("s3://models").unwrap().is_prefix());
        assert_eq!(u.to_string(), "s3://models/llm/v1/weights.bin");
        for bad in ["models/x", "s3:///x", "https://b/k", "s3://bad bucket/k", "s3://b//k"] {
            assert!(S3Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn globs_match_like_aws_cli() {
        assert!(glob("*.bin", "a/b/c.bin"));
        assert!(glob("a/*", "a/b/c"));
        assert!(!glob("*.bin", "c.binx"));
        assert!(glob("model-?.bin", "model-1.bin"));
        assert!(glob("[a-c]*", "b.txt"));
        assert!(!glob("[!a-c]*", "b.txt"));
        assert!(glob("**", ""));
        assert!(glob("*x*y*", "aaxbbyc"));
        let f = Filter { include: vec!["*.bin".into(), "*.json".into()], exclude: vec!["tmp/*".into()] };
        assert!(f.takes("w/a.bin") && f.takes("c.json"));
        assert!(!f.takes("tmp/a.bin") && !f.takes("a.txt"));
        assert!(Filter::default().takes("anything"));
    }

    #[test]
    fn keys_map_inside_or_are_refused() {
        assert_eq!(relative_path("p/", "p/a/b.bin").unwrap(), PathBuf::from("a/b.bin"));
        assert_eq!(relative_path("", "x").unwrap(), PathBuf::from("x"));
        for bad in ["p/../etc/passwd", "p//x", "p/a/../../x", "p/", "p/./x", "p/a\0b"] {
            assert!(relative_path("p/", bad).is_err(), "{bad:?}");
        }
        assert!(relative_path("", "/etc/passwd").is_err());
    }

    #[test]
    fn etags() {
        assert_eq!(Etag::parse("\"9e107d9d372bb6826bd81d3542a419d6\""), Etag::Md5(parse_hex("9e107d9d372bb6826bd81d3542a419d6").unwrap()));
        assert!(matches!(Etag::parse("\"d41d8cd98f00b204e9800998ecf8427e-12\""), Etag::Multipart { parts: 12, .. }));
        assert_eq!(Etag::parse("\"abc\""), Etag::Opaque);
        assert_eq!(Etag::parse("d41d8cd98f00b204e9800998ecf8427e-x"), Etag::Opaque);
    }

    #[test]
    fn ranges_and_parts() {
        assert_eq!(ranges(10, 4), [0..4, 4..8, 8..10]);
        assert_eq!(ranges(8, 4), [0..4, 4..8]);
        assert!(ranges(0, 4).is_empty());
        assert_eq!(uniform_part_size(25, 3, 10), Some(10));
        assert_eq!(uniform_part_size(31, 3, 10), None);
        assert_eq!(uniform_part_size(20, 3, 10), None);
    }

    #[test]
    fn archive_formats() {
        assert_eq!(ArchiveFormat::Auto.resolve("a/b.tar.zst"), Ok(ArchiveFormat::TarZst));
        assert_eq!(ArchiveFormat::Auto.resolve("b.tgz"), Ok(ArchiveFormat::TarGz));
        assert!(ArchiveFormat::Auto.resolve("b.zip").is_err());
        assert_eq!(ArchiveFormat::Tar.resolve("b.zip"), Ok(ArchiveFormat::Tar));
    }
}
