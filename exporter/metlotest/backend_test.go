package metlotest

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestValidPathIsGetValidPath(t *testing.T) {
	for p, ok := range map[string]bool{
		"/": true, "/a": true, "/a/b/": true, "/a//b": true, "//a": true,
		"": false, "a": false, "*": false, "/a//b//c": false, "/a/b//": false, "///": false,
		"/a?b": false, `/a\b`: false, "/a<b": false, "/a>b": false, "/a&b": false, "/a=b": false,
		"/a%3Db": true, "/a;b": true, "/a b": true,
	} {
		if got, _ := ValidPath(p); got != ok {
			t.Errorf("ValidPath(%q) = %v, want %v", p, got, ok)
		}
	}
}

func trace(n int, path, method string, status int) string {
	return fmt.Sprintf(`{"request":{"url":{"host":"h","path":%q,"parameters":[]},"headers":[],"body":"","method":%q},"response":{"status":%d,"headers":[],"body":""},"meta":{"sourcePort":%d}}`, path, method, status, n)
}

func post(t *testing.T, b *Backend, traces ...string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://metlo/api/v1/log-request/batch", strings.NewReader("["+strings.Join(traces, ",")+"]"))
	req.Header.Set("Authorization", "k")
	resp, err := b.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestBatchRules(t *testing.T) {
	b := New("k")
	got := post(t, b, trace(1, "/a", "GET", 200), trace(2, "/b", "GET", 0), trace(3, "/c", "PROPFIND", 207),
		trace(4, "/d=1", "GET", 200), trace(5, "/e", "GET", 200))
	st := b.Stats()
	if got != 400 || st.Stored != 1 || st.Skipped != 1 || st.Discarded != 1 || st.Refused != 1 || st.Lost != 1 {
		t.Fatalf("status %d, %+v", got, st)
	}
	if code := post(t, b, strings.Repeat(" ", MaxBody+1)); code != 413 {
		t.Fatalf("over 2 MiB: %d", code)
	}
	b.SetDown(true)
	if _, err := b.Client().Get("http://metlo/api/v1"); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("down: %v", err)
	}
}

func TestQueueOverflowAnswers200(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := New("k")
		b.DrainRate = 100
		var batch []string
		for i := range 3000 {
			batch = append(batch, trace(i, "/x", "GET", 200))
		}
		if code := post(t, b, batch...); code != 200 {
			t.Fatalf("status %d", code)
		}
		if st := b.Stats(); st.Stored != 1001 || st.Overflowed != 1999 {
			t.Fatalf("%+v: want 1001 kept, the rest dropped silently", st)
		}
		time.Sleep(20 * time.Second) // the analyzer drains 2000
		post(t, b, batch[:500]...)
		if st := b.Stats(); st.Stored != 1501 {
			t.Fatalf("%+v after draining", st)
		}
	})
}
