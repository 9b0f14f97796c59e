package redact

// Field names are checked for every JSON key, form field and query parameter of every
// message, so the check normalises a name into two machine words instead of a buffer and
// compares words: the last eight normalised bytes in lo (the last byte lowest), the eight
// before them in hi. The default names are at most 16 bytes long; the suffixes at most 10.

// packed is a normalised name of n bytes, or a suffix with the masks that select it.
type packed struct {
	lo, hi   uint64
	mlo, mhi uint64 // for suffixes: the bits of lo and hi that hold it
	n        int
}

// nameMode says how a raw name is escaped.
type nameMode uint8

const (
	plainName nameMode = iota // already decoded
	jsonName                  // the inside of a JSON string: backslash escapes
	formName                  // form-urlencoded: %XX escapes, '+' for a space
)

const exactSlots = 128 // a power of two, at least twice the number of default names

var (
	exactNames [exactSlots]packed // open addressing on slotOf; n == 0 is an empty slot
	suffixes   []packed
	lastBytes  [256]bool // the last bytes of the names and suffixes: most keys end otherwise
)

// normTable maps each byte of a name, per nameMode, to its normalised form: lower case,
// skipByte for the separators dropped, escByte for the start of an escape.
var normTable [3][256]uint16

const (
	skipByte = 0x100
	escByte  = 0x200
)

func init() {
	for m := range normTable {
		for c := range 256 {
			v := uint16(c)
			switch {
			case c == '-' || c == '_' || c == '.' || c == ' ' || (c == '+' && nameMode(m) == formName):
				v = skipByte
			case 'A' <= c && c <= 'Z':
				v += 'a' - 'A'
			case (c == '\\' && nameMode(m) == jsonName) || (c == '%' && nameMode(m) == formName):
				v = escByte
			}
			normTable[m][c] = v
		}
	}
	for _, f := range DefaultFields {
		p := pack(f)
		lastBytes[byte(p.lo)] = true
		for i := slotOf(p.lo, p.hi, p.n); ; i = (i + 1) % exactSlots {
			if exactNames[i].n == 0 {
				exactNames[i] = p
				break
			}
			if exactNames[i] == p {
				break
			}
		}
	}
	for _, s := range fieldSuffixes {
		p := pack(s)
		lastBytes[byte(p.lo)] = true
		for k := range p.n {
			if k < 8 {
				p.mlo |= 0xff << (8 * k)
			} else {
				p.mhi |= 0xff << (8 * (k - 8))
			}
		}
		suffixes = append(suffixes, p)
	}
}

// pack normalises a name of at most 16 bytes the way fieldName does.
func pack(s string) packed {
	var p packed
	for i := 0; i < len(s); i++ {
		c, keep := foldNameByte(s[i])
		if !keep {
			continue
		}
		p.hi = p.hi<<8 | p.lo>>56
		p.lo = p.lo<<8 | uint64(c)
		p.n++
	}
	if p.n > 16 {
		panic("redact: default field name longer than 16 bytes: " + s)
	}
	return p
}

func slotOf(lo, hi uint64, n int) int {
	h := (lo ^ hi*0x9e3779b97f4a7c15 ^ uint64(n)) * 0x9e3779b97f4a7c15
	return int(h >> (64 - 7))
}

// fieldName reports whether the value of the field called name (escaped as mode says) is
// masked: its name, unescaped, lower-cased and without '-', '_', '.' and spaces, is one of
// DefaultFields or the extra fields, or ends with one of fieldSuffixes.
func fieldName[T string | []byte](r *Redactor, name T, mode nameMode) bool {
	var lo, hi uint64
	n := 0
	tab := &normTable[mode]
	for i := 0; i < len(name); i++ {
		c := tab[name[i]]
		if c >= skipByte {
			if c == skipByte {
				continue
			}
			return r.fieldDecoded([]byte(name), mode)
		}
		hi = hi<<8 | lo>>56
		lo = lo<<8 | uint64(c)
		n++
	}
	if n >= 3 && lastBytes[byte(lo)] {
		if n <= 16 {
			for i := slotOf(lo, hi, n); exactNames[i].n != 0; i = (i + 1) % exactSlots {
				if e := &exactNames[i]; e.lo == lo && e.hi == hi && e.n == n {
					return true
				}
			}
		}
		for k := range suffixes {
			if s := &suffixes[k]; n > s.n && lo&s.mlo == s.lo && hi&s.mhi == s.hi {
				return true
			}
		}
	}
	if r.fields == nil || len(name) > 128 {
		return false
	}
	var buf [128]byte
	return r.fields[string(normalize(buf[:0], string(name)))]
}

// fieldDecoded is fieldName for a name that holds escapes: decoded first.
func (r *Redactor) fieldDecoded(name []byte, mode nameMode) bool {
	var buf [128]byte
	if mode == jsonName {
		return fieldName(r, unescapeJSON(buf[:0], name), plainName)
	}
	return fieldName(r, unescapeForm(buf[:0], name), plainName)
}
