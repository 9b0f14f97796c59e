package groundtruth

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
)

// compareUnordered is Compare for multiplexed connections: each truth exchange matches an
// unused observed one of the same client (any client when the truth has none, as a server
// log without peer addresses) with the same method and target, preferring one whose
// request body is the same (many calls of one gRPC method share their target); order
// within a connection does not matter.
func compareUnordered(truth []Exchange, observed []Observed, opt Options) []string {
	type key struct{ client, method, target, reqSum string }
	byKey := map[key][]int{}
	byTarget := map[key][]int{}
	for i := range observed {
		o := &observed[i]
		sum := sha256.Sum256(o.ReqBody)
		for _, c := range []string{o.Client, "*"} {
			byKey[key{c, o.Method, o.target(), hex.EncodeToString(sum[:])}] = append(byKey[key{c, o.Method, o.target(), hex.EncodeToString(sum[:])}], i)
			byTarget[key{c, o.Method, o.target(), ""}] = append(byTarget[key{c, o.Method, o.target(), ""}], i)
		}
	}
	used := make([]bool, len(observed))
	take := func(list []int) int {
		for _, i := range list {
			if !used[i] {
				used[i] = true
				return i
			}
		}
		return -1
	}
	ordered := make([]int, len(truth))
	for i := range ordered {
		ordered[i] = i
	}
	sort.SliceStable(ordered, func(a, b int) bool { return truth[ordered[a]].Seq < truth[ordered[b]].Seq })
	clientOf := func(t *Exchange) string {
		if t.Client == "" {
			return "*"
		}
		return t.Client
	}
	// Exact request bodies first, so a lost call does not shift its neighbours' pairs.
	match := make([]int, len(truth))
	for _, ti := range ordered {
		t := &truth[ti]
		match[ti] = take(byKey[key{clientOf(t), t.Method, t.Target, t.ReqBodySHA256}])
	}
	var problems []string
	for _, ti := range ordered {
		t := &truth[ti]
		oi := match[ti]
		if oi < 0 {
			oi = take(byTarget[key{clientOf(t), t.Method, t.Target, ""}])
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
				problems = append(problems, fmt.Sprintf("unexpected %s %s (client %s, status %d)", o.Method, o.target(), o.Client, o.Status))
			}
		}
	}
	return problems
}
