package groundtruth

import (
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/metlo-labs/metlo-appliance/test/lab/labbody"
)

func truthFixture() []Exchange {
	mk := func(seq int, client, method, target string, status int, req, resp []byte, respGen string) Exchange {
		e := Exchange{Seq: seq, Client: client, Method: method, Target: target, Path: target, Status: status}
		if p, q, ok := strings.Cut(target, "?"); ok {
			e.Path, e.Query = p, q
		}
		e.SetReqBody(req)
		e.SetRespBody(resp)
		e.RespBodyGen = respGen
		return e
	}
	big := labbody.Spec{Kind: labbody.KindText, Seed: 3, Size: 10000}
	return []Exchange{
		mk(1, "10.0.0.1:1000", "GET", "/api/users?page=1&tag=a&tag=b", 200, nil, []byte(`{"users":[]}`), ""),
		mk(2, "10.0.0.2:2000", "POST", "/api/users", 201, []byte(`{"name":"ada"}`), []byte(`{"id":7}`), ""),
		mk(3, "10.0.0.1:1000", "GET", "/api/blob?gen="+big.String(), 200, nil, labbody.Generate(big), big.String()),
		mk(4, "10.0.0.1:1000", "HEAD", "/api/users/7", 200, nil, nil, ""),
	}
}

func observedFrom(truth []Exchange) []Observed {
	var out []Observed
	for _, t := range truth {
		o := Observed{Client: t.Client, Method: t.Method, Target: t.Target, Path: t.Path, Query: t.Query, Status: t.Status,
			ReqBody: expectedBody(t.ReqBodyLen, t.ReqBody, t.ReqBodyGen), RespBody: expectedBody(t.RespBodyLen, t.RespBody, t.RespBodyGen)}
		out = append(out, o)
	}
	return out
}

func TestCompareAllMatch(t *testing.T) {
	truth := truthFixture()
	obs := observedFrom(truth)
	// Connections may interleave in any order; each keeps its own order.
	obs[0], obs[1] = obs[1], obs[0]
	if p := Compare(truth, obs, Options{}); len(p) != 0 {
		t.Fatalf("want no problems, got %q", p)
	}
}

func TestCompareFindsEveryKindOfMismatch(t *testing.T) {
	truth := truthFixture()
	obs := observedFrom(truth)
	obs[0].Status = 404
	obs[0].Query = "page=1"
	obs[1].ReqBody = []byte(`{"name":"bob"}`)
	obs = obs[:3] // HEAD missing
	obs = append(obs, Observed{Client: "10.0.0.9:9", Method: "GET", Target: "/extra", Status: 200})
	got := Compare(truth, obs, Options{})
	want := []string{
		`seq 1 GET /api/users?page=1&tag=a&tag=b (client 10.0.0.1:1000): query "page=1", want "page=1&tag=a&tag=b"`,
		`seq 1 GET /api/users?page=1&tag=a&tag=b (client 10.0.0.1:1000): status 404, want 200`,
		`seq 2 POST /api/users (client 10.0.0.2:2000): request body: content differs (sha256), first difference at byte 9`,
		`seq 4 HEAD /api/users/7 (client 10.0.0.1:1000): missing`,
		`unexpected GET /extra (client 10.0.0.9:9, status 200)`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if p := Compare(truth, obs, Options{IgnoreExtra: true}); len(p) != 4 {
		t.Fatalf("IgnoreExtra: got %d problems, want 4: %q", len(p), p)
	}
}

func TestCompareTruncation(t *testing.T) {
	truth := truthFixture()
	const bodyCap = 4096
	obs := observedFrom(truth)
	full := obs[2].RespBody
	obs[2].RespBody, obs[2].RespBodyTruncated = full[:bodyCap], true
	if p := Compare(truth, obs, Options{BodyCap: bodyCap}); len(p) != 0 {
		t.Fatalf("capped prefix: want no problems, got %q", p)
	}

	wrong := append([]byte(nil), full[:bodyCap]...)
	wrong[100] ^= 0xff
	obs[2].RespBody = wrong
	obs[2].RespBodyTruncated = false
	got := strings.Join(Compare(truth, obs, Options{BodyCap: bodyCap}), "\n")
	for _, w := range []string{"not flagged truncated", "not a prefix of the served body (first difference at 100)"} {
		if !strings.Contains(got, w) {
			t.Errorf("want %q in:\n%s", w, got)
		}
	}

	obs[2].RespBody, obs[2].RespBodyTruncated = full[:1000], true
	got = strings.Join(Compare(truth, obs, Options{BodyCap: bodyCap}), "\n")
	if !strings.Contains(got, "kept 1000 bytes, want the first 4096 of 10000") {
		t.Errorf("short prefix not reported:\n%s", got)
	}

	// A small body flagged truncated is wrong too.
	obs = observedFrom(truth)
	obs[1].RespBodyTruncated = true
	got = strings.Join(Compare(truth, obs, Options{BodyCap: bodyCap}), "\n")
	if !strings.Contains(got, "flagged truncated, but 8 bytes fit the cap") {
		t.Errorf("false truncation flag not reported:\n%s", got)
	}
}

func TestCompareWithoutClientAddresses(t *testing.T) {
	truth := truthFixture()
	obs := observedFrom(truth)
	for i := range obs {
		obs[i].Client = ""
	}
	if p := Compare(truth, obs, Options{}); len(p) != 0 {
		t.Fatalf("want no problems, got %q", p)
	}
}

func TestLoadCommittedGroundTruth(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	for _, name := range []string{"groundtruth.jsonl", "raw_groundtruth.jsonl"} {
		path := filepath.Join(filepath.Dir(file), "..", "..", "..", "testdata", "lab", name)
		truth, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(truth) < 150 {
			t.Fatalf("%s: %d exchanges, want ≥ 150", name, len(truth))
		}
		// The ground truth must be self-consistent: every reconstructable body hashes right.
		obs := observedFrom(truth)
		var check []Exchange
		var checkObs []Observed
		for i := range truth {
			reqOK := obs[i].ReqBody != nil || truth[i].ReqBodyLen == 0
			respOK := obs[i].RespBody != nil || truth[i].RespBodyLen == 0
			if reqOK && respOK {
				check = append(check, truth[i])
				checkObs = append(checkObs, obs[i])
			}
		}
		if p := Compare(check, checkObs, Options{}); len(p) != 0 {
			t.Fatalf("%s: inconsistent: %q", name, p)
		}
		if len(check) < len(truth)*9/10 {
			t.Fatalf("%s: only %d of %d exchanges have reconstructable bodies", name, len(check), len(truth))
		}
		t.Logf("%s: %d exchanges, %d with bodies reconstructable from inline text or recipes", name, len(truth), len(check))
	}
}

func TestLoadRejectsBadLines(t *testing.T) {
	_, err := Read(strings.NewReader("{\"seq\":1}\nnot json\n"))
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("want a line-2 error, got %v", err)
	}
}

func TestCompareUnordered(t *testing.T) {
	mk := func(client, target, req string, status int) Exchange {
		e := Exchange{Client: client, Method: "POST", Target: target, Path: target, Status: status}
		e.SetReqBody([]byte(req))
		e.SetRespBody([]byte("r" + req))
		return e
	}
	truth := []Exchange{mk("c:1", "/svc/Get", "a", 200), mk("c:1", "/svc/Get", "b", 404), mk("", "/f", "", 200)}
	for i := range truth {
		truth[i].Seq = i + 1
	}
	obs := func(client, target, req string, status int) Observed {
		return Observed{Client: client, Method: "POST", Target: target, Path: target, Status: status, ReqBody: []byte(req), RespBody: []byte("r" + req)}
	}
	// Reversed order, and the log line without a client matches any connection.
	seen := []Observed{obs("c:2", "/f", "", 200), obs("c:1", "/svc/Get", "b", 404), obs("c:1", "/svc/Get", "a", 200)}
	if p := Compare(truth, seen, Options{Unordered: true}); len(p) != 0 {
		t.Fatalf("problems: %v", p)
	}
	if p := Compare(truth, seen, Options{}); len(p) == 0 {
		t.Fatal("ordered comparison accepted a reordered connection")
	}
	seen[1].Status = 500
	if p := Compare(truth, seen, Options{Unordered: true}); len(p) != 1 {
		t.Fatalf("problems: %v", p)
	}
	if p := Compare(truth, seen[:2], Options{Unordered: true}); len(p) != 2 {
		t.Fatalf("a missing exchange: %v", p)
	}
}
