// Package tsharktest runs tshark, the peer the collector is checked against, over a capture
// file in tests.
package tsharktest

import (
	"os/exec"
	"strings"
	"testing"
)

// HTTP counts the frames in which tshark finds an HTTP request, and those in which it finds
// a response (a response tshark cannot frame, such as HTTP/0.9's, is not one).
func HTTP(t testing.TB, path string) (requests, responses int) {
	t.Helper()
	out, err := exec.Command("tshark", "-r", path, "-Y", "http.request || http.response",
		"-T", "fields", "-e", "http.request", "-e", "http.response").Output()
	if err != nil {
		t.Fatalf("tshark -r %s: %v", path, err)
	}
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		req, resp, _ := strings.Cut(line, "\t")
		if req != "" {
			requests++
		}
		if resp != "" {
			responses++
		}
	}
	return requests, responses
}
