package main

import (
	"flag"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the configuration table in README.md from chatd -h")

const (
	readmePath = "../../README.md"
	tableBegin = "<!-- configuration table: generated from chatd -h by go test ./cmd/chatd -run TestREADMEConfiguration -update -->\n"
	tableEnd   = "<!-- end of configuration table -->\n"
)

var usageDefault = regexp.MustCompile(` \(default: ([^)]*)\)$`)

// configTable renders every flag as a row of the README's configuration
// table: flag, variable, default, meaning.
func configTable() string {
	var b strings.Builder
	b.WriteString("| flag | environment | default | meaning |\n|---|---|---|---|\n")
	newFlagSet(&config{}, io.Discard).VisitAll(func(f *flag.Flag) {
		usage, def := f.Usage, "`"+f.DefValue+"`"
		if m := usageDefault.FindStringSubmatch(usage); m != nil {
			usage, def = strings.TrimSuffix(usage, m[0]), m[1]
		} else if f.DefValue == "" {
			def = "(none)"
		}
		b.WriteString("| `-" + f.Name + "` | `" + flagEnv(f.Name) + "` | " + def + " | " + strings.ReplaceAll(usage, "|", `\|`) + " |\n")
	})
	return b.String()
}

// TestREADMEConfiguration: the README's configuration table is the one
// chatd -h describes: every flag, its variable, its default.
func TestREADMEConfiguration(t *testing.T) {
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	i, j := strings.Index(text, tableBegin), strings.Index(text, tableEnd)
	if i < 0 || j < i {
		t.Fatalf("README.md has no configuration table between %q and %q", tableBegin, tableEnd)
	}
	want := configTable()
	got := text[i+len(tableBegin) : j]
	if got == want {
		return
	}
	if *update {
		text = text[:i+len(tableBegin)] + want + text[j:]
		if err := os.WriteFile(readmePath, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("the configuration table in README.md is out of date; run: go test ./cmd/chatd -run TestREADMEConfiguration -update\n got:\n%s\nwant:\n%s", got, want)
}
