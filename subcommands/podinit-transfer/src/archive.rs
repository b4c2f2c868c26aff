//! Archive formats and unpacking a downloaded archive file into a directory (through
//! [`Unpacker`]'s rules: no entry outside, links judged against the finished tree, no
//! setuid/setgid bits, budgets of bytes, entries and depth).

use std::fs::File;
use std::io::{self, Read};

use anyhow::Context as _;
use podinit_core::fs::root::Dir;

use crate::unpack::{Limits, Stop, Unpacker};

/// The format of an archive to extract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// From the name: .tar, .tar.gz/.tgz, .tar.zst/.tzst, .tar.xz/.txz, .tar.bz2/.tbz2/.tbz, .zip.
    Auto,
    Tar,
    #[value(name = "tar.gz")]
    TarGz,
    #[value(name = "tar.zst")]
    TarZst,
    #[value(name = "tar.xz")]
    TarXz,
    #[value(name = "tar.bz2")]
    TarBz2,
    Zip,
}

impl Format {
    /// `Auto` resolved from `name` (a file name or URL path).
    pub fn resolve(self, name: &str) -> Result<Self, String> {
        if self != Self::Auto {
            return Ok(self);
        }
        let n = name.to_ascii_lowercase();
        let ends = |suffixes: &[&str]| suffixes.iter().any(|s| n.ends_with(s));
        if ends(&[".tar"]) {
            Ok(Self::Tar)
        } else if ends(&[".tar.gz", ".tgz"]) {
            Ok(Self::TarGz)
        } else if ends(&[".tar.zst", ".tzst", ".tar.zstd"]) {
            Ok(Self::TarZst)
        } else if ends(&[".tar.xz", ".txz"]) {
            Ok(Self::TarXz)
        } else if ends(&[".tar.bz2", ".tbz2", ".tbz"]) {
            Ok(Self::TarBz2)
        } else if ends(&[".zip"]) {
            Ok(Self::Zip)
        } else {
            Err(format!(
                "cannot tell the archive format of '{name}' from its name; give --format tar, tar.gz, tar.zst, tar.xz, tar.bz2 or zip"
            ))
        }
    }
}

/// A tar stream decompressed as `format` says (`Zip` and `Auto` read it as a plain tar).
pub fn tar_decoder<'a>(format: Format, reader: impl Read + 'a) -> anyhow::Result<Box<dyn Read + 'a>> {
    let codec = match format {
        Format::Tar | Format::Auto | Format::Zip => return Ok(Box::new(reader)),
        Format::TarGz => Codec::Gzip,
        Format::TarZst => Codec::Zstd,
        Format::TarXz => Codec::Xz,
        Format::TarBz2 => Codec::Bzip2,
    };
    codec.decoder(reader)
}

/// The compression of a single file (`--decompress`), from its name's last extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Gzip,
    Zstd,
    Xz,
    Bzip2,
}

impl Codec {
    /// The codec of `name` and the name without its extension (`dash.json.gz` → `dash.json`).
    pub fn of(name: &str) -> Result<(Self, &str), String> {
        let lower = name.to_ascii_lowercase();
        for (ext, codec) in [(".gz", Self::Gzip), (".zst", Self::Zstd), (".zstd", Self::Zstd), (".xz", Self::Xz), (".bz2", Self::Bzip2)] {
            if lower.ends_with(ext) && name.len() > ext.len() {
                return Ok((codec, &name[..name.len() - ext.len()]));
            }
        }
        Err(format!("--decompress: cannot tell the compression of '{name}' from its name (.gz, .zst, .xz or .bz2)"))
    }

    /// `reader` decompressed (gzip, xz and bzip2: every member/stream, as their tools read
    /// them; bzip2 by libbz2-rs-sys, a Rust port of libbzip2).
    fn decoder<'a>(self, reader: impl Read + 'a) -> anyhow::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Self::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
            Self::Zstd => Box::new(zstd::stream::read::Decoder::new(reader).context("starting the zstd decoder")?),
            Self::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(reader)),
            Self::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(reader)),
        })
    }
}

/// Decompresses `from` into `to`: at most `max` bytes come out (a file that decompresses to
/// more, a bomb or a volume too small, is an error and the caller publishes nothing); `stop`
/// is asked after every MiB. Returns the bytes written.
pub fn decompress(codec: Codec, from: File, mut to: &File, max: u64, stop: &Stop) -> anyhow::Result<u64> {
    use std::io::Write as _;
    let mut decoder = codec.decoder(io::BufReader::with_capacity(1 << 20, from))?;
    let mut buf = vec![0; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = decoder.read(&mut buf).context("decompressing")?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
        if total > max {
            anyhow::bail!(
                "it decompresses to more than {max} bytes (--extract-max-size; by default the volume's free space less a margin)"
            );
        }
        to.write_all(&buf[..n]).context("writing the decompressed file")?;
        stop().map_err(|why| anyhow::anyhow!("{why}"))?;
    }
}

/// Unpacks the archive `file` into `root` within `limits`, asking `stop` every so often;
/// returns the number of entries.
pub fn unpack_file(file: File, format: Format, root: &Dir, limits: Limits, stop: Stop) -> anyhow::Result<u64> {
    let mut unpacker = Unpacker::new(root.try_clone()?, limits, Some(stop));
    if format == Format::Zip {
        unpacker.zip(file)?;
    } else {
        let mut reader = io::BufReader::with_capacity(1 << 20, file);
        unpacker.tar(tar_decoder(format, &mut reader)?)?;
    }
    unpacker.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_from_names() {
        assert_eq!(Format::Auto.resolve("a/b.tar.gz"), Ok(Format::TarGz));
        assert_eq!(Format::Auto.resolve("x.TGZ"), Ok(Format::TarGz));
        assert_eq!(Format::Auto.resolve("x.tar.xz"), Ok(Format::TarXz));
        assert_eq!(Format::Auto.resolve("model.zip"), Ok(Format::Zip));
        assert_eq!(Format::Auto.resolve("x.tar.zst"), Ok(Format::TarZst));
        assert_eq!(Format::Auto.resolve("x.tar.bz2"), Ok(Format::TarBz2));
        assert_eq!(Format::Auto.resolve("x.TBZ2"), Ok(Format::TarBz2));
        assert_eq!(Format::Zip.resolve("x.bin"), Ok(Format::Zip));
        assert!(Format::Auto.resolve("x.bin").is_err());
    }
}
