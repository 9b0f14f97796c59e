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
	// Unordered matches exchanges of a connection in any order (HTTP/2 multiplexes
	// streams, so neither the server's log nor the collector keeps request order); see
	// compareUnordered.
	Unordered bool
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
// each connection's own order. Within a connection the two sequences are aligned on
// (method, target) as a longest common subsequence, so a missing or extra exchange costs
// itself only, even when the same request recurs later on the connection; among equally
// long alignments, the one whose pairs also agree on status and body sizes wins (a lost
// GET before a conditional GET of the same URL must not shift the 304 onto the 200). Observed
// exchanges without a client address match any connection, first come first served.
func Compare(truth []Exchange, observed []Observed, opt Options) []string {
	if opt.Unordered {
		return compareUnordered(truth, observed, opt)
	}
	ordered := make([]int, len(truth))
	for i := range ordered {
		ordered[i] = i
	}
	sort.SliceStable(ordered, func(a, b int) bool { return truth[ordered[a]].Seq < truth[ordered[b]].Seq })
	truthBy := map[string][]int{}
	for _, ti := range ordered {
		truthBy[truth[ti].Client] = append(truthBy[truth[ti].Client], ti)
	}
	obsBy := map[string][]int{}
	for i := range observed {
		obsBy[observed[i].Client] = append(obsBy[observed[i].Client], i)
	}
	match := make([]int, len(truth)) // observed index per truth, -1 when none
	for i := range match {
		match[i] = -1
	}
	used := make([]bool, len(observed))
	for client, ts := range truthBy {
		for k, oi := range align(truth, ts, observed, obsBy[client]) {
			if oi >= 0 {
				match[ts[k]], used[oi] = oi, true
			}
		}
	}
	anon := obsBy[""]
	var problems []string
	for _, ti := range ordered {
		t := &truth[ti]
		oi := match[ti]
		for k := 0; oi < 0 && k < len(anon); k++ {
			if o := &observed[anon[k]]; !used[anon[k]] && o.Method == t.Method && o.target() == t.Target {
				oi = anon[k]
				used[oi] = true
			}
		}
		if oi < 0 {
			problems = append(problems, describe(t)+": missing")
			continue
		}
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

// alignLimit bounds the alignment table; longer connections fall back to a greedy scan.
const alignLimit = 64 << 20

// align pairs a connection's truth exchanges (ts, in server order) with its observed ones
// (os, in emission order) as a longest common subsequence on (method, target), ties broken
// by agreement on status and body sizes; it returns the observed index for each truth
// exchange, or -1.
func align(truth []Exchange, ts []int, observed []Observed, os []int) []int {
	out := make([]int, len(ts))
	n, m := len(ts), len(os)
	same := func(i, j int) bool {
		t, o := &truth[ts[i]], &observed[os[j]]
		return o.Method == t.Method && o.target() == t.Target
	}
	// score weighs a pair: a match counts more than the details of every other pair could.
	score := func(i, j int) int32 {
		t, o := &truth[ts[i]], &observed[os[j]]
		sc := int32(3*min(n, m) + 1)
		if o.Status == t.Status {
			sc++
		}
		if int64(len(o.ReqBody)) == t.ReqBodyLen && sha256Hex(o.ReqBody) == t.ReqBodySHA256 {
			sc++
		}
		if int64(len(o.RespBody)) == t.RespBodyLen && sha256Hex(o.RespBody) == t.RespBodySHA256 {
			sc++
		}
		return sc
	}
	if n*m > alignLimit || 4*min(n, m)*min(n, m) > 1<<30 { // the table, or a score, would be too large
		j := 0
		for i := range ts {
			out[i] = -1
			for k := j; k < m; k++ {
				if same(i, k) {
					out[i], j = os[k], k+1
					break
				}
			}
		}
		return out
	}
	// best[i][j]: the best score aligning ts[i:] with os[j:].
	best := make([]int32, (n+1)*(m+1))
	at := func(i, j int) *int32 { return &best[i*(m+1)+j] }
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			v := max(*at(i+1, j), *at(i, j+1))
			if same(i, j) {
				v = max(v, *at(i+1, j+1)+score(i, j))
			}
			*at(i, j) = v
		}
	}
	for i, j := 0, 0; i < n; {
		switch {
		case j < m && same(i, j) && *at(i, j) == *at(i+1, j+1)+score(i, j):
			out[i] = os[j]
			i, j = i+1, j+1
		case j < m && *at(i, j+1) >= *at(i+1, j):
			j++
		default:
			out[i] = -1
			i++
		}
	}
	return out
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
	if sha256Hex(got) != sum {
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

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
