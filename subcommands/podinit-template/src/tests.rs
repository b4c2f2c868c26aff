//! Cases from Go's text/template documentation (package doc and example_test.go),
//! consul-template's and Vault Agent's documentation, and Helm charts; then ours.

use std::collections::BTreeMap;

use crate::{Engine, Value, Variables, envsubst};

fn env() -> BTreeMap<String, String> {
    [("HOME", "/home/app"), ("DB_HOST", "db.internal"), ("EMPTY", ""), ("PORT", "5432")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn data(json: &str) -> Value {
    Value::from_json(&serde_json::from_str(json).expect("test data is JSON"))
}

fn render_with(source: &str, dot: &Value) -> Result<String, String> {
    let mut engine = Engine::new(env());
    engine.add("t.tmpl", source).map_err(|e| e.to_string())?;
    engine.render("t.tmpl", dot).map_err(|e| e.to_string())
}

fn render(source: &str) -> String {
    render_with(source, &data(r#"{"Name": "app", "Items": ["a", "b", "c"], "Map": {"k2": 2, "k1": 1}, "N": 3}"#))
        .unwrap_or_else(|e| panic!("{source:?}: {e}"))
}

#[test]
fn go_package_doc_examples_print_output() {
    // text/template's package documentation, "Examples": each prints "output" quoted.
    for source in [
        r#"{{"\"output\""}}"#,
        r#"{{`"output"`}}"#,
        r#"{{printf "%q" "output"}}"#,
        r#"{{"output" | printf "%q"}}"#,
        r#"{{printf "%q" (print "out" "put")}}"#,
        r#"{{"put" | printf "%s%s" "out" | printf "%q"}}"#,
        r#"{{"output" | printf "%s" | printf "%q"}}"#,
        r#"{{with "output"}}{{printf "%q" .}}{{end}}"#,
        r#"{{with $x := "output" | printf "%q"}}{{$x}}{{end}}"#,
        r#"{{with $x := "output"}}{{printf "%q" $x}}{{end}}"#,
        r#"{{with $x := "output"}}{{$x | printf "%q"}}{{end}}"#,
    ] {
        assert_eq!(render(source), "\"output\"", "{source}");
    }
}

#[test]
fn go_package_doc_trim_markers() {
    assert_eq!(render("{{23 -}} < {{- 45}}"), "23<45");
    // A `-` not followed by a space is a number's sign, not a trim marker.
    assert_eq!(render("{{-3}}"), "-3");
}

#[test]
fn go_example_letter() {
    // text/template example_test.go, ExampleTemplate.
    let letter = "\nDear {{.Name}},\n{{if .Attended}}\nIt was a pleasure to see you at the wedding.\n{{- else}}\nIt is a shame you couldn't make it to the wedding.\n{{- end}}\n{{with .Gift -}}\nThank you for the lovely {{.}}.\n{{end}}\nBest wishes,\nJosie\n";
    let mildred = data(r#"{"Name": "Aunt Mildred", "Gift": "bone china tea set", "Attended": true}"#);
    assert_eq!(
        render_with(letter, &mildred).expect("renders"),
        "\nDear Aunt Mildred,\n\nIt was a pleasure to see you at the wedding.\nThank you for the lovely bone china tea set.\n\nBest wishes,\nJosie\n"
    );
    let cousin = data(r#"{"Name": "Cousin Rodney", "Gift": "", "Attended": false}"#);
    assert_eq!(
        render_with(letter, &cousin).expect("renders"),
        "\nDear Cousin Rodney,\n\nIt is a shame you couldn't make it to the wedding.\n\nBest wishes,\nJosie\n"
    );
}

#[test]
fn go_example_block() {
    // example_test.go, ExampleTemplate_block (the master template).
    let master = r#"Names:{{block "list" .}}{{"\n"}}{{range .}}{{println "-" .}}{{end}}{{end}}"#;
    let guardians = data(r#"["Gamora", "Groot", "Nebula", "Rocket", "Star-Lord"]"#);
    assert_eq!(render_with(master, &guardians).expect("renders"), "Names:\n- Gamora\n- Groot\n- Nebula\n- Rocket\n- Star-Lord\n");
}

#[test]
fn range_else_variables_break_continue() {
    assert_eq!(render("{{range $i, $e := .Items}}{{$i}}={{$e}};{{end}}"), "0=a;1=b;2=c;");
    assert_eq!(render("{{range $k, $v := .Map}}{{$k}}:{{$v}} {{end}}"), "k1:1 k2:2 ");
    assert_eq!(
        render_with("{{range .Missing}}x{{else}}none{{end}}", &data("{}")).expect_err("strict"),
        "t.tmpl:1: map has no entry for key \"Missing\" (in .Missing)"
    );
    assert_eq!(render_with("{{range .Nil}}x{{else}}none{{end}}", &data(r#"{"Nil": null}"#)).expect("nil"), "none");
}

#[test]
fn ranges_and_flow() {
    assert_eq!(render("{{range .Items}}{{if eq . \"b\"}}{{continue}}{{end}}{{.}}{{end}}"), "ac");
    assert_eq!(render("{{range .Items}}{{if eq . \"b\"}}{{break}}{{end}}{{.}}{{end}}"), "a");
    assert_eq!(render("{{range .N}}{{.}}{{end}}"), "012");
    assert_eq!(render("{{range (list)}}x{{else}}empty{{end}}"), "empty");
    assert_eq!(render("{{$x := 1}}{{range .Items}}{{$x = .}}{{end}}{{$x}}"), "c");
    assert_eq!(render("{{if false}}a{{else if .N}}b{{else}}c{{end}}"), "b");
    assert_eq!(render("{{with .Nope}}a{{else with .Name}}{{.}}{{end}}"), "app");
    assert_eq!(render("{{/* a comment */}}x{{- /* trimmed */ -}} y"), "xy");
    assert_eq!(render("{{define \"T\"}}<{{.}}>{{end}}{{template \"T\" .Name}}"), "<app>");
    assert_eq!(render("{{(index .Map \"k1\")}} {{len .Items}} {{index .Items 1}} {{slice .Name 1 3}}"), "1 3 b pp");
    assert_eq!(render("{{and 1 0 2}} {{or 0 \"\" 3}} {{not .N}}"), "0 3 false");
    assert_eq!(render("{{if and .N (gt .N 2) (lt .N 4) (ne .Name \"x\")}}yes{{end}}"), "yes");
}

#[test]
fn printf_verbs() {
    assert_eq!(render(r#"{{printf "%5d|%-4s|%05.2f|%x|%t|%v|%%" 42 "ab" 3.14159 255 true .Items}}"#), "   42|ab  |03.14|ff|true|[a b c]|%");
    assert_eq!(render(r#"{{printf "%d %s"  1}}"#), "1 %!s(MISSING)");
    // fmt.Sprint: a space between operands only when neither is a string.
    assert_eq!(render(r#"{{print 1 2 "a" "b" 3}}"#), "1 2ab3");
}

#[test]
fn consul_template_functions() {
    assert_eq!(render(r#"{{ env "HOME" }}"#), "/home/app");
    assert_eq!(render(r#"{{ "hello" | toUpper }} {{ "HeLLo" | toLower }} {{ "hello world" | toTitle }}"#), "HELLO hello Hello World");
    assert_eq!(render(r#"{{ "foo.bar" | replaceAll "." "_" }}"#), "foo_bar");
    assert_eq!(render(r#"{{ range "a,b,c" | split "," }}[{{ . }}]{{ end }}"#), "[a][b][c]");
    assert_eq!(render(r#"{{ .Items | join "," }}"#), "a,b,c");
    assert_eq!(render(r#"{{ base64Decode "aGVsbG8=" }} {{ "hello" | base64Encode }}"#), "hello aGVsbG8=");
    assert_eq!(render(r#"{{ "  x  " | trimSpace }}"#), "x");
    assert_eq!(render(r#"{{ if .Items | contains "b" }}has b{{ end }}"#), "has b");
    assert_eq!(render(r#"{{ with $d := "{\"foo\": [1, 2]}" | parseJSON }}{{ index $d.foo 1 }}{{ end }}"#), "2");
    assert_eq!(render(r#"{{ .Map | toJSON }}"#), r#"{"k1":1,"k2":2}"#);
    assert_eq!(render(r#"{{ .Map | toJSONPretty }}"#), "{\n  \"k1\": 1,\n  \"k2\": 2\n}");
    assert_eq!(render(r#"{{ indent 4 "a\nb" }}"#), "    a\n    b");
}

#[test]
fn vault_agent_templates_with_an_added_secret_function() {
    // Vault Agent's documentation (agent template examples): a database connection string and
    // a .env file, with `secret` as vault-fetch will add it.
    let mut engine = Engine::new(env());
    engine.function(
        "secret",
        Box::new(|args| match args {
            [Value::Str(p)] if &**p == "database/creds/db-app" => Ok(data(r#"{"Data": {"username": "v-app-x1", "password": "p@ss"}}"#)),
            [Value::Str(p)] if &**p == "secret/data/web" => Ok(data(r#"{"Data": {"data": {"username": "web", "password": "s3cr3t"}}}"#)),
            other => Err(format!("no secret at {other:?}")),
        }),
    );
    let db = "{{- with secret \"database/creds/db-app\" -}}\npostgres://{{ .Data.username }}:{{ .Data.password }}@postgres:5432/appdb?sslmode=disable\n{{- end }}\n";
    let dotenv = "{{ with secret \"secret/data/web\" -}}\nexport DB_USER=\"{{ .Data.data.username }}\"\nexport DB_PASS=\"{{ .Data.data.password }}\"\n{{- end }}\n";
    engine.add("db.tmpl", db).expect("parses");
    engine.add("env.tmpl", dotenv).expect("parses");
    assert_eq!(engine.render("db.tmpl", &Value::Nil).expect("renders"), "postgres://v-app-x1:p@ss@postgres:5432/appdb?sslmode=disable\n");
    assert_eq!(engine.render("env.tmpl", &Value::Nil).expect("renders"), "export DB_USER=\"web\"\nexport DB_PASS=\"s3cr3t\"\n");
    engine.add("bad.tmpl", "a\n{{ with secret \"secret/data/web\" }}{{ .Data.data.email }}{{ end }}").expect("parses");
    assert_eq!(
        engine.render("bad.tmpl", &Value::Nil).expect_err("missing key").to_string(),
        "bad.tmpl:2: map has no entry for key \"email\" (in .Data.data.email)"
    );
}

#[test]
fn helm_style_defaults_and_yaml() {
    let values = data(
        r#"{"Values": {"image": {"tag": ""}, "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}, "hosts": ["a.example", "b.example"]}}"#,
    );
    let t = "tag: {{ .Values.image.tag | default \"latest\" | quote }}\nrepo: {{ .Values.image.repo | default \"nginx\" }}\nresources:{{ .Values.resources | toYaml | nindent 2 }}\nhosts:\n{{ toYAML .Values.hosts | indent 2 }}";
    assert_eq!(
        render_with(t, &values).expect("renders"),
        "tag: \"latest\"\nrepo: nginx\nresources:\n  limits:\n    cpu: \"1\"\n    memory: 1Gi\nhosts:\n  - a.example\n  - b.example"
    );
    assert_eq!(
        render_with(r#"{{ required "image.repo is required" .Values.image.repo }}"#, &values).expect_err("required"),
        "t.tmpl:1: image.repo is required"
    );
}

#[test]
fn strict_errors_name_file_line_and_key() {
    assert_eq!(
        render_with("a\nb {{ .Env.NOPE }}", &data(r#"{"Env": {}}"#)).expect_err("missing"),
        "t.tmpl:2: map has no entry for key \"NOPE\" (in .Env.NOPE)"
    );
    assert_eq!(
        render_with("{{ env \"NOPE\" }}", &Value::Nil).expect_err("unset"),
        "t.tmpl:1: environment variable \"NOPE\" is not set (in env \"NOPE\")"
    );
    assert_eq!(render_with("{{ env \"NOPE\" | default \"d\" }}", &Value::Nil).expect("default"), "d");
    assert_eq!(render_with("{{ if env \"NOPE\" }}x{{ else }}y{{ end }}", &Value::Nil).expect("if"), "y");
    assert_eq!(render_with("{{ upper .X }}", &data("{}")).expect_err("missing"), "t.tmpl:1: map has no entry for key \"X\" (in .X)");
    assert_eq!(render_with("\n\n{{ if .X }}", &Value::Nil).expect_err("eof"), "t.tmpl:3: unexpected EOF: {{if}} without {{end}}");
    assert_eq!(render_with("{{ nosuch 1 }}", &Value::Nil).expect_err("func"), "t.tmpl:1: function \"nosuch\" not defined");
    assert_eq!(render_with("{{ .A", &Value::Nil).expect_err("unclosed"), "t.tmpl:1: unclosed action (no }})");
    assert_eq!(render_with("{{ $x }}", &Value::Nil).expect_err("var"), "t.tmpl:1: undefined variable \"$x\"");
    // Found as Go's parser finds them: in branches the data never takes, in defines nothing
    // uses, and out of the scope a variable was declared in.
    for (source, err) in [
        ("{{ if false }}{{ nosuch }}{{ end }}ok", "t.tmpl:1: function \"nosuch\" not defined"),
        ("{{ define \"unused\" }}\n{{ typo .X }}{{ end }}ok", "t.tmpl:2: function \"typo\" not defined"),
        ("{{ range $k }}{{ end }}", "t.tmpl:1: undefined variable \"$k\""),
        ("{{ with $x := 1 }}{{ end }}{{ $x }}", "t.tmpl:1: undefined variable \"$x\""),
        ("{{ if true }}{{ $y := 1 }}{{ else }}{{ $y }}{{ end }}", "t.tmpl:1: undefined variable \"$y\""),
        ("{{ $z = 2 }}", "t.tmpl:1: undefined variable \"$z\""),
        ("{{ if false }}{{ (nosuch2 1) | upper }}{{ end }}", "t.tmpl:1: function \"nosuch2\" not defined"),
        ("{{ with $v, $u := 3 }}{{ end }}", "t.tmpl:1: too many declarations in with"),
        ("{{ if $v, $u := 3 }}{{ end }}", "t.tmpl:1: too many declarations in if"),
        ("{{ $v, $u := 3 }}", "t.tmpl:1: too many declarations in command"),
        ("{{ block \"foo\" }}x{{ end }}", "t.tmpl:1: missing value for block"),
    ] {
        assert_eq!(render_with(source, &Value::Nil).expect_err(source), err, "{source}");
    }
    // What stays valid: declared variables in their scope, range's pair, `$` everywhere.
    for source in [
        "{{ $a := 1 }}{{ if true }}{{ $a }}{{ $a = 2 }}{{ end }}{{ $a }}",
        "{{ range $i, $v := list 1 2 }}{{ $i }}{{ $v }}{{ end }}",
        "{{ with $w := 3 }}{{ $w }}{{ else }}{{ $ }}{{ end }}",
        "{{ define \"d\" }}{{ $ }}{{ end }}{{ template \"d\" 1 }}",
    ] {
        render_with(source, &Value::Nil).unwrap_or_else(|e| panic!("{source}: {e}"));
    }
    assert_eq!(render_with("{{ break }}", &Value::Nil).expect_err("break"), "t.tmpl:1: {{break}} outside {{range}}");
    // Errors name keys and kinds, never values (templates render secrets).
    let secret = data(r#"{"Pw": "hunter2"}"#);
    for source in [
        "{{ range .Pw }}{{ end }}",
        "{{ atoi .Pw }}",
        "{{ parseBool .Pw }}",
        "{{ indent .Pw \"x\" }}",
        "{{ .Pw.Field }}",
        "{{ b64dec .Pw }}",
        "{{ fromJson .Pw }}",
    ] {
        let err = render_with(source, &secret).expect_err(source);
        assert!(!err.contains("hunter2"), "{source}: {err}");
    }
    assert_eq!(
        render_with("{{ define \"a\" }}{{ template \"a\" }}{{ end }}{{ template \"a\" }}", &Value::Nil)
            .expect_err("loop")
            .split(':')
            .next(),
        Some("t.tmpl")
    );
    let mut engine = Engine::new(env());
    engine.allow_missing(true);
    engine.add("t", "[{{ .A.B }}][{{ env \"NOPE\" }}]").expect("parses");
    assert_eq!(engine.render("t", &data("{}")).expect("lenient"), "[][]");
}

#[test]
fn the_builtin_list_is_what_call_knows() {
    let engine = Engine::new(env());
    for name in crate::check::BUILTINS.iter().filter(|n| !matches!(**n, "and" | "or")) {
        if let Err(e) = engine.call(name, &[]) {
            assert!(!e.contains("not defined"), "{name}: {e}");
        }
    }
    assert!(engine.call("surely_not_a_function", &[]).is_err_and(|e| e.contains("not defined")));
    // And the other way: every name `call` matches on is listed (its arms are the lines of
    // funcs.rs that start a `"name" =>` or `"a" | "b" =>` at the match's indentation).
    let source = include_str!("funcs.rs");
    let body = &source[source.find("Ok(match name {").unwrap()..source.find("not defined\")),").unwrap()];
    for line in body.lines().filter(|l| l.starts_with("            \"") && l.contains("=>")) {
        for name in line.split("=>").next().unwrap().split('|').map(|n| n.trim().trim_matches('"')) {
            assert!(crate::check::BUILTINS.contains(&name), "{name} is a function of call but not in check::BUILTINS");
        }
    }
}

#[test]
fn a_define_in_another_file_overrides_a_block() {
    // ExampleTemplate_block's overlay, with podinit's join argument order.
    let mut engine = Engine::new(env());
    engine.add("master", "Names:{{block \"list\" .}}{{range .}}-{{.}}{{end}}{{end}}").expect("parses");
    engine.add("overlay", "{{define \"list\"}} {{join \", \" .}}{{end}} ").expect("parses");
    assert_eq!(engine.render("master", &data(r#"["a", "b"]"#)).expect("renders"), "Names: a, b");
    // Two files define one name: the later wins, as Go's ParseFiles and Helm do.
    let mut engine = Engine::new(env());
    engine.add("one", "{{define \"x\"}}1{{end}}").expect("parses");
    engine.add("two", "{{define \"x\"}}2{{end}}").expect("a later file may redefine");
    engine.add("main", "{{template \"x\"}}").expect("parses");
    assert_eq!(engine.render("main", &Value::Nil).expect("renders"), "2");
    // Within one file it stays an error (Go: "multiple definition of template").
    let mut engine = Engine::new(env());
    assert!(engine.add("t", "{{define \"x\"}}1{{end}}{{define \"x\"}}2{{end}}").is_err());
}

#[test]
fn hostile_input_is_an_error_not_a_panic_or_a_huge_allocation() {
    assert_eq!(
        render(r#"{{printf "%.70000f|%99999999999999999999999d|%[4]s %[3]s|%[5]*d" 1.5 2 "a" "b" 4 7}}"#),
        "%!(BADPREC)|%!(BADWIDTH)|b a|   7"
    );
    assert!(render_with(r#"{{ repeat 100000000 "abc" }}"#, &Value::Nil).is_err());
    assert!(render_with(r#"{{ indent 100000000 "abc" }}"#, &Value::Nil).is_err());
    assert!(render_with(r#"{{ range 100000000000 }}{{ end }}"#, &Value::Nil).is_err());
    let e = env();
    let err = envsubst("t", "${prénom}", &e, None, true).expect_err("not a name");
    assert!(err.to_string().contains("unsupported substitution"), "{err}");
}

#[test]
fn yaml_of_nested_lists_and_awkward_strings_reads_back() {
    assert_eq!(render_with("{{ parseJSON \"[[1, 2], [3]]\" | toYaml }}", &Value::Nil).expect("yaml"), "-\n  - 1\n  - 2\n-\n  - 3");
    assert_eq!(render_with("{{ toYaml (dict \"k\" \"  indented\\nx\") }}", &Value::Nil).expect("yaml"), "k: \"  indented\\nx\"");
    assert_eq!(render_with("{{ toYaml (dict \"k\" \"a\\nb\\n\") }}", &Value::Nil).expect("yaml"), "k: |\n  a\n  b");
    assert_eq!(render_with("{{ b64dec \"aGVs\\nbG8=\\n\" }}", &Value::Nil).expect("wrapped base64"), "hello");
}

#[test]
fn other_delimiters() {
    let mut engine = Engine::new(env());
    engine.delims("[[", "]]");
    engine.add("t", "{{ .Values.x }} [[ .Name ]] [[- \" !\" ]]").expect("parses");
    assert_eq!(engine.render("t", &data(r#"{"Name": "n"}"#)).expect("renders"), "{{ .Values.x }} n !");
}

#[test]
fn envsubst_forms() {
    let e = env();
    let run = |t: &str| envsubst("t", t, &e, None, false);
    assert_eq!(run("host=$DB_HOST port=${PORT} $$ cost $5").expect("ok"), "host=db.internal port=5432 $ cost $5");
    assert_eq!(run("${NOPE:-fallback} ${EMPTY:-e} ${EMPTY-e} ${NOPE-$DB_HOST}").expect("ok"), "fallback e  db.internal");
    assert_eq!(run("${PORT:+set} ${NOPE:+set}|").expect("ok"), "set |");
    assert_eq!(run("a\n${NOPE:?set NOPE to the region}").expect_err("unset").to_string(), "t:2: NOPE: set NOPE to the region");
    assert_eq!(run("a\nb\n $NOPE").expect_err("unset").to_string(), "t:3: variable \"NOPE\" is not set");
    assert_eq!(run("${EMPTY:?}").expect_err("empty").to_string(), "t:1: EMPTY: is not set or empty");
    assert_eq!(run("${PORT").expect_err("open").to_string(), "t:1: ${PORT: no closing }");
    assert_eq!(
        run("${PORT:0:2}").expect_err("substr").to_string(),
        "t:1: ${PORT:0:2}: unsupported substitution (podinit knows -, :-, ?, :?, + and :+)"
    );
    assert_eq!(envsubst("t", "$NOPE", &e, None, true).expect("lenient"), "");
}

#[test]
fn envsubst_only_listed_variables() {
    let e = env();
    let only = Variables::parse("$DB_HOST ${PORT}").expect("parses");
    let nginx = "server { listen ${PORT}; location / { proxy_pass http://$DB_HOST; proxy_set_header Host $host; } } $$ ${NOPE:-x}";
    assert_eq!(
        envsubst("t", nginx, &e, Some(&only), false).expect("ok"),
        "server { listen 5432; location / { proxy_pass http://db.internal; proxy_set_header Host $host; } } $$ ${NOPE:-x}"
    );
    assert!(Variables::parse("no dollars").is_err());
}

#[test]
fn hostile_templates_meet_their_budgets() {
    // Two calls of the next level per level: 2^40 renders without the step budget.
    let mut bomb = String::from(r#"{{define "t0"}}x{{end}}"#);
    for level in 1..=40 {
        bomb.push_str(&format!(
            r#"{{{{define "t{level}"}}}}{{{{template "t{prev}"}}}}{{{{template "t{prev}"}}}}{{{{end}}}}"#,
            prev = level - 1
        ));
    }
    bomb.push_str(r#"{{template "t40"}}"#);
    let started = std::time::Instant::now();
    let err = render_with(&bomb, &Value::Nil).unwrap_err();
    assert!(err.contains("steps"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "stopped by the budget, not by luck");
    // A range writing a large value over and over: stopped by the output budget.
    let err = render_with(r#"{{$x := repeat 1000000 "ab"}}{{range 1000}}{{$x}}{{end}}"#, &Value::Nil).unwrap_err();
    assert!(err.contains("MiB"), "{err}");
    // 20,000 nested parentheses, and 20,000 nested ifs: refused when parsed, no stack overflow.
    let parens = format!("{{{{{}1{}}}}}", "(".repeat(20_000), ")".repeat(20_000));
    assert!(render_with(&parens, &Value::Nil).unwrap_err().contains("nest deeper"));
    let ifs = format!("{}x{}", "{{if true}}".repeat(20_000), "{{end}}".repeat(20_000));
    assert!(render_with(&ifs, &Value::Nil).unwrap_err().contains("nest deeper"));
    // A value doubled in a loop writes nothing but fills memory: each result is bounded.
    let err = render_with(r#"{{$x := "ab"}}{{range 40}}{{$x = printf "%s%s" $x $x}}{{end}}"#, &Value::Nil).unwrap_err();
    assert!(err.contains("MiB"), "{err}");
    let err = render_with(r#"{{$x := repeat 2000000 "a,"}}{{$l := split "," $x}}{{len $l}}"#, &Value::Nil).unwrap_err();
    assert!(err.contains("items"), "{err}");
    // A list nested in itself: a few steps, 4^12 items when printed.
    let mut nested = String::from(r#"{{$a := list "xxxxxxxxxxxxxxxx"}}"#);
    for _ in 0..12 {
        nested.push_str("{{$a = list $a $a $a $a}}");
    }
    nested.push_str("{{$a}}");
    let err = render_with(&nested, &Value::Nil).unwrap_err();
    assert!(err.contains("MiB"), "{err}");
    // Real nesting is far from the limits.
    assert_eq!(render(&format!("{{{{{}1{}}}}}", "(".repeat(50), ")".repeat(50))), "1");
}

#[test]
fn a_stop_check_ends_a_long_render() {
    let mut engine = Engine::new(env());
    engine.stop_check(std::sync::Arc::new(|| Err("stopped by SIGTERM".into())));
    engine.add("t", "{{range 100000}}.{{end}}").unwrap();
    let err = engine.render("t", &Value::Nil).unwrap_err().to_string();
    assert!(err.contains("SIGTERM"), "{err}");
}

#[test]
#[expect(clippy::disallowed_methods, reason = "fixtures are written plainly")]
fn file_never_reads_credentials_or_pseudo_files() {
    let dir = std::env::temp_dir().join(format!("podinit-template-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "s.secret").unwrap();
    let link = dir.join("innocent");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&token, &link).unwrap();
    let mut engine = Engine::new(env());
    engine.deny_files([token.as_path()]);
    for path in [token.display().to_string(), link.display().to_string(), "/proc/self/environ".into()] {
        engine.add("t", &format!("{{{{file {path:?}}}}}")).unwrap();
        let err = engine.render("t", &Value::Nil).unwrap_err().to_string();
        assert!(!err.contains("s.secret"), "{err}");
        assert!(err.contains("credential") || err.contains("/proc"), "{path}: {err}");
    }
    std::fs::write(dir.join("plain"), "ok").unwrap();
    engine.add("t", &format!("{{{{file {:?}}}}}", dir.join("plain").display().to_string())).unwrap();
    assert_eq!(engine.render("t", &Value::Nil).unwrap(), "ok");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn null_comparisons_and_operands_as_go_has_them() {
    let dot = data(r#"{"Null": null, "List": [1, null], "Map": {}}"#);
    let ok = |source: &str, want: &str| assert_eq!(render_with(source, &dot).unwrap(), want, "{source}");
    let fails = |source: &str, with: &str| {
        let err = render_with(source, &dot).unwrap_err();
        assert!(err.contains(with), "{source}: {err}");
    };
    ok(
        "{{print nil .Null}}|{{printf \"%v %d\" .Null .Null}}|{{.List}}|{{.Null}}|{{html .Null}}",
        "<nil> <nil>|<nil> %!d(<nil>)|[1 <nil>]||&lt;no value&gt;",
    );
    ok("{{printf \"%T %T %T %T %T %T\" 1 1.5 \"s\" true .List .Map}}", "int float64 string bool []interface {} map[string]interface {}");
    ok("{{eq .Null nil}} {{eq .Null 1}} {{eq .Map nil}} {{ne 1 2}}", "true false false true");
    ok("{{print 0x1.ep+2 -0X_1p-1}}", "7.5 -0.5");
    ok("{{template \"t\" $x := 5}}{{$x}}{{define \"t\"}}<{{.}}>{{end}}", "<5>5");
    // The field of a function's result: `list.x` is `(list).x`.
    fails("{{list.x}}", "can't evaluate field x");
    fails("{{nil}}", "nil is not a command");
    fails("{{if nil}}{{end}}", "nil is not a command");
    fails("{{len .Null}}", "len of nil");
    ok("{{eq 2 2.0}} {{lt 1 1.5}} {{print 0x10p-1078}}", "true true 5e-324");
    fails("{{eq 2 \"2\"}}", "incompatible types");
    ok("{{template \"t\".}}{{define \"t\"}}[{{.Null}}]{{end}}", "[]");
    fails("{{lt true true}}", "invalid type for comparison");
    fails("{{eq .Map .Map}}", "non-comparable");
    fails("{{printf `x`.}}", "in operand");
    fails("{{\"a\".b}}", "after a term");
    fails("{{$x := 1}}{{$x+2}}", "in operand");
    fails("{{.|12}}", "non executable command in pipeline stage 2");
}
