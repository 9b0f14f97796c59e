// Package labbody generates the deterministic bodies the lab client and server exchange, so
// ground truth can name a large body by its recipe instead of storing it.
package labbody

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

// Kinds of generated bodies.
const (
	// KindNDJSON is newline-delimited JSON records: realistic API data that compresses well.
	KindNDJSON = "ndjson"
	// KindText is seeded random alphanumeric text: compresses poorly, so it stays big on the wire.
	KindText = "text"
)

// Spec is a body recipe: Generate(spec) always returns the same bytes.
type Spec struct {
	Kind string
	Seed uint64
	Size int
}

// String renders the spec as "kind/seed/size", the form used in ground truth and headers.
func (s Spec) String() string { return fmt.Sprintf("%s/%d/%d", s.Kind, s.Seed, s.Size) }

// MaxSize bounds generated bodies so a bad recipe cannot exhaust memory.
const MaxSize = 64 << 20

// ParseSpec parses "kind/seed/size".
func ParseSpec(s string) (Spec, error) {
	parts := strings.Split(s, "/")
	if len(parts) != 3 {
		return Spec{}, fmt.Errorf("parse body spec %q: want kind/seed/size", s)
	}
	seed, err := strconv.ParseUint(parts[1], 10, 64)
	if err != nil {
		return Spec{}, fmt.Errorf("parse body spec seed: %w", err)
	}
	size, err := strconv.Atoi(parts[2])
	if err != nil {
		return Spec{}, fmt.Errorf("parse body spec size: %w", err)
	}
	if size < 0 || size > MaxSize {
		return Spec{}, fmt.Errorf("parse body spec: size %d out of range", size)
	}
	if parts[0] != KindNDJSON && parts[0] != KindText {
		return Spec{}, errors.New("parse body spec: unknown kind " + strconv.Quote(parts[0]))
	}
	return Spec{Kind: parts[0], Seed: seed, Size: size}, nil
}

var (
	firstNames = []string{"ada", "grace", "alan", "edsger", "barbara", "ken", "dennis", "linus", "margaret", "radia"}
	domains    = []string{"example.com", "example.org", "corp.test", "mail.test"}
	cities     = []string{"Berlin", "Lagos", "Osaka", "Lima", "Toronto", "Pune", "Oslo"}
)

// Generate returns the spec's Size bytes.
func Generate(s Spec) []byte {
	r := rand.New(rand.NewPCG(s.Seed, s.Seed^0x9e3779b97f4a7c15))
	out := make([]byte, 0, s.Size+256)
	switch s.Kind {
	case KindNDJSON:
		for id := 1; len(out) < s.Size; id++ {
			name := firstNames[r.IntN(len(firstNames))]
			out = fmt.Appendf(out, `{"id":%d,"name":%q,"email":"%s%d@%s","city":%q,"balance":%d.%02d,"active":%t}`+"\n",
				id, name, name, r.IntN(1000), domains[r.IntN(len(domains))], cities[r.IntN(len(cities))],
				r.IntN(100000), r.IntN(100), r.IntN(2) == 1)
		}
	default:
		const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
		for len(out) < s.Size {
			if len(out)%64 == 63 {
				out = append(out, '\n')
				continue
			}
			out = append(out, alphabet[r.IntN(len(alphabet))])
		}
	}
	return out[:s.Size]
}
