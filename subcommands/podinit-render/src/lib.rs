//! `podinit render`: config files from templates, the job charts do with envsubst, sed,
//! dockerize or gomplate in a shell image.
//!
//! What it adds to those:
//! - strict by default: a missing key or an unset variable fails the pod with the template's
//!   name, line and the name that was missing, instead of an empty string in a config file;
//! - nothing is written unless every template rendered: all output is rendered in memory
//!   first, then each file is written atomically (temp file, synced, renamed);
//! - unchanged output is not rewritten: a restarted pod leaves the file, its inode and mtime
//!   alone, so an app watching it is not woken;
//! - a directory of templates (a mounted ConfigMap) renders into a directory, the kubelet's
//!   `..data` layout skipped, files named `_*` shared as `define`s (Helm's `_helpers.tpl`);
//! - no directory below DEST is reached through a link planted in the volume.
//!
//! The engines live in `podinit-template`, which vault-fetch shares.
//!
//! ```yaml
//! initContainers:
//!   - name: config
//!     image: podinit
//!     args: ["render", "/templates/app.yaml", "/config/app.yaml"]
//!     env: [{ name: DB_HOST, value: db.internal }]
//!     volumeMounts: [{ name: templates, mountPath: /templates }, { name: config, mountPath: /config }]
//! ```

pub mod envsubst;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use podinit_core::fs::{FileOptions, root::Dir};
use podinit_core::{Context, Error, Kind};
use podinit_template::{Engine, TemplateError, Value, Variables};

/// Render config files from templates: Go's text/template (Helm, consul-template and Vault
/// Agent syntax) or envsubst's $VAR forms.
///
/// Strict: a missing key or an unset variable is an error naming the template, the line and
/// the name, and then nothing is written. SRC is a file or a directory of templates (a
/// ConfigMap); DEST a file or a directory. Output is written atomically, and left alone when
/// it did not change. In Go templates `.Env.NAME` and `env "NAME"` read the environment,
/// `.Data` the files of --data-dir, `file "PATH"` a file.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Examples:
  podinit render /templates/app.yaml /config/app.yaml
  podinit render --syntax envsubst --variables '$HOST $PORT' nginx.conf.tmpl /etc/nginx/nginx.conf
  podinit render --data-dir /vault/secrets /templates/ /config/
  podinit render --strip-suffix .tmpl /templates/ /config/")]
pub struct Args {
    /// Template syntax.
    #[arg(long, env = "PODINIT_RENDER_SYNTAX", value_enum, default_value = "go")]
    pub syntax: Syntax,

    /// envsubst: replace only these variables (GNU envsubst's SHELL-FORMAT, e.g. '$HOST ${PORT}');
    /// every other `$`, `$$` included, stays as written.
    #[arg(long, env = "PODINIT_RENDER_VARIABLES", value_name = "SHELL-FORMAT")]
    pub variables: Option<String>,

    /// go: a directory whose files are `.Data.NAME` (their content; a subdirectory is a nested
    /// map), e.g. vault-fetch's output; repeatable.
    #[arg(long, env = "PODINIT_RENDER_DATA_DIR", value_name = "DIR", value_delimiter = ':')]
    pub data_dir: Vec<PathBuf>,

    /// Render a missing key or an unset variable as empty text instead of failing.
    #[arg(long, env = "PODINIT_RENDER_ALLOW_MISSING")]
    pub allow_missing: bool,

    /// go: action delimiters other than {{ and }}, e.g. '[[,]]' (for a template that is itself
    /// a Helm template).
    #[arg(long, env = "PODINIT_RENDER_DELIMS", value_name = "LEFT,RIGHT")]
    pub delims: Option<String>,

    /// Directory mode: drop this suffix from output names (`app.yaml.tmpl` → `app.yaml`).
    #[arg(long, env = "PODINIT_RENDER_STRIP_SUFFIX", value_name = "SUFFIX")]
    pub strip_suffix: Option<String>,

    /// Mode of written files (octal); 0600 or 0400 for files holding secrets.
    #[arg(long, env = "PODINIT_RENDER_MODE", value_name = "OCTAL", default_value = "0644", value_parser = podinit_core::args::parse_mode)]
    pub mode: u32,

    /// Owner (numeric uid) of written files.
    #[arg(long, env = "PODINIT_RENDER_UID", value_name = "UID")]
    pub uid: Option<u32>,

    /// Group (numeric gid) of written files.
    #[arg(long, env = "PODINIT_RENDER_GID", value_name = "GID")]
    pub gid: Option<u32>,

    /// Template file or directory; `-` reads standard input.
    #[arg(value_name = "SRC")]
    pub src: PathBuf,

    /// Output file or directory (an existing directory, or a path ending in `/`); `-` writes
    /// standard output.
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,
}

/// Template syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Syntax {
    /// Go's text/template: {{ .Env.HOST }}, {{ if }}, {{ range }}, pipelines, Sprig and
    /// consul-template functions.
    Go,
    /// envsubst: $VAR, ${VAR}, ${VAR:-default}, ${VAR:?message}, $$.
    Envsubst,
}

/// A template read from SRC, and where its output goes (relative to DEST in directory mode).
struct Source {
    /// Shown in errors: the file's path (`stdin` for `-`).
    name: String,
    text: String,
    /// Output path below DEST (directory mode), or `None` for DEST itself.
    out: Option<PathBuf>,
}

/// Runs `podinit render` to completion.
pub fn run(ctx: &Context, args: Args) -> Result<(), Error> {
    let started = std::time::Instant::now();
    let env: BTreeMap<String, String> =
        std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect();
    let dir_mode = args.src != Path::new("-") && args.src.is_dir();
    let sources = read_sources(&args, dir_mode)?;
    ctx.check_shutdown()?;
    let rendered = render_all(ctx, &args, env, &sources)?;
    if args.dest == Path::new("-") {
        let mut out = std::io::stdout().lock();
        for (_, text) in &rendered {
            out.write_all(text.as_bytes()).map_err(|e| Error::new(Kind::Failed, anyhow::anyhow!("writing standard output: {e}")))?;
        }
        return Ok(());
    }
    let options = FileOptions { mode: args.mode, uid: args.uid, gid: args.gid };
    let (mut changed, mut unchanged) = (0usize, 0usize);
    for (dest, text) in targets(&args, dir_mode, &sources, &rendered)? {
        ctx.check_shutdown()?;
        if podinit_core::fs::write_atomic(&dest, text.as_bytes(), options).map_err(|e| podinit_core::fs::explain_write(e, &dest))? {
            tracing::debug!("{}: written", dest.display());
            changed += 1;
        } else {
            tracing::debug!("{}: unchanged", dest.display());
            unchanged += 1;
        }
    }
    tracing::info!(changed, unchanged, "{changed} written, {unchanged} unchanged in {:.2?}", started.elapsed());
    Ok(())
}

fn read_sources(args: &Args, dir_mode: bool) -> Result<Vec<Source>, Error> {
    if args.src == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Error::usage(format!("reading the template from standard input: {}", podinit_core::redact::io_reason(&e))))?;
        return Ok(vec![Source { name: "stdin".into(), text, out: None }]);
    }
    if !dir_mode {
        let text = read_text(&args.src)?;
        return Ok(vec![Source { name: args.src.display().to_string(), text, out: None }]);
    }
    let mut sources = Vec::new();
    for (path, rel) in files_below(&args.src)? {
        let text = read_text(&path)?;
        let mut out = rel.clone();
        if let Some(suffix) = &args.strip_suffix
            && let Some(stem) = rel.file_name().and_then(|n| n.as_bytes().strip_suffix(suffix.as_bytes()))
            && !stem.is_empty()
        {
            out.set_file_name(std::ffi::OsStr::from_bytes(stem));
        }
        // `_helpers.tpl`: shared `define`s, not an output (Helm's convention).
        let partial = rel.file_name().is_some_and(|n| n.as_bytes().starts_with(b"_"));
        sources.push(Source { name: path.display().to_string(), text, out: (!partial).then_some(out) });
    }
    if sources.is_empty() {
        return Err(Error::usage(format!("{}: no template files in the directory", args.src.display()))
            .with_hint("mount the ConfigMap that holds the templates there"));
    }
    Ok(sources)
}

fn read_text(path: &Path) -> Result<String, Error> {
    let bytes = std::fs::read(path).map_err(|e| {
        Error::usage(format!("{}: {}", path.display(), podinit_core::redact::io_reason(&e)))
            .with_hint("mount the ConfigMap that holds the templates there")
    })?;
    String::from_utf8(bytes).map_err(|_| Error::usage(format!("{}: not UTF-8 text", path.display())))
}

/// The regular files below `root` (links followed, as a ConfigMap's names are links), sorted,
/// with their paths relative to `root`. The kubelet's own `..data` and `..2024_…` entries are
/// skipped.
fn files_below(root: &Path) -> Result<Vec<(PathBuf, PathBuf)>, Error> {
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let entries =
            std::fs::read_dir(&dir).map_err(|e| Error::usage(format!("{}: {}", dir.display(), podinit_core::redact::io_reason(&e))))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::usage(format!("{}: {}", dir.display(), podinit_core::redact::io_reason(&e))))?;
            let name = entry.file_name();
            if name.as_bytes().starts_with(b"..") {
                continue;
            }
            let path = entry.path();
            let meta = std::fs::metadata(&path)
                .map_err(|e| Error::usage(format!("{}: {}", path.display(), podinit_core::redact::io_reason(&e))))?;
            if meta.is_dir() {
                stack.push(rel.join(&name));
            } else if meta.is_file() {
                found.push((path, rel.join(&name)));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Renders every source that has an output; nothing is written until all of them rendered.
fn render_all(ctx: &Context, args: &Args, env: BTreeMap<String, String>, sources: &[Source]) -> Result<Vec<(usize, String)>, Error> {
    let mut rendered = Vec::with_capacity(sources.len());
    match args.syntax {
        Syntax::Envsubst => {
            if args.delims.is_some() || !args.data_dir.is_empty() {
                return Err(Error::usage("--delims and --data-dir are for --syntax go"));
            }
            let only = args.variables.as_deref().map(Variables::parse).transpose().map_err(|e| Error::usage(format!("--variables {e}")))?;
            for (i, source) in sources.iter().enumerate().filter(|(_, s)| s.out.is_some() || sources.len() == 1) {
                let text = podinit_template::envsubst(&source.name, &source.text, &env, only.as_ref(), args.allow_missing)
                    .map_err(template_error)?;
                rendered.push((i, text));
            }
        }
        Syntax::Go => {
            if args.variables.is_some() {
                return Err(Error::usage("--variables is for --syntax envsubst"));
            }
            let mut data = BTreeMap::new();
            data.insert("Env".to_owned(), Value::map(env.iter().map(|(k, v)| (k.clone(), Value::str(v.as_str()))).collect()));
            data.insert("Data".to_owned(), data_dirs(&args.data_dir)?);
            let data = Value::map(data);
            let mut engine = Engine::new(env);
            engine.stop_check(ctx.stop_check());
            engine.allow_missing(args.allow_missing);
            if let Some(delims) = &args.delims {
                let (left, right) = delims
                    .split_once(',')
                    .filter(|(l, r)| !l.is_empty() && !r.is_empty())
                    .ok_or_else(|| Error::usage(format!("--delims {delims:?}: expected LEFT,RIGHT, e.g. '[[,]]'")))?;
                engine.delims(left, right);
            }
            for source in sources {
                engine.add(&source.name, &source.text).map_err(template_error)?;
            }
            for (i, source) in sources.iter().enumerate().filter(|(_, s)| s.out.is_some() || sources.len() == 1) {
                // Stopped by the deadline or a signal: exit 124 or 143, not a template error.
                let text =
                    engine.render(&source.name, &data).map_err(|e| ctx.check_shutdown().err().unwrap_or_else(|| template_error(e)))?;
                rendered.push((i, text));
            }
        }
    }
    Ok(rendered)
}

fn template_error(err: TemplateError) -> Error {
    Error::usage(err).with_hint("fix the template, or set what it names (see docs/render.md for --allow-missing and default)")
}

/// `.Data`: the files of the --data-dir directories by name (nested maps for subdirectories).
fn data_dirs(dirs: &[PathBuf]) -> Result<Value, Error> {
    let mut map: BTreeMap<String, Value> = BTreeMap::new();
    for dir in dirs {
        for (path, rel) in files_below(dir)? {
            let bytes = std::fs::read(&path)
                .map_err(|e| Error::usage(format!("--data-dir {}: {}", path.display(), podinit_core::redact::io_reason(&e))))?;
            // A binary file (a keystore next to the secrets) fails only a template that uses it.
            let value = match String::from_utf8(bytes) {
                Ok(text) => Value::str(text),
                Err(_) => Value::Missing(format!("{} is not UTF-8 text (in .Data)", rel.display()).into()),
            };
            let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            insert(&mut map, &parts, value)
                .map_err(|()| Error::usage(format!("--data-dir {}: {} is also in another --data-dir", dir.display(), rel.display())))?;
        }
    }
    Ok(Value::map(map))
}

fn insert(map: &mut BTreeMap<String, Value>, parts: &[String], value: Value) -> Result<(), ()> {
    match parts {
        [] => Err(()),
        [last] => match map.insert(last.clone(), value) {
            None => Ok(()),
            Some(_) => Err(()),
        },
        [first, rest @ ..] => {
            let entry = map.entry(first.clone()).or_insert_with(|| Value::map(BTreeMap::new()));
            let Value::Map(inner) = entry else { return Err(()) };
            insert(std::rc::Rc::make_mut(inner), rest, value)
        }
    }
}

/// Where each rendered text goes. In directory mode the directories below DEST are made (or
/// opened) without following links, so a link planted in the volume cannot send output
/// elsewhere.
fn targets<'a>(args: &Args, dir_mode: bool, sources: &[Source], rendered: &'a [(usize, String)]) -> Result<Vec<(PathBuf, &'a str)>, Error> {
    let dest_is_dir = args.dest.is_dir() || args.dest.as_os_str().as_bytes().ends_with(b"/");
    if !dir_mode {
        let Some((_, text)) = rendered.first() else { return Ok(Vec::new()) };
        let dest = if dest_is_dir {
            let name = args.src.file_name().filter(|_| args.src != Path::new("-")).ok_or_else(|| {
                Error::usage(format!(
                    "{} is a directory: name the output file when the template comes from standard input",
                    args.dest.display()
                ))
            })?;
            let name = match &args.strip_suffix {
                Some(suffix) => {
                    name.as_bytes().strip_suffix(suffix.as_bytes()).filter(|s| !s.is_empty()).map_or(name, std::ffi::OsStr::from_bytes)
                }
                None => name,
            };
            args.dest.join(name)
        } else {
            args.dest.clone()
        };
        return Ok(vec![(dest, text.as_str())]);
    }
    let mut taken = BTreeMap::new();
    for (i, _) in rendered {
        let Some(rel) = &sources[*i].out else { continue };
        if let Some(other) = taken.insert(rel.clone(), &sources[*i].name) {
            return Err(Error::usage(format!("{} and {other} would both write {}", sources[*i].name, rel.display()))
                .with_hint("drop --strip-suffix, or rename one of the templates"));
        }
    }
    if args.dest.exists() && !args.dest.is_dir() {
        return Err(Error::usage(format!("{} is not a directory, and SRC is a directory of templates", args.dest.display())));
    }
    std::fs::create_dir_all(&args.dest)
        .map_err(|e| podinit_core::fs::explain_write(anyhow::Error::from(e).context("creating the directory"), &args.dest))?;
    let root = Dir::open(&args.dest)
        .with_context(|| format!("opening {}", args.dest.display()))
        .map_err(|e| podinit_core::fs::explain_write(e, &args.dest))?;
    let mut out = Vec::with_capacity(rendered.len());
    for (i, text) in rendered {
        let Some(rel) = &sources[*i].out else { continue };
        if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
            let parts: Vec<&std::ffi::OsStr> = parent.iter().collect();
            root.create_dir_all(&parts, 0o755).map_err(|e| podinit_core::fs::explain_write(e, &args.dest.join(parent)))?;
        }
        out.push((args.dest.join(rel), text.as_str()));
    }
    Ok(out)
}
