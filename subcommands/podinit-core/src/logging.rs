//! Log lines on stderr: `podinit <applet>: …` text for people, or one JSON object per line.
//!
//! Applets log with `tracing` macros and structured fields (`key = %k`); this module turns
//! each event into one line. Every text line starts with `podinit <applet>:` because
//! `kubectl logs` interleaves containers. Events from dependencies (AWS SDK, sqlx, …) are
//! shown only from `warn` up, unless `--log-level trace`. A text line is the message alone,
//! so messages are whole sentences; JSON carries the message and every field. Stdout is
//! left to data.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::{OnceLock, RwLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Registry;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context as LayerContext, Layer, SubscriberExt as _};
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt as _;

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
static FILTER: OnceLock<reload::Handle<Targets, Registry>> = OnceLock::new();

/// Sets up logging for `applet` with the settings of `args`: format, level and `--quiet`.
/// Called again for each step of a multi-step run, so every step logs as its own options say.
pub fn init(applet: &'static str, args: &GlobalArgs) {
    set_applet(applet);
    *FORMAT.write().unwrap_or_else(std::sync::PoisonError::into_inner) = args.log_format;
    let filter = targets(args);
    match FILTER.get() {
        Some(handle) => {
            let _ = handle.reload(filter);
        }
        None => {
            let (filter, handle) = reload::Layer::new(filter);
            if tracing_subscriber::registry().with(LineLayer.with_filter(filter)).try_init().is_ok() {
                let _ = FILTER.set(handle);
            }
        }
    }
}

/// podinit's own events from `--log-level` (`warn` with `--quiet`); dependencies' from
/// `warn` up (everything at `trace`).
fn targets(args: &GlobalArgs) -> Targets {
    let ours = if args.quiet { LogLevel::Warn.min(args.log_level) } else { args.log_level };
    let ours = level_filter(ours);
    let theirs = if args.log_level == LogLevel::Trace { LevelFilter::TRACE } else { LevelFilter::WARN.min(ours) };
    // vaultrs and rustify log every failed call at ERROR; podinit reports them itself, once.
    let echoes = if args.log_level == LogLevel::Trace { LevelFilter::TRACE } else { LevelFilter::OFF };
    Targets::new().with_target("podinit", ours).with_target("vaultrs", echoes).with_target("rustify", echoes).with_default(theirs)
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
            let _ = write!(out, "error: {}", err.message());
            for hint in err.hints() {
                out.push('\n');
                out.push_str(&text_prefix(s.applet));
                let _ = write!(out, "hint: {hint}");
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

struct LineLayer;

impl<S: Subscriber> Layer<S> for LineLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: LayerContext<'_, S>) {
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
                out.push_str(&fields.message);
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
    fn prefix_names_the_applet() {
        assert_eq!(text_prefix("sysctl"), "podinit sysctl: ");
        assert_eq!(text_prefix(""), "podinit: ");
    }
}
