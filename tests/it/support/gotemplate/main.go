// gotemplate renders a template with Go's own text/template, for the differential tests of
// podinit's engine (tests/it/template_go.rs) and the render benchmark (bench/render).
//
// Usage: gotemplate [-strict] [-data FILE.json] [-env] TEMPLATE...
// The first TEMPLATE is executed; all are parsed into one set (their defines shared). Data:
// the JSON file's value, whole numbers as int (Go's JSON decoder would give float64, where
// podinit keeps integers); with -env, the map {"Env": the environment}. -strict is
// missingkey=error. Output on stdout; an error on stderr and exit 1.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"text/template"
)

func ints(v interface{}) interface{} {
	switch x := v.(type) {
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return int(x)
		}
		return x
	case []interface{}:
		for i := range x {
			x[i] = ints(x[i])
		}
		return x
	case map[string]interface{}:
		for k := range x {
			x[k] = ints(x[k])
		}
		return x
	}
	return v
}

func main() {
	strict := flag.Bool("strict", false, "missingkey=error")
	dataFile := flag.String("data", "", "JSON data")
	withEnv := flag.Bool("env", false, "data is {Env: environment}")
	flag.Parse()
	var data interface{}
	if *dataFile != "" {
		raw, err := os.ReadFile(*dataFile)
		if err == nil {
			err = json.Unmarshal(raw, &data)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		data = ints(data)
	}
	if *withEnv {
		env := map[string]string{}
		for _, kv := range os.Environ() {
			if k, v, ok := strings.Cut(kv, "="); ok {
				env[k] = v
			}
		}
		data = map[string]interface{}{"Env": env}
	}
	t := template.New(filepath.Base(flag.Arg(0)))
	if *strict {
		t = t.Option("missingkey=error")
	}
	t, err := t.ParseFiles(flag.Args()...)
	if err == nil {
		err = t.Execute(os.Stdout, data)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
