package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/metlo-labs/metlo-appliance/test/synth"
)

// runCollectCLI runs the root command in-process with isolated configuration and returns stderr
// and the process exit status.
func runCollectCLI(t *testing.T, stderr io.Writer, args ...string) int {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(conf, nil, 0o600)
	root := newRootCmd()
	root.SetArgs(append(args, "--config", conf, "--credentials-file", ""))
	root.SetOut(io.Discard)
	root.SetErr(stderr)
	err := root.ExecuteContext(context.Background())
	if err != nil {
		io.WriteString(stderr, "metlo-appliance: "+err.Error()+"\n") // as main does
	}
	return exitCode(err)
}

// On a terminal an offline run redraws a progress line (share of the file, packets,
// exchanges) and clears it before the summary; elsewhere it prints none.
func TestProgressOnATerminalOnly(t *testing.T) {
	old := progressInterval
	progressInterval = time.Millisecond
	defer func() { progressInterval = old }()
	// A capture that takes a few hundred milliseconds to read.
	pcap := filepath.Join(t.TempDir(), "synthetic.pcap")
	f, err := os.Create(pcap)
	if err != nil {
		t.Fatal(err)
	}
	if err := synth.Build(400, 40, synth.MixedAPI).WritePcap(f); err != nil {
		t.Fatal(err)
	}
	f.Close()

	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 200}); err != nil {
		t.Fatal(err)
	}
	var screen bytes.Buffer
	done := make(chan struct{})
	go func() { io.Copy(&screen, ptmx); close(done) }()
	code := runCollectCLI(t, tty, "collect", "--pcap", pcap, "--sink", "jsonl:"+filepath.Join(t.TempDir(), "out.jsonl"), "--workers", "1")
	tty.Close()
	<-done
	out := screen.String()
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if !strings.Contains(out, "\r\x1b[Ksynthetic.pcap ") || !strings.Contains(out, "% ") || !strings.Contains(out, " packets  ") || !strings.Contains(out, " exchanges  ") {
		t.Fatalf("no progress line on the terminal:\n%q", out)
	}
	if !regexp.MustCompile("\r\x1b\\[K\r?\n── metlo-appliance summary").MatchString(out) {
		t.Errorf("the progress line is not cleared before the summary:\n%q", out)
	}

	var plain strings.Builder
	if code := runCollectCLI(t, &plain, "collect", "--pcap", pcap, "--sink", "jsonl:"+filepath.Join(t.TempDir(), "out.jsonl")); code != 0 {
		t.Fatalf("exit %d:\n%s", code, plain.String())
	}
	if strings.ContainsAny(plain.String(), "\r\x1b") || strings.Contains(plain.String(), "% ") {
		t.Errorf("progress written to a non-terminal:\n%q", plain.String())
	}
}

func TestProgressLine(t *testing.T) {
	got := progressLine("big.pcap", 1_200_000_000, 2_800_000_000, progressReading{packets: 1234567, exchanges: 45678}, 10*time.Second)
	want := "big.pcap   43%  1.20 GB of 2.80 GB  1234567 packets  45678 exchanges  120.0 MB/s  0:13 left"
	if got != want {
		t.Errorf("progressLine = %q, want %q", got, want)
	}
	var b strings.Builder
	term := &terminal{w: &b, width: 10}
	term.draw("0123456789abc") // cut to the width: a wrapped line is not redrawn in place
	term.Write([]byte("log line\n"))
	if b.String() != "\r\x1b[K012345678\r\x1b[Klog line\n" {
		t.Errorf("terminal wrote %q", b.String())
	}
	if got := progressLine("standard input", 5_000_000, -1, progressReading{packets: 10, exchanges: 2}, time.Second); got != "standard input  5.0 MB  10 packets  2 exchanges  5.0 MB/s" {
		t.Errorf("progressLine without a size = %q", got)
	}
}

// A mistake in the input is the only thing the run prints, names what is wrong, and exits
// with the usage status (64) when the command line is malformed, the configuration status
// (78) when a setting is wrong, 1 when the input itself is.
func TestInputErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.pcap")
	os.WriteFile(empty, nil, 0o600)
	garbage := filepath.Join(dir, "garbage.pcap")
	os.WriteFile(garbage, bytes.Repeat([]byte("not a capture "), 100), 0o600)
	cut := filepath.Join(dir, "cut.pcap")
	os.WriteFile(cut, sampleCapture[:10], 0o600)
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"missing interface", []string{"collect", "-i", "nonexist0"}, exitConfig, `metlo-appliance: interface "nonexist0" does not exist on this host (interfaces: `},
		{"missing file", []string{"collect", "--pcap", filepath.Join(dir, "nope.pcap")}, exitConfig, "metlo-appliance: capture file " + filepath.Join(dir, "nope.pcap") + " does not exist"},
		{"directory", []string{"collect", "--pcap", dir}, exitConfig, "metlo-appliance: capture file " + dir + " is a directory"},
		{"empty file", []string{"collect", "--pcap", empty}, exitFailure, "metlo-appliance: capture file " + empty + " is empty: nothing to read"},
		{"garbage", []string{"collect", "--pcap", garbage}, exitFailure, "metlo-appliance: capture file " + garbage + ": unknown capture format"},
		{"cut in the header", []string{"collect", "--pcap", cut}, exitFailure, "metlo-appliance: capture file " + cut + ": read pcap header: unexpected EOF"},
		{"conflicting inputs", []string{"collect", "--sample", "--pcap", garbage}, exitConfig, "metlo-appliance: config: sample (from flag --sample) and pcap (from flag --pcap) both name the input"},
		{"bad flag value", []string{"collect", "--sample", "--workers", "lots"}, exitUsage, `metlo-appliance: --workers: "lots" is not a whole number (see metlo-appliance collect --help)`},
		{"unknown flag", []string{"collect", "--sample", "--frobnicate"}, exitUsage, "metlo-appliance: unknown flag: --frobnicate"},
		{"stray argument", []string{"collect", "extra"}, exitUsage, `metlo-appliance: unknown command "extra" for "metlo-appliance collect"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stderr strings.Builder
			code := runCollectCLI(t, &stderr, c.args...)
			if code != c.code || !strings.HasPrefix(stderr.String(), c.want) || strings.Count(stderr.String(), "\n") != 1 {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d and one line starting %q", code, stderr.String(), c.code, c.want)
			}
		})
	}
}

// An empty standard input is named as such, not as a truncated header.
func TestEmptyStdin(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	old := os.Stdin
	os.Stdin = r
	defer func() { os.Stdin = old; r.Close() }()
	var stderr strings.Builder
	if code := runCollectCLI(t, &stderr, "collect", "--pcap", "-"); code != exitFailure ||
		stderr.String() != "metlo-appliance: capture file standard input is empty: nothing to read\n" {
		t.Errorf("exit %d:\n%s", code, stderr.String())
	}
}

func TestExitCodes(t *testing.T) {
	for err, want := range map[error]int{
		nil:                                0,
		errors.New("backend down"):         exitFailure,
		usageError(errors.New("bad flag")): exitUsage,
		configError(errors.New("bad key")): exitConfig,
		errors.New(`unknown command "x" for "metlo-appliance"`): exitUsage,
		&exitError{exitSpooled, errors.New("spooled")}:          exitSpooled,
	} {
		if got := exitCode(err); got != want {
			t.Errorf("exitCode(%v) = %d, want %d", err, got, want)
		}
	}
}

// An offline run serves /metrics when metrics-addr is given for it (flag or environment)
// and says so; the config file's address (the live service's) is not used, and the
// summary says how to get metrics.
func TestOfflineMetricsAddr(t *testing.T) {
	for _, c := range []struct {
		name   string
		args   []string
		env    string
		served bool
	}{
		{"flag", []string{"--metrics-addr", "127.0.0.1:0"}, "", true},
		{"environment", nil, "127.0.0.1:0", true},
		{"default", nil, "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("METLO_METRICS_ADDR", c.env)
			var stderr strings.Builder
			args := append([]string{"collect", "--sample", "--sink", "jsonl:" + filepath.Join(t.TempDir(), "out.jsonl")}, c.args...)
			if code := runCollectCLI(t, &stderr, args...); code != 0 {
				t.Fatalf("exit %d\n%s", code, stderr.String())
			}
			served := strings.Contains(stderr.String(), `msg="serving metrics" addr=127.0.0.1:`)
			notServed := strings.Contains(stderr.String(), "metrics   not served: an offline run serves /metrics only when --metrics-addr")
			if served != c.served || notServed == c.served {
				t.Errorf("served %v, said not served %v; want served %v\n%s", served, notServed, c.served, stderr.String())
			}
		})
	}
}

// With one worker a replay writes the same bytes every time (one encoder keeps the
// worker's order); with several, the same traces in an order that may vary.
func TestReplayIsDeterministicWithOneWorker(t *testing.T) {
	run := func(workers string) []byte {
		out := filepath.Join(t.TempDir(), "out.jsonl")
		var stderr strings.Builder
		if code := runCollectCLI(t, &stderr, "collect", "--sample", "--workers", workers, "--sink", "jsonl:"+out); code != 0 {
			t.Fatalf("exit %d\n%s", code, stderr.String())
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	first := run("1")
	if n := bytes.Count(first, []byte("\n")); n != sampleExchanges {
		t.Fatalf("%d traces, want %d", n, sampleExchanges)
	}
	for range 4 {
		if again := run("1"); !bytes.Equal(again, first) {
			t.Fatal("two replays with --workers 1 wrote different output")
		}
	}
	sorted := func(b []byte) string {
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		slices.Sort(lines)
		return strings.Join(lines, "\n")
	}
	if sorted(run("4")) != sorted(first) {
		t.Error("four workers wrote other traces than one")
	}
}

// Secrets stay masked in everything a run prints — logs at debug level, the summary and
// the final error — when the backend URL carries a password and the backend is down.
func TestRunPrintsNoSecrets(t *testing.T) {
	t.Setenv("METLO_KEY", fullKey)
	var stderr strings.Builder
	code := runCollectCLI(t, &stderr, "collect", "--sample", "--sink", "metlo:http://ops:hunter2@"+freeTCPAddr(t),
		"--spool-dir", "", "--offline-flush-timeout", "1s", "--log-level", "debug")
	out := stderr.String()
	if code != exitDropped || !strings.Contains(out, "delivery  metlo:http://127.0.0.1:") {
		t.Fatalf("exit %d, want %d (traces dropped at shutdown):\n%s", code, exitDropped, out)
	}
	for _, secret := range []string{"hunter2", fullKey[len("metlo."):]} {
		if strings.Contains(out, secret) {
			t.Errorf("a secret (%q) was printed:\n%s", secret, out)
		}
	}
}

// The built binary, as an operator runs it: a progress line on a terminal's stderr while the
// traces go to a file; none when the traces scroll by on the same terminal (they would tear
// it apart), nor when stderr is a pipe.
func TestProgressBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	pcap := filepath.Join(dir, "synthetic.pcap")
	f, err := os.Create(pcap)
	if err != nil {
		t.Fatal(err)
	}
	if err := synth.Build(50, 10, synth.MixedAPI).WritePcap(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	conf := filepath.Join(dir, "config.yaml")
	os.WriteFile(conf, nil, 0o600)
	// run starts the binary with stderr (and, when stdoutTTY, stdout) on a fresh terminal and
	// returns what the terminal showed and what reached stdout otherwise.
	run := func(stdoutTTY, stderrTTY bool, sink string) (screen, stdout, stderr string) {
		t.Helper()
		ptmx, tty, err := pty.Open()
		if err != nil {
			t.Skipf("no pseudo-terminal: %v", err)
		}
		defer ptmx.Close()
		if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 200}); err != nil {
			t.Fatal(err)
		}
		var out, errOut, scr bytes.Buffer
		cmd := exec.Command(bin, "collect", "--pcap", pcap, "--sink", sink, "--config", conf, "--credentials-file", "")
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if stdoutTTY {
			cmd.Stdout = tty
		}
		if stderrTTY {
			cmd.Stderr = tty
		}
		done := make(chan struct{})
		go func() { io.Copy(&scr, ptmx); close(done) }()
		err = cmd.Run()
		tty.Close()
		<-done
		if err != nil {
			t.Fatalf("%v\nterminal:\n%q\nstderr:\n%s", err, scr.String(), errOut.String())
		}
		return scr.String(), out.String(), errOut.String()
	}
	progress := regexp.MustCompile(`\r\x1b\[Ksynthetic\.pcap +\d+%  [0-9.]+ [kMG]?B of [0-9.]+ [kMG]?B  \d+ packets  \d+ exchanges  `)

	screen, stdout, _ := run(false, true, "jsonl:-")
	if !progress.MatchString(screen) || !regexp.MustCompile("\r\x1b\\[K\r?\n── metlo-appliance summary").MatchString(screen) {
		t.Errorf("stderr on a terminal, traces to a pipe: want a progress line cleared before the summary:\n%q", screen)
	}
	if n := strings.Count(stdout, "\n"); n == 0 || strings.ContainsAny(stdout, "\r\x1b") {
		t.Errorf("stdout holds %d traces, or terminal codes:\n%.300q", n, stdout)
	}

	screen, _, _ = run(true, true, "jsonl:-")
	if strings.Contains(screen, "\x1b[K") || strings.Contains(screen, "synthetic.pcap ") || !strings.Contains(screen, `"request":`) {
		t.Errorf("traces on the terminal: want them, and no progress line:\n%.600q", screen)
	}

	_, _, stderr := run(false, false, "jsonl:"+filepath.Join(dir, "out.jsonl"))
	if strings.ContainsAny(stderr, "\r\x1b") || !strings.Contains(stderr, "── metlo-appliance summary") {
		t.Errorf("stderr to a pipe: want the summary and no terminal codes:\n%q", stderr)
	}
}
