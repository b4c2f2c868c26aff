//! [`GlobalArgs`]: the flags every applet accepts, each with its `PODINIT_…` variable.
//!
//! Every setting is declared once, on a clap field with `env = "…"`, so `--help` shows the
//! variable and an invalid value is a usage error (exit 2) rather than a silent default.
//! Boolean variables accept `true/false/yes/no/on/off/1/0` and nothing else.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;

/// Flags shared by every applet. Accepted before or after the applet name.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Give up after this long (e.g. `90s`, `5m`, `1h30m`); exit 124. Default: no limit.
    #[arg(long, global = true, env = "PODINIT_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,

    /// Log line format on stderr.
    #[arg(long, global = true, env = "PODINIT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Least severe log level shown.
    #[arg(long, global = true, env = "PODINIT_LOG_LEVEL", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Only warnings and errors; no progress.
    #[arg(short, long, global = true, env = "PODINIT_QUIET", value_parser = BoolishValueParser::new())]
    pub quiet: bool,

    /// Progress display: a bar on a terminal and log lines otherwise (`auto`), or forced.
    #[arg(long, global = true, env = "PODINIT_PROGRESS", value_enum, default_value_t = ProgressArg::Auto)]
    pub progress: ProgressArg,

    /// Where to write the failure summary Kubernetes shows [default: /dev/termination-log
    /// when it exists]. `none` turns it off.
    #[arg(long, global = true, env = "PODINIT_TERMINATION_LOG", value_name = "PATH")]
    pub termination_log: Option<PathBuf>,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// `podinit <applet>: message key=value`
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `--log-level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, clap::ValueEnum)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// What happened (the default).
    #[default]
    Info,
    /// Every attempt and decision.
    Debug,
    /// Everything, including dependencies.
    Trace,
}

/// `--progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ProgressArg {
    /// A bar when stderr is a terminal, periodic log lines otherwise.
    #[default]
    Auto,
    /// Always a bar.
    Bar,
    /// Always periodic log lines.
    Log,
    /// No progress output.
    Off,
}

/// Parses a duration such as `90s`, `5m`, `1h30m` or `250ms`.
///
/// A bare number is refused rather than guessed at (seconds? milliseconds?).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration: give a number with a unit, e.g. 90s or 5m".into());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{text}' has no unit: write {text}s for seconds (or ms, m, h)"));
    }
    let duration =
        humantime::parse_duration(text).map_err(|err| format!("'{text}' is not a duration ({err}): write e.g. 90s, 5m or 1h30m"))?;
    if duration > MAX_DURATION {
        return Err(format!("'{text}' is longer than {}: leave the option out for no limit", humantime::format_duration(MAX_DURATION)));
    }
    Ok(duration)
}

/// The longest duration accepted: far beyond any init container's life, and small enough
/// that adding it to a clock reading cannot overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Parses a file mode in octal, such as `0644`, `0o440` or `600`.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("'{text}' is not an octal file mode (e.g. 0644)"))
}

/// Parses a fraction from 0 (inclusive) to 1 (exclusive), such as `0.33`.
pub fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(f) if (0.0..1.0).contains(&f) => Ok(f),
        _ => Err(format!("{text:?}: expected a fraction from 0 to 1, e.g. 0.33")),
    }
}

/// Parses a size such as `16MiB`, `8M`, `1048576` or `512k` into bytes (binary units; zero is
/// refused).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("'{text}' is not a size (e.g. 16MiB)"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("'{text}': unknown unit '{unit}' (use KiB, MiB or GiB)")),
    };
    n.checked_mul(factor).filter(|n| *n > 0).ok_or_else(|| format!("'{text}' is not a usable size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert!(parse_size("0").is_err() && parse_size("3 parsecs").is_err());
    }

    #[test]
    fn modes_are_octal() {
        assert_eq!(parse_mode("0400"), Ok(0o400));
        assert_eq!(parse_mode("440"), Ok(0o440));
        assert_eq!(parse_mode("0o644"), Ok(0o644));
        assert!(parse_mode("0800").is_err());
        assert!(parse_mode("rw").is_err());
        assert!(parse_mode("17777").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("30").unwrap_err().contains("30s"));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("300000000000y").unwrap_err().contains("no limit"), "overflowing years are refused, not a panic");
        assert!(parse_duration("11y").is_err());
        assert_eq!(parse_duration("3650d"), Ok(MAX_DURATION));
    }
}
