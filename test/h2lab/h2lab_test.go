package h2lab

import (
	"os"
	"testing"
)

func TestParseNghttpdLog(t *testing.T) {
	f, err := os.Open("testdata/nghttpd.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	truth, err := ParseNghttpdLog(f, "testdata/www")
	if err != nil {
		t.Fatal(err)
	}
	// h2load said: 6 requests, 4 answered 2xx and 2 answered 4xx.
	counts := map[int]int{}
	for _, e := range truth {
		counts[e.Status]++
		if e.Method != "GET" || e.Client != "" {
			t.Fatalf("%+v", e)
		}
		if e.Path == "/f/b.txt" && e.RespBodyLen != 3000 || e.Path == "/f/a.json" && e.RespBody != "{\"a\":1}\n" {
			t.Fatalf("body of %s: %d bytes", e.Path, e.RespBodyLen)
		}
	}
	if len(truth) != 6 || counts[200] != 4 || counts[404] != 2 {
		t.Fatalf("%d exchanges, statuses %v", len(truth), counts)
	}
}
