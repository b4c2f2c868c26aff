// Added to Go's text/template/parse package by an -overlay when podinit's tests run
// (tests/it/template_go.rs): writes parse_test.go's tables of templates that parse and that
// do not, with what parsing gives when the functions defined are text/template's builtins.
package parse

import (
	"encoding/json"
	"os"
	"testing"
)

type podinitParseCase struct {
	Table string  `json:"table"`
	Name  string  `json:"name"`
	Input string  `json:"input"`
	OK    bool    `json:"ok"`
	Go    bool    `json:"go"`
	GoErr string  `json:"go_err,omitempty"`
}

func TestPodinitDump(t *testing.T) {
	path := os.Getenv("PODINIT_GO_PARSE_TABLES")
	if path == "" {
		t.Skip("PODINIT_GO_PARSE_TABLES names the output file")
	}
	funcs := map[string]any{}
	for _, name := range []string{"and", "call", "html", "index", "slice", "js", "len", "not", "or", "print", "printf", "println", "urlquery", "eq", "ge", "gt", "le", "lt", "ne"} {
		funcs[name] = true
	}
	var cases []podinitParseCase
	add := func(table string, tests []parseTest) {
		for _, test := range tests {
			_, err := New(test.name).Parse(test.input, "", "", make(map[string]*Tree), funcs)
			c := podinitParseCase{Table: table, Name: test.name, Input: test.input, OK: test.ok, Go: err == nil}
			if err != nil {
				c.GoErr = err.Error()
			}
			cases = append(cases, c)
		}
	}
	add("parse_test.go parseTests", parseTests)
	add("parse_test.go errorTests", errorTests)
	out, err := json.MarshalIndent(cases, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}
