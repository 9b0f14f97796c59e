package groundtruth

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"

	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"github.com/metlo-labs/metlo-appliance/test/lab/labbody"
)

// Observed is one exchange as a collector reconstructed it from the wire.
type Observed struct {
	// Client is the client "ip:port"; when empty, exchanges match on request fields alone.
	Client string
	Method string
	Target string // request-target; when empty, Path and Query build it
	Path   string
	Query  string
	Status int

	ReqBody           []byte // decoded request body, at most the collector's cap
	ReqBodyTruncated  bool
	RespBody          []byte // decoded response body, at most the collector's cap
	RespBodyTruncated bool
}

// FromExchange converts a reassembled exchange into an Observed one.
func FromExchange(e *exchange.Exchange) Observed {
	client := ""
	if e.Client.IsValid() {
		client = e.Client.String()
	}
	return Observed{
		Client: client, Method: e.Request.Method, Target: e.Request.Target,
		Path: e.Request.Path, Query: e.Request.RawQuery, Status: e.Response.Status,
		ReqBody: e.Request.Body, ReqBodyTruncated: e.Request.BodyTruncated,
		RespBody: e.Response.Body, RespBodyTruncated: e.Response.BodyTruncated,
	}
}

// Options tune Compare.
type Options struct {
	// BodyCap is the collector's body cap in bytes (0: none). A body longer than the cap
	// must be observed as exactly its first BodyCap bytes and flagged truncated.
	BodyCap int
	// IgnoreExtra stops Compare from reporting observed exchanges that are not in the
	// ground truth (e.g. a capture that also holds unrelated traffic).
	IgnoreExtra bool
}

func (o *Observed) target() string {
	if o.Target != "" {
		return o.Target
	}
	if o.Query != "" {
		return o.Path + "?" + o.Query
	}
	return o.Path
}

// Compare returns one human-readable line per difference between the ground truth and the
// observed exchanges: missing exchanges, wrong method/path/query/status/bodies, wrong
// truncation flags and (unless IgnoreExtra) observed exchanges the server never served.
// An empty result means every exchange was seen exactly right.
//
// Exchanges pair up per client address (one TCP connection each) in the order the server
// received them; the observed list may interleave connections in any order but must keep
// each connection's own order. Observed exchanges without a client address match any
// connection, first come first served.
func Compare(truth []Exchange, observed []Observed, opt Options) []string {
	var problems []string
	byClient := map[string][]int{}
	for i := range observed {
		byClient[observed[i].Client] = append(byClient[observed[i].Client], i)
	}
	used := make([]bool, len(observed))
	next := map[string]int{} // per client: index into byClient where the search resumes

	ordered := make([]int, len(truth))
	for i := range ordered {
		ordered[i] = i
	}
	sort.SliceStable(ordered, func(a, b int) bool { return truth[ordered[a]].Seq < truth[ordered[b]].Seq })

	for _, ti := range ordered {
		t := &truth[ti]
		oi := findMatch(t, observed, byClient[t.Client], next, t.Client, used)
		if oi < 0 {
			oi = findMatch(t, observed, byClient[""], next, "", used)
		}
		if oi < 0 {
			problems = append(problems, describe(t)+": missing")
			continue
		}
		used[oi] = true
		problems = append(problems, compareOne(t, &observed[oi], opt.BodyCap)...)
	}
	if !opt.IgnoreExtra {
		for i := range observed {
			if !used[i] {
				o := &observed[i]
				problems = append(problems, fmt.Sprintf("unexpected %s %s (client %s, status %d)",
					o.Method, o.target(), o.Client, o.Status))
			}
		}
	}
	return problems
}

// findMatch returns the first unused observed exchange of one client, at or after the
// resume point, with the truth's method and target; -1 if none. Skipped entries stay
// available so a missing exchange doesn't shift every later one.
func findMatch(t *Exchange, observed []Observed, idx []int, next map[string]int, key string, used []bool) int {
	for k := next[key]; k < len(idx); k++ {
		o := &observed[idx[k]]
		if used[idx[k]] || o.Method != t.Method || o.target() != t.Target {
			continue
		}
		if key != "" {
			next[key] = k + 1
		}
		return idx[k]
	}
	return -1
}

func describe(t *Exchange) string {
	return fmt.Sprintf("seq %d %s %s (client %s)", t.Seq, t.Method, t.Target, t.Client)
}

func compareOne(t *Exchange, o *Observed, bodyCap int) []string {
	var p []string
	d := describe(t)
	if o.Path != "" && o.Path != t.Path {
		p = append(p, fmt.Sprintf("%s: path %q, want %q", d, o.Path, t.Path))
	}
	if (o.Target == "" || o.Path != "") && o.Query != t.Query {
		p = append(p, fmt.Sprintf("%s: query %q, want %q", d, o.Query, t.Query))
	}
	if o.Status != t.Status {
		p = append(p, fmt.Sprintf("%s: status %d, want %d", d, o.Status, t.Status))
	}
	p = append(p, compareBody(d+": request body", t.ReqBodyLen, t.ReqBodySHA256, t.ReqBody, t.ReqBodyGen,
		o.ReqBody, o.ReqBodyTruncated, bodyCap)...)
	p = append(p, compareBody(d+": response body", t.RespBodyLen, t.RespBodySHA256, t.RespBody, t.RespBodyGen,
		o.RespBody, o.RespBodyTruncated, bodyCap)...)
	return p
}

// expectedBody reconstructs the full body when the ground truth can: inline or by recipe.
func expectedBody(n int64, inline, gen string) []byte {
	if int64(len(inline)) == n && (n > 0 || gen == "") {
		return []byte(inline)
	}
	if gen != "" {
		if s, err := labbody.ParseSpec(gen); err == nil && int64(s.Size) == n {
			return labbody.Generate(s)
		}
	}
	return nil
}

func compareBody(what string, n int64, sum, inline, gen string, got []byte, truncated bool, bodyCap int) []string {
	want := expectedBody(n, inline, gen)
	if bodyCap > 0 && n > int64(bodyCap) {
		var p []string
		if !truncated {
			p = append(p, fmt.Sprintf("%s: %d bytes over the %d-byte cap not flagged truncated", what, n, bodyCap))
		}
		if len(got) != bodyCap {
			p = append(p, fmt.Sprintf("%s: kept %d bytes, want the first %d of %d", what, len(got), bodyCap, n))
		} else if want != nil && !bytes.Equal(got, want[:bodyCap]) {
			p = append(p, fmt.Sprintf("%s: kept bytes are not a prefix of the served body (first difference at %d)",
				what, firstDiff(got, want)))
		}
		return p
	}
	if truncated {
		return []string{fmt.Sprintf("%s: flagged truncated, but %d bytes fit the cap", what, n)}
	}
	if int64(len(got)) != n {
		msg := fmt.Sprintf("%s: %d bytes, want %d", what, len(got), n)
		if want != nil && len(got) > 0 {
			msg += fmt.Sprintf(" (first difference at %d)", firstDiff(got, want))
		}
		return []string{msg}
	}
	h := sha256.Sum256(got)
	if hex.EncodeToString(h[:]) != sum {
		msg := what + ": content differs (sha256)"
		if want != nil {
			msg += fmt.Sprintf(", first difference at byte %d", firstDiff(got, want))
		}
		return []string{msg}
	}
	return nil
}

func firstDiff(a, b []byte) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}
