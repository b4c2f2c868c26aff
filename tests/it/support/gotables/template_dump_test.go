// Added to Go's own text/template package by an -overlay when podinit's tests run
// (tests/it/template_go.rs): writes the package's test tables, each case with its data as
// JSON and what text/template does with that JSON data, for podinit to be held to.
package template

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
)

// podinitCase is one case: what Go's table expects (Want, nil for an error) with the table's
// own Go data, and what text/template gives (Go, nil for an error) on the same data turned into
// JSON, parsed with its builtins only and missingkey=error (podinit's strictness).
type podinitCase struct {
	Table     string          `json:"table"`
	Name      string          `json:"name"`
	Defines   []string        `json:"defines,omitempty"`
	Input     string          `json:"input"`
	Data      json.RawMessage `json:"data"`
	ParseOnly bool            `json:"parse_only,omitempty"`
	Want      *string         `json:"want"`
	Go        *string         `json:"go"`
	GoErr     string          `json:"go_err,omitempty"`
	// Where Go refused: "parse" or "exec".
	GoErrAt string `json:"go_err_at,omitempty"`
}

// jsonable turns Go data into what JSON can say: exported fields, maps with keys printed,
// pointers and interfaces followed; functions, channels and complex numbers left out.
func jsonable(v reflect.Value, depth int) any {
	if !v.IsValid() || depth > 20 {
		return nil
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return jsonable(v.Elem(), depth+1)
	case reflect.Struct:
		m := map[string]any{}
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			switch v.Field(i).Kind() {
			case reflect.Func, reflect.Chan, reflect.Complex64, reflect.Complex128, reflect.UnsafePointer:
				continue
			}
			m[f.Name] = jsonable(v.Field(i), depth+1)
		}
		return m
	case reflect.Map:
		if v.IsNil() {
			return nil
		}
		m := map[string]any{}
		iter := v.MapRange()
		for iter.Next() {
			m[fmt.Sprint(iter.Key().Interface())] = jsonable(iter.Value(), depth+1)
		}
		return m
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return nil
		}
		s := make([]any, v.Len())
		for i := range s {
			s[i] = jsonable(v.Index(i), depth+1)
		}
		return s
	case reflect.Bool:
		return v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return v.Uint()
	case reflect.Float32, reflect.Float64:
		return v.Float()
	case reflect.String:
		return v.String()
	}
	return nil
}

// fromJSON decodes as podinit does: whole numbers that fit int64 as int, others as float64.
func fromJSON(raw []byte) any {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		panic(err)
	}
	var conv func(any) any
	conv = func(v any) any {
		switch x := v.(type) {
		case json.Number:
			if !strings.ContainsAny(string(x), ".eE") {
				if i, err := x.Int64(); err == nil {
					return int(i)
				}
			}
			f, _ := x.Float64()
			return f
		case []any:
			for i := range x {
				x[i] = conv(x[i])
			}
		case map[string]any:
			for k := range x {
				x[k] = conv(x[k])
			}
		}
		return v
	}
	return conv(v)
}

func podinitRun(c *podinitCase, data any, wantOK bool, wantOut string) {
	raw, err := json.Marshal(jsonable(reflect.ValueOf(data), 0))
	if err != nil {
		panic(err)
	}
	c.Data = raw
	if wantOK {
		c.Want = &wantOut
	}
	root := New("root").Option("missingkey=error")
	for _, d := range c.Defines {
		if _, err := root.Parse(d); err != nil {
			panic(err)
		}
	}
	var b bytes.Buffer
	tmpl, err := root.New(c.Name).Parse(c.Input)
	c.GoErrAt = "parse"
	if err == nil && !c.ParseOnly {
		c.GoErrAt = "exec"
		err = tmpl.Execute(&b, fromJSON(raw))
	}
	if err != nil {
		c.GoErr = err.Error()
		return
	}
	c.GoErrAt = ""
	out := b.String()
	c.Go = &out
}

func TestPodinitDump(t *testing.T) {
	path := os.Getenv("PODINIT_GO_TABLES")
	if path == "" {
		t.Skip("PODINIT_GO_TABLES names the output file")
	}
	var cases []podinitCase
	for _, test := range execTests {
		c := podinitCase{Table: "exec_test.go execTests", Name: test.name, Input: test.input}
		podinitRun(&c, test.data, test.ok, test.output)
		cases = append(cases, c)
	}
	for _, test := range multiExecTests {
		c := podinitCase{Table: "multi_test.go multiExecTests", Name: test.name, Input: test.input, Defines: []string{multiText1, multiText2}}
		podinitRun(&c, test.data, test.ok, test.output)
		cases = append(cases, c)
	}
	for _, test := range multiParseTests {
		c := podinitCase{Table: "multi_test.go multiParseTests", Name: test.name, Input: test.input, ParseOnly: true}
		podinitRun(&c, nil, test.ok, "")
		cases = append(cases, c)
	}
	// TestComparison's table with its data (a local struct there, repeated here).
	var b bytes.Buffer
	cmpStruct := struct {
		Uthree, Ufour    uint
		NegOne, Three    int
		Ptr, NilPtr      *int
		NonNilMap        map[int]int
		Map              map[int]int
		V1, V2           V
		Iface1, NilIface fmt.Stringer
	}{Uthree: 3, Ufour: 4, NegOne: -1, Three: 3, Ptr: new(int), NonNilMap: make(map[int]int), Iface1: &b}
	for _, test := range cmpTests {
		c := podinitCase{Table: "exec_test.go cmpTests", Name: test.expr, Input: fmt.Sprintf("{{if %s}}true{{else}}false{{end}}", test.expr)}
		podinitRun(&c, &cmpStruct, test.ok, test.truth)
		cases = append(cases, c)
	}
	out, err := json.MarshalIndent(cases, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}
