//! podinit's template engine against Go's own text/template (Go 1.19, Debian's golang-go):
//! the same templates and data through both, the outputs compared byte for byte, and the
//! templates one rejects rejected by the other. `support/gotemplate` is the Go side.
//!
//! Left out on purpose, because podinit differs by design (docs/render.md, "Strictness"):
//! a missing key under `if`/`with` (false in podinit, an error in Go's missingkey=error),
//! `index` of a missing key (a missing value, not Go's zero value), nil printed (nothing,
//! not `<nil>`), and `range` over an integer (Go 1.22's, not in Go 1.19).

use std::path::{Path, PathBuf};
use std::process::Command;

use podinit_template::{Engine, Value};

const DATA: &str = r#"{"Name": "app", "Items": ["a", "b", "c"], "Map": {"k2": 2, "k1": 1, "nested": {"x": "y"}},
  "N": 3, "F": 2.5, "T": true, "Empty": "", "Zero": 0, "List": [],
  "Users": [{"name": "ann", "admin": true}, {"name": "bob", "admin": false}]}"#;

const CASES: &[&str] = &[
    "{{.Name}}",
    "{{.Map.nested.x}}",
    "{{range .Items}}[{{.}}]{{end}}",
    "{{range $i, $e := .Items}}{{$i}}:{{$e}},{{end}}",
    "{{range $k, $v := .Map}}{{$k}}={{$v}};{{end}}",
    "{{range $k, $v := .Map}}{{$k}}{{end}}",
    "{{range .List}}x{{else}}empty{{end}}",
    "{{if .T}}yes{{else}}no{{end}}",
    "{{if .Empty}}a{{else if .Zero}}b{{else}}c{{end}}",
    "{{with .Map.nested}}{{.x}}{{end}}",
    "{{with .Empty}}x{{else}}none{{end}}",
    "{{with $x := .Map.k1}}{{$x}}{{end}}",
    "{{ .Items }} {{ .Map }} {{ .T }} {{ .F }} {{ .Zero }}",
    "{{len .Items}} {{len .Name}} {{len .Map}} {{ len (slice .Items 0 2) }}",
    "{{index .Items 1}} {{index .Map \"k1\"}} {{index .Users 0 \"name\"}} {{ index .Map \"nested\" \"x\" }}",
    "{{slice .Name 1 2}} {{slice .Items 1}}",
    "{{printf \"%d-%s-%v-%q-%5.1f|%-5s|%05d|%x|%X|%o|%t\" .N .Name .Items .Name .F .Name .N 255 255 8 .T}}",
    "{{printf \"%v %v %6.2f|%-8q|%+d\" .F .N .F .Name .N}}",
    "{{printf \"%s %d\" .Name}}",
    "{{printf \"%s\" .Name .N}}",
    "{{print .N .F \"x\" .Name 1}}",
    "{{println .Name .N}}",
    "{{eq .N 3}} {{eq .Name \"x\" \"app\"}} {{ne .N 2}} {{lt .N 4}} {{le .F 2.5}} {{gt .Name \"aaa\"}} {{ge .N 3}} {{eq .F 2.5}}",
    "{{and .T .N .Name}} {{or .Empty .Zero .Name}} {{not .T}} {{and .Empty .N}} {{or .Zero}}",
    "{{html \"<a href='x'>&\\\"</a>\"}}",
    "{{js \"it's \\\"q\\\" <b> & =\"}}",
    "{{urlquery \"a b&c=d/é\"}}",
    "{{- /* comment */ -}} x {{- 1 -}} y",
    "a {{- \"  b  \" -}} c\n {{- 2}}",
    "{{$x := 1}}{{range .Items}}{{$x = .}}{{end}}{{$x}}",
    "{{define \"T\"}}<{{.}}>{{end}}{{template \"T\" .Name}}{{template \"T\" .N}}",
    "{{block \"B\" .Items}}{{range .}}{{.}}{{end}}{{end}}",
    "{{range .Items}}{{if eq . \"b\"}}{{continue}}{{end}}{{.}}{{end}}|{{range .Items}}{{if eq . \"b\"}}{{break}}{{end}}{{.}}{{end}}",
    "{{range .Users}}{{if .admin}}{{.name}} is admin{{end}}{{end}}",
    "{{(index .Users 1).name}}",
    "{{\"a\" | printf \"%s%s\" \"b\"}}",
    "{{.Name | printf \"%q\" | printf \"%s!\"}}",
    "{{ 0x1F }} {{ -5 }} {{ 1e3 }} {{ 'a' }} {{ 0o17 }} {{ 1_000 }} {{ 017 }} {{ 1.5e-7 }}",
    "{{ 1000000.5 }} {{ 123456.7 }} {{ 1e21 }} {{ 0.0001 }} {{ 0.00001 }} {{ -2.5e8 }} {{ printf \"%v %g\" 1e6 1234567.5 }}",
    "{{ \"esc\\t\\\"x\\\"\\u00e9\" }} {{ `raw\\n` }}",
    "{{ $ := 1 }}",
    "{{ range $i, $u := .Users }}{{ $i }}{{ $u.name }}{{ $.Name }}{{ end }}",
    "{{ with .Users }}{{ range . }}{{ .name }}{{ end }}{{ end }}",
    // Both must refuse these.
    "{{ printf \"%s\" .Missing }}",
    "{{ .Name.Foo }}",
    "{{ nosuch }}",
    "{{ if }}x{{ end }}",
    "{{ range .Items }}",
    "{{ end }}",
    "{{ .Items | len 1 }}",
    "{{ template \"nope\" }}",
    "{{ $undefined }}",
    "{{ index .Items 9 }}",
    "{{ 1 | .Name }}",
    "{{ \"unterminated }}",
    "{{ eq .Name 1 }}",
];

/// Builds support/gotemplate with the installed Go (scripts/ensure-tools installs golang-go).
fn gotemplate(dir: &Path) -> PathBuf {
    let bin = dir.join("gotemplate");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/gotemplate");
    let out = Command::new("go")
        .arg("build")
        .arg("-o")
        .arg(&bin)
        .arg(".")
        .current_dir(&src)
        .env("GOFLAGS", "-mod=mod")
        .env("GOCACHE", dir.join("gocache"))
        .env("HOME", dir)
        .output()
        .unwrap_or_else(|e| panic!("go build (scripts/ensure-tools installs golang-go): {e}"));
    assert!(out.status.success(), "go build: {}", String::from_utf8_lossy(&out.stderr));
    bin
}

#[test]
fn the_engine_renders_as_go_text_template_does() {
    let dir = tempfile::tempdir().unwrap();
    let go = gotemplate(dir.path());
    std::fs::write(dir.path().join("data.json"), DATA).unwrap();
    let data = Value::from_json(&serde_json::from_str(DATA).unwrap());
    let mut differ = Vec::new();
    let (mut same, mut both_refuse) = (0, 0);
    for (i, case) in CASES.iter().enumerate() {
        let file = dir.path().join(format!("t{i}"));
        std::fs::write(&file, case).unwrap();
        let out = Command::new(&go).arg("-strict").arg("-data").arg(dir.path().join("data.json")).arg(&file).output().unwrap();
        let theirs = out.status.success().then(|| String::from_utf8(out.stdout).unwrap());
        let mut engine = Engine::new(Default::default());
        let ours = engine.add("t", case).and_then(|()| engine.render("t", &data)).ok();
        match (&ours, &theirs) {
            (Some(a), Some(b)) if a == b => same += 1,
            (None, None) => both_refuse += 1,
            _ => {
                differ.push(format!("{case:?}\n  podinit: {ours:?}\n  go:      {theirs:?} {}", String::from_utf8_lossy(&out.stderr).trim()))
            }
        }
    }
    assert!(differ.is_empty(), "{} of {} cases differ from Go:\n{}", differ.len(), CASES.len(), differ.join("\n"));
    assert!(same >= 40 && both_refuse >= 10, "{same} rendered the same, {both_refuse} refused by both");
}
