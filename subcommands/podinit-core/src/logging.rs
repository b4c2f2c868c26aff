//! Log lines on stderr: `podinit <applet>: …` text for people, or one JSON object per line.
//!
//! Applets log with `tracing` macros and structured fields (`key = %k`); this module turns
//! each event into one line. Every text line starts with `podinit <applet>:` because
//! `kubectl logs` interleaves containers. Events from dependencies (AWS SDK, sqlx, hyper, …)
//! are shown only from `warn` up, whatever the level: their debug and trace events can carry
//! request bodies and headers (a Vault login, a bearer token). A text line is the message
//! alone, so messages are whole sentences; JSON carries the message and every field. Control
//! characters in a text line (a newline in a file name) are escaped by [`printable`], so no
//! input can forge a line. Stdout is left to data.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::RwLock;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

use crate::args::{GlobalArgs, LogFormat, LogLevel};
use crate::error::Error;

#[derive(Debug, Clone, Copy)]
struct Settings {
    applet: &'static str,
    format: LogFormat,
}

/// The format of the lines: set by each step of a run.
static FORMAT: RwLock<LogFormat> = RwLock::new(LogFormat::Text);

/// The applet whose name prefixes each line: changes between the steps of one run.
static APPLET: RwLock<&'static str> = RwLock::new("");

/// The level filter, replaced when a step asks for another level.
static FILTER: RwLock<Filter> = RwLock::new(Filter { ours: LevelFilter::OFF, echoes: LevelFilter::OFF, theirs: LevelFilter::OFF });

/// Sets up logging for `applet` with the settings of `args`: format, level and `--quiet`.
/// Called again for each step of a multi-step run, so every step logs as its own options say.
pub fn init(applet: &'static str, args: &GlobalArgs) {
    set_applet(applet);
    *FORMAT.write().unwrap_or_else(std::sync::PoisonError::into_inner) = args.log_format;
    let filter = Filter::new(args);
    let changed = {
        let mut current = FILTER.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::replace(&mut *current, filter) != filter
    };
    // The first call installs the subscriber; later ones that change the levels make tracing
    // ask it again which callsites are enabled.
    if tracing::subscriber::set_global_default(LineSubscriber).is_err() && changed {
        tracing::callsite::rebuild_interest_cache();
    }
}

/// podinit's own events from `--log-level` (`warn` with `--quiet`); dependencies' from
/// `warn` up, never lower (not even at `trace`: a client's trace events can show a request's
/// body or headers). vaultrs and rustify log every failed call at ERROR; podinit reports them
/// itself, once, so theirs are off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Filter {
    ours: LevelFilter,
    echoes: LevelFilter,
    theirs: LevelFilter,
}

impl Filter {
    fn new(args: &GlobalArgs) -> Self {
        let ours = if args.quiet { LogLevel::Warn.min(args.log_level) } else { args.log_level };
        let ours = level_filter(ours);
        let theirs = LevelFilter::WARN.min(ours);
        let echoes = LevelFilter::OFF;
        Self { ours, echoes, theirs }
    }

    /// The level for events of `target`: by its crate, the part before the first `::`.
    fn level_for(&self, target: &str) -> LevelFilter {
        match target.split("::").next().unwrap_or(target) {
            t if t.starts_with("podinit") => self.ours,
            "vaultrs" | "rustify" => self.echoes,
            _ => self.theirs,
        }
    }

    fn enables(&self, meta: &Metadata<'_>) -> bool {
        self.level_for(meta.target()) >= *meta.level()
    }

    fn max(&self) -> LevelFilter {
        self.ours.max(self.echoes).max(self.theirs)
    }
}

fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    }
}

fn filter() -> Filter {
    *FILTER.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Names `applet` in the prefix of the lines that follow.
pub fn set_applet(applet: &'static str) {
    *APPLET.write().unwrap_or_else(std::sync::PoisonError::into_inner) = applet;
}

fn settings() -> Settings {
    let applet = *APPLET.read().unwrap_or_else(std::sync::PoisonError::into_inner);
    Settings { applet, format: *FORMAT.read().unwrap_or_else(std::sync::PoisonError::into_inner) }
}

/// Reports an applet's failure: an `error:` line, then one `hint:` line per hint.
/// Shown whatever the log level. In JSON, one object with `kind`, `exit_code` and `hints`.
pub fn report_error(err: &Error) {
    let s = settings();
    match s.format {
        LogFormat::Text => {
            let mut out = text_prefix(s.applet);
            let _ = write!(out, "error: {}", printable(&err.message()));
            for hint in err.hints() {
                out.push('\n');
                out.push_str(&text_prefix(s.applet));
                let _ = write!(out, "hint: {}", printable(hint));
            }
            emit(&out);
        }
        LogFormat::Json => {
            let mut obj = json_base(s.applet, "error", &err.message());
            obj.insert("kind".into(), err.kind().as_str().into());
            obj.insert("exit_code".into(), err.kind().exit_code().into());
            if !err.hints().is_empty() {
                obj.insert("hints".into(), err.hints().into());
            }
            emit(&serde_json::Value::Object(obj).to_string());
        }
    }
}

/// `text` with its control characters escaped (`\n`, `\r`, `\x1b`…; a tab kept): what goes
/// into one line of a log, or the termination message, whatever a file name, an archive
/// entry or a server's answer holds. The one place podinit makes foreign text printable.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    // C0, DEL and C1 controls, the line and paragraph separators, and the bidirectional
    // overrides and isolates (which make a line read otherwise than it is).
    let control =
        |c: char| (c.is_control() && c != '\t') || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !text.chars().any(control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if control(c) && u32::from(c) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if control(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `podinit <applet>: ` (or `podinit: ` before an applet is known).
pub fn text_prefix(applet: &str) -> String {
    if applet.is_empty() { "podinit: ".to_owned() } else { format!("podinit {applet}: ") }
}

fn json_base(applet: &str, level: &str, message: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut obj = serde_json::Map::new();
    obj.insert("time".into(), humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string().into());
    obj.insert("level".into(), level.into());
    if !applet.is_empty() {
        obj.insert("applet".into(), applet.into());
    }
    obj.insert("message".into(), message.into());
    obj
}

/// Writes one finished line (or several) to stderr, keeping clear of a progress bar.
fn emit(line: &str) {
    crate::progress::suspend_bar(|| {
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "{line}");
    });
}

/// The one subscriber: events that pass the [`Filter`] become lines. Spans (the SDKs open
/// some) are given an id and otherwise ignored: a line is the event's message alone. Not
/// tracing-subscriber's registry, whose span slab alone allocated and zeroed 32 KiB at every
/// start (8 of a start's page faults) for spans podinit never shows.
struct LineSubscriber;

impl Subscriber for LineSubscriber {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if filter().enables(meta) { Interest::always() } else { Interest::never() }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(filter().max())
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        filter().enables(meta)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let s = settings();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = *event.metadata().level();
        let line = match s.format {
            LogFormat::Text => {
                let mut out = text_prefix(s.applet);
                out.push_str(match level {
                    Level::ERROR => "error: ",
                    Level::WARN => "warning: ",
                    Level::INFO => "",
                    Level::DEBUG => "debug: ",
                    Level::TRACE => "trace: ",
                });
                out.push_str(&printable(&fields.message));
                out
            }
            LogFormat::Json => {
                let mut obj = json_base(s.applet, &level.as_str().to_ascii_lowercase(), &fields.message);
                if !event.metadata().target().starts_with("podinit") {
                    obj.insert("target".into(), event.metadata().target().into());
                }
                for (name, value) in fields.pairs {
                    obj.insert(name.to_owned(), value);
                }
                serde_json::Value::Object(obj).to_string()
            }
        };
        emit(&line);
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    pairs: Vec<(&'static str, serde_json::Value)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.pairs.push((field.name(), value.into()));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.pairs.push((field.name(), value.into()));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.pairs.push((field.name(), value.into()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.pairs.push((field.name(), value.into()));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.pairs.push((field.name(), value.into()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.pairs.push((field.name(), format!("{value:?}").into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_by_crate() {
        let args = |log_level, quiet| GlobalArgs { log_level, quiet, ..GlobalArgs::default() };
        let f = Filter::new(&args(LogLevel::Info, false));
        assert_eq!(f.level_for("podinit_s3_get::object"), LevelFilter::INFO);
        assert_eq!(f.level_for("podinit"), LevelFilter::INFO);
        assert_eq!(f.level_for("aws_smithy_runtime::client"), LevelFilter::WARN);
        assert_eq!(f.level_for("vaultrs::api"), LevelFilter::OFF);
        let f = Filter::new(&args(LogLevel::Info, true));
        assert_eq!((f.level_for("podinit_fs"), f.level_for("hyper")), (LevelFilter::WARN, LevelFilter::WARN));
        let f = Filter::new(&args(LogLevel::Error, false));
        assert_eq!(f.level_for("sqlx::query"), LevelFilter::ERROR, "dependencies never louder than podinit");
        let f = Filter::new(&args(LogLevel::Trace, false));
        assert_eq!(
            (f.level_for("rustify"), f.level_for("hyper_util"), f.level_for("podinit_http_get"), f.max()),
            (LevelFilter::OFF, LevelFilter::WARN, LevelFilter::TRACE, LevelFilter::TRACE),
            "a dependency's trace events can carry request bodies and headers: never shown"
        );
    }

    #[test]
    fn control_characters_never_start_a_line() {
        assert_eq!(printable("plain /data/a b\tc"), "plain /data/a b\tc");
        assert_eq!(printable("x\npodinit chown: error: forged\r\u{1b}[2J\u{85}"), "x\\npodinit chown: error: forged\\r\\x1b[2J\\x85");
        assert_eq!(printable("a\u{2028}b\u{202e}c"), "a\\u{2028}b\\u{202e}c");
    }

    #[test]
    fn prefix_names_the_applet() {
        assert_eq!(text_prefix("sysctl"), "podinit sysctl: ");
        assert_eq!(text_prefix(""), "podinit: ");
    }
}
