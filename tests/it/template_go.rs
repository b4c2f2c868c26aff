//! podinit's template engine against Go's own text/template (Go 1.19, Debian's golang-go):
//! the same templates and data through both, the outputs compared byte for byte, and the
//! templates one rejects rejected by the other. `support/gotemplate` is the Go side.
//!
//! Left out on purpose, because podinit differs by design (docs/render.md, "Strictness"):
//! a missing key under `if`/`with` (false in podinit, an error in Go's missingkey=error),
//! `index` of a missing key (a missing value, not Go's zero value), a null value printed alone
//! (nothing, not `<no value>`), and `range` over an integer (Go 1.22's, not in Go 1.19).
//! `go_own_test_tables_pass_through_the_engine` runs Go's own test tables (`support/gotables`).

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
    "{{js \"a\\nb\\tc\\x01\\x7f \\u00a0\\u200b\\u2028\\ufeff\\ue000 é😀 \\u00ad\\u0600\"}}",
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

/// A text field of one of `support/gotables`' cases; `None` for JSON null (an error).
fn text(case: &serde_json::Value, field: &str) -> Option<String> {
    case[field].as_str().map(str::to_owned)
}

/// Where podinit differs from Go on Go's own tables, on purpose: `(table, case name, why)`.
/// docs/render.md lists each; the test fails when one of these no longer differs.
const GO_TABLE_DIFFERENCES: &[(&str, &str, &str)] = &[
    ("exec_test.go execTests", "empty nil", "a null value printed alone writes nothing (Helm's output), not Go's <no value>"),
    ("exec_test.go cmpTests", "eq 2 2.0", "an int and a float compare as numbers: data files spell numbers, Helm's values are all float64"),
    ("exec_test.go execTests", "if 1.5i", COMPLEX),
    ("exec_test.go execTests", "printf complex", COMPLEX),
    ("exec_test.go execTests", "with 1.5i", COMPLEX),
    ("exec_test.go execTests", "bug16j", COMPLEX),
    ("exec_test.go cmpTests", "eq 1+2i 1+2i", COMPLEX),
    ("exec_test.go cmpTests", "eq 1+2i 1+3i", COMPLEX),
    ("exec_test.go cmpTests", "ne 1+2i 1+2i", COMPLEX),
    ("exec_test.go cmpTests", "ne 1+2i 1+3i", COMPLEX),
    ("parse_test.go parseTests", "constants", COMPLEX),
];

const COMPLEX: &str = "complex number literals are refused (no data file holds complex numbers)";

/// Runs the test tables of the installed Go's text/template (exec_test.go's execTests and
/// cmpTests, multi_test.go's, parse_test.go's parse and error tables) by adding a file to the
/// package with `go test -overlay`: each case's data becomes JSON, and podinit must do what
/// text/template does with that JSON. Cases whose JSON form changes Go's own answer (methods,
/// Go types, the tests' own functions) are left out and counted.
#[test]
fn go_own_test_tables_pass_through_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let goroot = Command::new("go").args(["env", "GOROOT"]).output().expect("go (scripts/ensure-tools installs golang-go)");
    let goroot = PathBuf::from(String::from_utf8(goroot.stdout).unwrap().trim());
    let pkg = goroot.join("src/text/template");
    let support = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/gotables");
    let overlay = serde_json::json!({"Replace": {
        pkg.join("podinit_dump_test.go").to_str().unwrap(): support.join("template_dump_test.go"),
        pkg.join("parse/podinit_dump_test.go").to_str().unwrap(): support.join("parse_dump_test.go"),
    }});
    std::fs::write(dir.path().join("overlay.json"), overlay.to_string()).unwrap();
    let (exec_json, parse_json) = (dir.path().join("exec.json"), dir.path().join("parse.json"));
    let out = Command::new("go")
        .args(["test", "-vet=off", "-count=1", "-run", "TestPodinitDump", "-overlay"])
        .arg(dir.path().join("overlay.json"))
        .args(["text/template", "text/template/parse"])
        .env("PODINIT_GO_TABLES", &exec_json)
        .env("PODINIT_GO_PARSE_TABLES", &parse_json)
        .env("GOCACHE", dir.path().join("gocache"))
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "go test: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    let mut differ = Vec::new();
    let (mut same, mut left_out) = (Vec::new(), 0);
    // Each case: the template (after `defines`, parsed first into the same set), its data as
    // JSON, what Go's table expects with its own Go data (`want`) and what text/template gives
    // on the JSON data with missingkey=error (`go`); null for an error.
    let cases: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&exec_json).unwrap()).unwrap();
    for case in &cases {
        let (input, go, go_err) = (text(case, "input").unwrap(), text(case, "go"), text(case, "go_err").unwrap_or_default());
        // The case's JSON form does not say what its Go data said (a method, a Go type, a
        // function of the tests), or the table's template needs those functions.
        if text(case, "want") != go || go_err.contains("not defined") {
            left_out += 1;
            continue;
        }
        let parse_only = case["parse_only"] == true;
        let mut engine = Engine::new(Default::default());
        let defines = case["defines"].as_array().cloned().unwrap_or_default();
        // Where podinit refuses: "parse" (parsing, or the parse-time checks Go's parser makes)
        // or "exec"; it must refuse where Go refuses.
        let parsed = defines
            .iter()
            .enumerate()
            .try_for_each(|(i, text)| engine.add(&format!("defines{i}"), text.as_str().unwrap()))
            .and_then(|()| engine.add("case", &input))
            .and_then(|()| engine.check());
        let ours = match parsed {
            Err(e) => Err(("parse", e)),
            Ok(()) if parse_only => Ok(String::new()),
            Ok(()) => engine.render("case", &Value::from_json(&case["data"])).map_err(|e| ("exec", e)),
        };
        let theirs = if parse_only { go.map(|_| String::new()) } else { go };
        let key = (text(case, "table").unwrap(), text(case, "name").unwrap());
        let go_err_at = text(case, "go_err_at").unwrap_or_default();
        let same_refusal = matches!((&ours, &theirs), (Err((at, _)), None) if *at == go_err_at);
        if same_refusal || ours.as_ref().ok() == theirs.as_ref() {
            same.push(key);
        } else {
            let ours = ours.map_err(|(at, e)| format!("{at}: {e}"));
            differ.push((key, format!("{input:?}\n    podinit: {ours:?}\n    go:      {theirs:?} {go_err_at}: {go_err}")));
        }
    }
    // parse_test.go's cases: whether the table expects the template to parse (`ok`, with that
    // file's functions) and whether it parses with text/template's builtins (`go`).
    let parses: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&parse_json).unwrap()).unwrap();
    for case in &parses {
        let (input, go) = (text(case, "input").unwrap(), case["go"] == true);
        if case["ok"] != case["go"] {
            left_out += 1;
            continue;
        }
        let mut engine = Engine::new(Default::default());
        let ours = engine.add("case", &input).and_then(|()| engine.check());
        let key = (text(case, "table").unwrap(), text(case, "name").unwrap());
        if ours.is_ok() == go {
            same.push(key);
        } else {
            let go_err = text(case, "go_err").unwrap_or_default();
            differ.push((key, format!("{input:?}\n    podinit: {:?}\n    go parses: {go} {go_err}", ours.map_err(|e| e.to_string()))));
        }
    }

    let documented = |(table, name): &(String, String)| GO_TABLE_DIFFERENCES.iter().any(|(t, n, _)| t == table && n == name);
    let undocumented: Vec<String> =
        differ.iter().filter(|(key, _)| !documented(key)).map(|((table, name), text)| format!("{table} {name:?}: {text}")).collect();
    let stale: Vec<String> =
        same.iter().filter(|key| documented(key)).map(|(table, name)| format!("{table} {name:?} no longer differs")).collect();
    let total = cases.len() + parses.len();
    assert!(
        undocumented.is_empty() && stale.is_empty(),
        "{} of Go's own cases differ from text/template on the same JSON data, {} listed differences are stale:\n{}\n{}",
        undocumented.len(),
        stale.len(),
        undocumented.join("\n"),
        stale.join("\n")
    );
    assert!(same.len() >= 400, "only {} of {total} cases compared", same.len());

    // docs/render.md gives these numbers (for Go 1.19, Debian bookworm's: another Go has other
    // tables) and lists every difference, with the case named.
    let docs = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/render.md")).unwrap().replace('\n', " ");
    let version = Command::new("go").arg("version").output().unwrap();
    if String::from_utf8_lossy(&version.stdout).contains("go1.19") {
        let counts = format!("Of {total} cases, {left_out} are left out");
        let as_go = format!("{} behave as Go", same.len());
        assert!(docs.contains(&counts) && docs.contains(&as_go), "docs/render.md does not say {counts:?} and {as_go:?}");
    }
    for (table, name, _) in GO_TABLE_DIFFERENCES {
        assert!(docs.contains(&format!("`{name}`")), "docs/render.md does not list {table} {name:?}");
    }
}
