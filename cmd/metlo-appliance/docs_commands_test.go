package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// commandLines finds the metlo-appliance command lines in text: in backticks, as lines of
// a code block, and in prose with a flag (the alert rules' "Run metlo-appliance doctor --cloud …").
var commandLines = regexp.MustCompile("(?m)`(?:sudo )?metlo-appliance ([^`]*)`|^\\s*(?:sudo )?metlo-appliance ([^#\\n]*)|metlo-appliance ((?:[a-z][a-z-]* )+--[a-z][a-z-]*)")

// Every command and flag the docs, the README and the alert rules tell an operator to run
// exists: a runbook naming a command that is not there (`metlo-appliance provision list`)
// sends the on-call engineer nowhere.
func TestDocumentedCommandsExist(t *testing.T) {
	files, _ := filepath.Glob("../../docs/*.md")
	alerts, _ := filepath.Glob("../../exporter/alerts/*.rules.yml")
	files = append(append(files, "../../README.md"), alerts...)
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range commandLines.FindAllStringSubmatch(string(b), -1) {
			line := m[1] + m[2] + m[3]
			args := strings.Fields(line)
			if len(args) == 0 || strings.ContainsAny(args[0], "…<[") {
				continue
			}
			root := newRootCmd()
			cmd, rest, err := root.Find(args)
			if err != nil {
				t.Errorf("%s: `metlo-appliance %s`: %v", filepath.Base(f), line, err)
				continue
			}
			if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") && cmd.ValidateArgs(rest[:1]) != nil {
				t.Errorf("%s: `metlo-appliance %s`: %s has no subcommand %q", filepath.Base(f), line, cmd.CommandPath(), rest[0])
				continue
			}
			root.InitDefaultVersionFlag()
			cmd.InitDefaultHelpFlag()
			for _, a := range rest {
				name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
				if !strings.HasPrefix(a, "--") || name == "" || strings.ContainsAny(name, "…<[|") {
					continue
				}
				if cmd.Flags().Lookup(name) == nil && cmd.InheritedFlags().Lookup(name) == nil {
					t.Errorf("%s: `metlo-appliance %s`: %s has no flag --%s", filepath.Base(f), line, cmd.CommandPath(), name)
				}
			}
			checked++
		}
	}
	t.Logf("%d command lines checked", checked)
	if checked < 30 {
		t.Errorf("only %d command lines found in the docs: the pattern no longer matches them", checked)
	}
}
