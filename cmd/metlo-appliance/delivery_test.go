package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metlo-labs/metlo-appliance/exporter/metlotest"
)

const sampleExchanges = 157 // exchanges in the bundled sample capture

// offlineRun runs `collect --sample` to the Metlo backend at url with a spool in dir and
// returns collect's error and its stderr.
func offlineRun(t *testing.T, url, dir string, extra ...string) (string, error) {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(conf, nil, 0o600)
	t.Setenv("METLO_KEY", fullKey)
	root := newRootCmd()
	root.SetArgs(append([]string{"collect", "--sample", "--sink", "metlo:" + url, "--config", conf,
		"--credentials-file", filepath.Join(dir, "none"), "--spool-dir", dir, "--rate-limit", "0"}, extra...))
	var stderr strings.Builder
	root.SetErr(&stderr)
	err := root.ExecuteContext(context.Background())
	return stderr.String(), err
}

func exitCode(err error) int {
	var e *exitError
	if errors.As(err, &e) {
		return e.ExitCode()
	}
	if err != nil {
		return 1
	}
	return 0
}

// Rows "backend down during an offline run" and "live, backend down, then restarted", at
// the command level over real HTTP: a run that cannot deliver keeps its traces in the
// spool and says so (exit 4); the next run delivers them with its own, exactly once.
func TestOfflineRunSpoolsAndNextRunDelivers(t *testing.T) {
	b := metlotest.New(fullKey)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused
	dir := t.TempDir()

	stderr, err := offlineRun(t, "http://"+addr, dir, "--offline-flush-timeout", "2s")
	if exitCode(err) != exitSpooled || !strings.Contains(stderr, "still_spooled=157") {
		t.Fatalf("run with the backend down: %v (exit %d)\n%s", err, exitCode(err), stderr)
	}

	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: b}
	go srv.Serve(ln)
	defer srv.Close()
	stderr, err = offlineRun(t, "http://"+addr, dir)
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, stderr)
	}
	if st := b.Stats(); st.Stored+st.Skipped != 2*sampleExchanges {
		t.Fatalf("backend stored %d (+%d skipped), want both runs' %d", st.Stored, st.Skipped, 2*sampleExchanges)
	}
	if !strings.Contains(stderr, "replayed from the spool: 157") || !strings.Contains(stderr, "sent=314") {
		t.Fatalf("summary does not account for the replay:\n%s", stderr)
	}
}

// Row "backend down 30 s during an offline run" over real sockets (a shorter outage:
// the synctest version in exporter covers 30 s and 120 s).
func TestOfflineRunWaitsForTheBackend(t *testing.T) {
	b := metlotest.New(fullKey)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	go func() {
		time.Sleep(2 * time.Second)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("re-listen: %v", err)
			return
		}
		srv := &http.Server{Handler: b}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}()
	stderr, err := offlineRun(t, "http://"+addr, t.TempDir())
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if st := b.Stats(); st.Stored != sampleExchanges {
		t.Fatalf("stored %d of %d", st.Stored, sampleExchanges)
	}
}

// Row "every trace rejected (413 always)": the offline run exits 3, not 0.
func TestOfflineRunThatDropsExitsNonZero(t *testing.T) {
	b := metlotest.New(fullKey)
	b.MaxBody = 50
	srv := httptest.NewServer(b)
	defer srv.Close()
	stderr, err := offlineRun(t, srv.URL, t.TempDir())
	if exitCode(err) != exitDropped || !strings.Contains(stderr, "dropped_too_large=157") {
		t.Fatalf("exit %d (%v), want %d\n%s", exitCode(err), err, exitDropped, stderr)
	}
}
