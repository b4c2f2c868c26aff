//! `podinit touch`: create empty files, or set the times of existing ones to now.

use std::path::PathBuf;

use nix::sys::stat::UtimensatFlags;
use nix::sys::time::TimeSpec;
use podinit_core::{Context, Error};

/// Create files that do not exist (empty) and set the times of every FILE, to now or as -d,
/// -t or -r say, as touch does.
///
/// An existing file's content is never changed. A link given as FILE is followed, as in touch;
/// with -h the link itself gets the times (and nothing is created). A missing FILE is never
/// created through a dangling link.
#[derive(Debug, Clone, clap::Args)]
#[command(
    disable_help_flag = true,
    after_help = "\
Examples:
  podinit touch /data/.initialized
  podinit touch -c /data/app.log                       only if it exists
  podinit touch -d '2026-01-02 03:04:05Z' /data/stamp  a given time (UTC without a zone)"
)]
pub struct Args {
    /// Do not create missing files.
    #[arg(short = 'c', long = "no-create")]
    pub no_create: bool,

    /// Only the access time.
    #[arg(short = 'a')]
    pub access: bool,

    /// Only the modification time.
    #[arg(short = 'm', id = "modification")]
    pub modification: bool,

    /// A link given as FILE gets the times itself (its target is left alone); creates nothing.
    #[arg(short = 'h', long = "no-dereference")]
    pub no_dereference: bool,

    /// This time instead of now: `YYYY-MM-DD[ HH:MM[:SS[.NNN]]][Z|±HH:MM]` (also with `T`), or
    /// `@SECONDS`; without a zone, UTC.
    #[arg(short = 'd', long = "date", value_name = "DATE", conflicts_with_all = ["stamp", "reference"])]
    pub date: Option<String>,

    /// This time instead of now, as `[[CC]YY]MMDDhhmm[.ss]` (UTC).
    #[arg(short = 't', value_name = "STAMP", conflicts_with = "reference")]
    pub stamp: Option<String>,

    /// The times of this file instead of now (a link followed).
    #[arg(short = 'r', long = "reference", value_name = "FILE")]
    pub reference: Option<PathBuf>,

    /// Print help (`-h` is --no-dereference, as in touch).
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,

    /// Files.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

/// Runs `podinit touch` to completion.
pub fn run(ctx: &Context, mut args: Args) -> Result<(), Error> {
    let (atime, mtime) = times(&args)?;
    // `-a` or `-m` alone narrows to that time; both, or neither, set both (as in GNU touch).
    let atime = if args.modification && !args.access { TimeSpec::UTIME_OMIT } else { atime };
    let mtime = if args.access && !args.modification { TimeSpec::UTIME_OMIT } else { mtime };
    args.files = crate::operands(std::mem::take(&mut args.files), !args.no_dereference)?;
    let no_create = args.no_create || args.no_dereference;
    crate::each_operand(ctx, &args.files, |file| one(&args, file, no_create, atime, mtime))
}

/// Creates (unless `no_create`) and sets the times of one FILE.
fn one(args: &Args, file: &std::path::Path, no_create: bool, atime: TimeSpec, mtime: TimeSpec) -> Result<(), Error> {
    if !no_create {
        // O_CREAT without O_TRUNC: an existing file keeps its content. One podinit may
        // not write (read-only, someone else's) still gets its times set below if allowed.
        // O_NONBLOCK: an existing FIFO must not block the open (as GNU touch).
        use std::os::unix::fs::OpenOptionsExt as _;
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o666)
            // Never created through a link (a dangling one planted in a volume would
            // make root create a file wherever it points); an existing link's target
            // still gets its times below, as touch does.
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_NOFOLLOW)
            .open(file);
        if let Err(e) = opened
            && !file.exists()
        {
            return Err(crate::operand_error("cannot touch", file, &e));
        }
    }
    let follow = if args.no_dereference { UtimensatFlags::NoFollowSymlink } else { UtimensatFlags::FollowSymlink };
    match nix::sys::stat::utimensat(nix::fcntl::AT_FDCWD, file, &atime, &mtime, follow) {
        Ok(()) => {}
        Err(nix::errno::Errno::ENOENT) if args.no_create => {}
        Err(e) => return Err(crate::operand_error("setting the times of", file, &std::io::Error::from(e))),
    }
    Ok(())
}

/// The access and modification times asked for: now, -d, -t or -r's.
fn times(args: &Args) -> Result<(TimeSpec, TimeSpec), Error> {
    if let Some(reference) = &args.reference {
        let meta = std::fs::metadata(reference).map_err(|e| crate::operand_error("reading the times of", reference, &e))?;
        use std::os::unix::fs::MetadataExt as _;
        return Ok((TimeSpec::new(meta.atime(), meta.atime_nsec()), TimeSpec::new(meta.mtime(), meta.mtime_nsec())));
    }
    let at = match (&args.date, &args.stamp) {
        (Some(date), _) => parse_date(date).map_err(|e| {
            Error::usage(format!("-d '{date}': {e}")).with_hint(
                "podinit reads YYYY-MM-DD[ HH:MM[:SS[.NNN]]][Z|+HH:MM] and @SECONDS, not GNU's words (`yesterday`, `next monday`)",
            )
        })?,
        (None, Some(stamp)) => parse_stamp(stamp, now_year()).map_err(|e| Error::usage(format!("-t '{stamp}': {e}")))?,
        (None, None) => return Ok((TimeSpec::UTIME_NOW, TimeSpec::UTIME_NOW)),
    };
    Ok((at, at))
}

/// Days since 1970-01-01 of a date in the proleptic Gregorian calendar (H. Hinnant's).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The year now (UTC).
fn now_year() -> i64 {
    let days = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400);
    let mut year = 1970 + i64::try_from(days / 366).unwrap_or(0);
    while days_from_civil(year + 1, 1, 1) <= i64::try_from(days).unwrap_or(0) {
        year += 1;
    }
    year
}

/// Seconds since the epoch of a UTC date and time, checking each field's range.
fn epoch(year: i64, month: i64, day: i64, hour: i64, minute: i64, second: i64) -> Result<i64, String> {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month) || day < 1 || day > days_in[usize::try_from(month - 1).unwrap_or(0)] {
        return Err("no such date".into());
    }
    if !(0..24).contains(&hour) || !(0..60).contains(&minute) || !(0..=60).contains(&second) {
        return Err("no such time of day".into());
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

fn number(text: &str, what: &str) -> Result<i64, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) || text.len() > 12 || (what == "year" && text.len() > 4) {
        return Err(format!("'{text}' is not a {what}"));
    }
    text.parse().map_err(|_| format!("'{text}' is not a {what}"))
}

/// GNU touch's `-d` in the forms scripts write: `@SECONDS`, or an ISO 8601 date with an
/// optional time and zone.
fn parse_date(text: &str) -> Result<TimeSpec, String> {
    let text = text.trim();
    if let Some(seconds) = text.strip_prefix('@') {
        let (whole, frac) = seconds.split_once('.').unwrap_or((seconds, ""));
        let (negative, whole) = whole.strip_prefix('-').map_or((false, whole), |w| (true, w));
        let (secs, nanos) = (number(whole, "number of seconds")?, nanos(frac)?);
        // `@-1.5` is 1.5 s before the epoch: -2 s and 0.5 s after.
        return Ok(match (negative, nanos) {
            (false, _) => TimeSpec::new(secs, nanos),
            (true, 0) => TimeSpec::new(-secs, 0),
            (true, _) => TimeSpec::new(-secs - 1, 1_000_000_000 - nanos),
        });
    }
    let (date, rest) = text.split_at(text.find([' ', 'T', 't']).unwrap_or(text.len()));
    let mut fields = date.splitn(3, '-');
    let (Some(y), Some(m), Some(d)) = (fields.next(), fields.next(), fields.next()) else {
        return Err("not a date".into());
    };
    let (year, month, day) = (number(y, "year")?, number(m, "month")?, number(d, "day")?);
    let rest = rest.get(1..).unwrap_or("").trim();
    // The zone: `Z`, `UTC`, or `±HH:MM` / `±HHMM` at the end.
    let (time, offset) = split_zone(rest)?;
    let (mut hour, mut minute, mut second, mut frac) = (0, 0, 0, "");
    if !time.is_empty() {
        let mut parts = time.splitn(3, ':');
        hour = number(parts.next().unwrap_or(""), "hour")?;
        minute = number(parts.next().ok_or("a time needs HH:MM")?, "minute")?;
        if let Some(s) = parts.next() {
            let (whole, f) = s.split_once(['.', ',']).unwrap_or((s, ""));
            second = number(whole, "second")?;
            frac = f;
        }
    }
    Ok(TimeSpec::new(epoch(year, month, day, hour, minute, second)? - offset, nanos(frac)?))
}

/// A time of day and its zone's offset east of UTC in seconds.
fn split_zone(text: &str) -> Result<(&str, i64), String> {
    for suffix in ["Z", "z", "UTC", " UTC"] {
        if let Some(time) = text.strip_suffix(suffix) {
            return Ok((time.trim(), 0));
        }
    }
    if let Some(at) = text.rfind(['+', '-']) {
        let (time, zone) = (text[..at].trim(), &text[at + 1..]);
        let digits: String = zone.chars().filter(|c| *c != ':').collect();
        if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("'{zone}' is not a zone offset (HH:MM)"));
        }
        let (hours, minutes) = (number(&digits[..2], "zone hour")?, number(&digits[2..], "zone minute")?);
        if hours > 23 || minutes > 59 {
            return Err(format!("'{zone}' is not a zone offset (HH:MM)"));
        }
        let offset = hours * 3600 + minutes * 60;
        return Ok((time, if text.as_bytes()[at] == b'-' { -offset } else { offset }));
    }
    Ok((text, 0))
}

/// Nanoseconds of a decimal fraction (`"5"` → 500000000).
fn nanos(frac: &str) -> Result<i64, String> {
    if frac.is_empty() {
        return Ok(0);
    }
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    number(&digits, "fraction of a second")
}

/// touch's `-t [[CC]YY]MMDDhhmm[.ss]` (UTC); `year` when it has none.
fn parse_stamp(text: &str, year: i64) -> Result<TimeSpec, String> {
    if !text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err("not [[CC]YY]MMDDhhmm[.ss]".into());
    }
    let (main, second) = text.split_once('.').map_or((text, 0), |(m, s)| (m, number(s, "second").unwrap_or(-1)));
    if second < 0 || (text.contains('.') && text.len() - main.len() != 3) {
        return Err("seconds are .ss, two digits".into());
    }
    let n = |i: usize| number(&main[i..i + 2], "number");
    let (year, at) = match main.len() {
        8 => (year, 0),
        10 => {
            let yy = n(0)?;
            (if yy < 69 { 2000 + yy } else { 1900 + yy }, 2)
        }
        12 => (n(0)? * 100 + n(2)?, 4),
        _ => return Err("not [[CC]YY]MMDDhhmm[.ss]".into()),
    };
    Ok(TimeSpec::new(epoch(year, n(at)?, n(at + 2)?, n(at + 4)?, n(at + 6)?, second)?, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(spec: Result<TimeSpec, String>) -> (i64, i64) {
        let spec = spec.unwrap();
        (spec.tv_sec(), spec.tv_nsec())
    }

    #[test]
    fn dates_as_gnu_touch_reads_them_in_utc() {
        // `TZ=UTC date -d '2026-01-02 03:04:05' +%s` is 1767323045.
        for text in ["2026-01-02 03:04:05", "2026-01-02T03:04:05Z", "2026-01-02 03:04:05 UTC", "2026-01-02T05:04:05+02:00", "@1767323045"] {
            assert_eq!(secs(parse_date(text)), (1_767_323_045, 0), "{text}");
        }
        assert_eq!(secs(parse_date("2026-01-02 03:04:05.25")), (1_767_323_045, 250_000_000));
        assert_eq!(secs(parse_date("2026-01-02")), (1_767_312_000, 0));
        assert_eq!(secs(parse_date("2024-02-29 00:00")), (1_709_164_800, 0));
        assert_eq!(secs(parse_date("@-1.5")), (-2, 500_000_000));
        for bad in [
            "yesterday",
            "2026-02-30",
            "2026-01-02 25:00",
            "2026-13-01",
            "@x",
            "2026-01-02 03",
            "2026-01-02 03:04+1é1",
            "99999-01-01",
            "2026-01-02 03:04+99:99",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stamps_as_touch_t() {
        assert_eq!(secs(parse_stamp("202601020304.05", 2000)), (1_767_323_045, 0));
        assert_eq!(secs(parse_stamp("2601020304.05", 2000)), (1_767_323_045, 0));
        assert_eq!(secs(parse_stamp("01020304.05", 2026)), (1_767_323_045, 0));
        assert!(parse_stamp("0102030", 2026).is_err());
        assert!(parse_stamp("01020304.5", 2026).is_err());
        assert!(parse_stamp("a€bcde", 2026).is_err());
        assert!(now_year() >= 2026);
    }
}
