package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/metlo-labs/metlo-appliance/cmd/metlo-appliance/internal/initgc"
)

func TestMain(m *testing.M) {
	// Package initialisation left the collector off for main to turn back on; a test binary
	// has no main.
	initgc.Restore()
	os.Exit(m.Run())
}

// gcTrace runs the built binary with GODEBUG=gctrace=1 and returns the collections it
// reported; gcstoptheworld=1 makes each collection finish before the program goes on, so a
// short run cannot exit with one still unreported. gogc is the GOGC to run with, "" for none.
func gcTrace(t *testing.T, gogc string, args ...string) []string {
	t.Helper()
	cmd := exec.Command(buildBinary(t), args...)
	cmd.Env = []string{"GODEBUG=gctrace=1,gcstoptheworld=1", "PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	if gogc != "" {
		cmd.Env = append(cmd.Env, "GOGC="+gogc)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, stderr.String())
	}
	var gcs []string
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.HasPrefix(line, "gc ") {
			gcs = append(gcs, line)
		}
	}
	return gcs
}

// TestStartupDoesNotCollect checks that starting the binary runs no garbage collection:
// the SDKs' package initialisers allocate more than the runtime's first threshold, and
// initgc must hold the collector off until they are done (it fails when initgc's init no
// longer runs before the large allocations).
func TestStartupDoesNotCollect(t *testing.T) {
	if gcs := gcTrace(t, "", "--version"); len(gcs) > 0 {
		t.Errorf("--version collected %d times during start-up:\n%s", len(gcs), strings.Join(gcs, "\n"))
	}
}

// TestCommandsCollect checks that a command runs with the collector on again: without the
// Restore in main a long-running collect would never free memory.
func TestCommandsCollect(t *testing.T) {
	dir := t.TempDir()
	conf := dir + "/config.yaml"
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// GOGC=50 puts the first goal below what initialisation allocated, so the collector, once
	// on, runs at once.
	gcs := gcTrace(t, "50", "collect", "--sample", "--sink", "jsonl:"+dir+"/traces.jsonl",
		"--config", conf, "--credentials-file", "")
	if len(gcs) == 0 {
		t.Error("collect ran without a single garbage collection: the collector was never turned back on")
	}
}
