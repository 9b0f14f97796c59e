package exporter

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
)

// The header verdict cache answers like Redact.Header for many names, colliding ones and
// case variants included, on first sight and on repeats.
func TestHeaderVerdictCacheMatchesRedactor(t *testing.T) {
	enc := NewExporterEncoder(Options{})
	var hs []exchange.Header
	for i := range 150 {
		hs = append(hs, exchange.Header{Name: fmt.Sprintf("X-Custom-%d", i), Value: "plain"})
	}
	for _, n := range []string{"Authorization", "authorization", "AUTHORIZATION", "Cookie", "X-Api-Key", "x-api-key",
		"X-Session-Id", "Content-Type", "Accept", "WWW-Authenticate", "X-Auth-Token", "Set-Cookie"} {
		hs = append(hs, exchange.Header{Name: n, Value: "secretvalue"})
	}
	x := sampleExchange()
	x.Request.Headers = hs
	for round := range 3 {
		var tr struct {
			Request struct {
				Headers []struct{ Name, Value string }
			}
		}
		if err := json.Unmarshal(enc.AppendTrace(nil, x), &tr); err != nil {
			t.Fatal(err)
		}
		for i, h := range tr.Request.Headers {
			masked := h.Value != hs[i].Value
			if want := enc.Redact.Header(hs[i].Name); masked != want {
				t.Fatalf("round %d: %s masked=%v, want %v", round, hs[i].Name, masked, want)
			}
		}
	}
}

// isContentType is strings.EqualFold for the one header name bodies are typed by.
func TestIsContentType(t *testing.T) {
	for _, n := range []string{"Content-Type", "content-type", "CONTENT-TYPE", "cOnTeNt-TyPe", "Content\rType", "Content_Type",
		"Content-Typ", "Content-Types", "", "Content-Tÿpe", "Kontent-Type"} {
		if got, want := isContentType(n), len(n) == 12 && strings.EqualFold(n, "content-type"); got != want {
			t.Errorf("%q: %v, want %v", n, got, want)
		}
	}
}
