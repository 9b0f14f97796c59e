package redact

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// referenceField is the field check written plainly: decode, normalise into a string,
// compare with the lists.
func referenceField(r *Redactor, name []byte, mode nameMode) bool {
	dec := name
	switch mode {
	case jsonName:
		dec = unescapeJSON(nil, name)
	case formName:
		dec = unescapeForm(nil, name)
	}
	n := string(normalize(nil, string(dec)))
	if len(n) >= 3 {
		for _, f := range DefaultFields {
			if string(normalize(nil, f)) == n {
				return true
			}
		}
		for _, s := range fieldSuffixes {
			if len(n) > len(s) && strings.HasSuffix(n, s) {
				return true
			}
		}
	}
	return len(dec) <= 128 && r.fields[n]
}

func TestFieldMatchesReference(t *testing.T) {
	r := New(nil, []string{"ssn", "X-Customer-Number"})
	names := []string{"password", "PassWord", "pass_word", "p.a-s_s w+o%72d", "pass\\u0077ord", "pass%77ord",
		"db_password", "dbpasswd", "token", "tokens", "token_type", "x_token", "privatekey", "my-private-key",
		"sessionid", "session_id", "sid", "pin", "PIN", "pi", "otp", "jwt", "cvv2", "customer_number",
		"ssn", "SSN", "ssn2", "a\\", "\\u", `\ud83d\ude00`, "%", "%zz", "++", strings.Repeat("x", 200) + "_password",
		strings.Repeat("x", 200) + "ssn", "secretkey", "secret_key_id", "apikey", "api-key", "apikeys"}
	for _, f := range DefaultFields {
		names = append(names, f, strings.ToUpper(f), "x"+f, f+"x")
	}
	for _, n := range names {
		for _, mode := range []nameMode{plainName, jsonName, formName} {
			if got, want := fieldName(r, []byte(n), mode), referenceField(r, []byte(n), mode); got != want {
				t.Errorf("%q (mode %d): %v, reference %v", n, mode, got, want)
			}
		}
	}
	if !r.Field(strings.Repeat("x", 200) + "_password") {
		t.Error("a long name ending in _password is not masked")
	}
}

func FuzzField(f *testing.F) {
	for _, s := range []string{"password", "pass\\u0077ord", "pass%77ord", "a_b-c.d e+f", "ssn", "x_token"} {
		f.Add([]byte(s), uint8(0))
	}
	r := New(nil, []string{"ssn", "customer-number"})
	f.Fuzz(func(t *testing.T, name []byte, m uint8) {
		mode := nameMode(m % 3)
		if got, want := fieldName(r, name, mode), referenceField(r, name, mode); got != want {
			t.Fatalf("%q (mode %d): %v, reference %v", name, mode, got, want)
		}
	})
}

// referenceSkipString ends a JSON string the plain way: the first quote after the opening
// one that an even number of backslashes precedes.
func referenceSkipString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		if b[j] != '"' {
			continue
		}
		bs := 0
		for p := j - 1; p > i && b[p] == '\\'; p-- {
			bs++
		}
		if bs%2 == 0 {
			return j + 1
		}
	}
	return -1
}

// FuzzSkipString checks the two-speed string scan (a byte loop, then bytes.IndexByte past
// 32 bytes) against the plain one, escapes at the switch-over included.
func FuzzSkipString(f *testing.F) {
	f.Add([]byte(`"abc"`))
	f.Add([]byte(`"` + strings.Repeat("x", 30) + `\\\"` + `y"`))
	f.Add([]byte(`"` + strings.Repeat("x", 31) + `\"` + strings.Repeat("\\\\", 20) + `"`))
	f.Add([]byte(`"` + strings.Repeat(`\"`, 40)))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 || b[0] != '"' {
			b = append([]byte{'"'}, b...)
		}
		if got, want := skipString(b, 0), referenceSkipString(b, 0); got != want {
			t.Fatalf("%q: %d, reference %d", b, got, want)
		}
	})
}

// referenceJSON is appendJSON written plainly: find each string, and when a ':' follows it,
// decode the key and mask the value when the name is sensitive.
func referenceJSON(r *Redactor, body []byte) ([]byte, bool) {
	var dst []byte
	copied, changed := 0, false
	for i := 0; i < len(body); {
		q := bytes.IndexByte(body[i:], '"')
		if q < 0 {
			break
		}
		s := i + q
		end := referenceSkipString(body, s)
		if end < 0 {
			break
		}
		j := skipSpace(body, end)
		if j >= len(body) || body[j] != ':' {
			i = end
			continue
		}
		if !referenceField(r, body[s+1:end-1], jsonName) {
			i = j + 1
			continue
		}
		vStart := skipSpace(body, j+1)
		vEnd := skipValue(body, vStart)
		if vEnd <= vStart {
			i = j + 1
			continue
		}
		dst = append(dst, body[copied:vStart]...)
		dst = maskJSON(dst, body[vStart:vEnd])
		copied, i, changed = vEnd, vEnd, true
	}
	if !changed {
		return nil, false
	}
	return append(dst, body[copied:]...), true
}

// FuzzJSONMatchesReference: the one-pass scan masks exactly what the plain one does.
func FuzzJSONMatchesReference(f *testing.F) {
	for _, s := range []string{`{"password":"x"}`, `{"id":1,"v":"x"},{"id":1,"v":"x"}`, `{"pass\u0077ord":"\ud83d\ude00"}`,
		`{"` + strings.Repeat("a", 40) + `\"":1,"token":"t"}`, `[1,2,3,` + strings.Repeat(" ", 50) + `{"secret":{"a":[1,"b"]}}]`,
		`{"ab":"c","ssn":"123"}`, `{"token"`, `"`, `{"x\"token":"v"}`, `{"p\"ass_word":"v"}`, `{"a\"b\"password" : "v"}`,
		`{"x\u0022token":1}`, `{"token\"x":1}`, `\"password":1`, `{"id" :7, "pin"	:	1234}`, `{"url":"http://a:b@c","t":"12:30"}`} {
		f.Add([]byte(s), false)
	}
	// The same, long enough for the pre-scan (it runs from 64 bytes on).
	pad := `{"padding":"` + strings.Repeat("p", 64) + `",`
	for _, s := range []string{`"x\"token":"v"}`, `"p\"ass_word":"v"}`, `"a\"b\"password" : "v"}`, `"x\u0022token":1}`,
		`"token\"x":1}`, `"id" :7, "pin"	:	1234}`, `"url":"http://a:b@c","t":"12:30"}`, `"v":"a\":\"password\":1"}`} {
		f.Add([]byte(pad+s), false)
	}
	plain, extra := New(nil, nil), New(nil, []string{"ab"})
	f.Fuzz(func(t *testing.T, body []byte, withExtra bool) {
		r := plain
		if withExtra {
			r = extra
		}
		got, changed := r.appendJSON(nil, body)
		want, wantChanged := referenceJSON(r, body)
		if changed != wantChanged || !bytes.Equal(got, want) {
			t.Fatalf("%q:\n got %q (%v)\nwant %q (%v)", body, got, changed, want, wantChanged)
		}
	})
}

// jsonMayMask relies on every suffix being a sensitive name by itself.
func TestSuffixesAreNames(t *testing.T) {
	r := New(nil, nil)
	for _, s := range fieldSuffixes {
		if !r.Field(s) {
			t.Errorf("suffix %q is not a field name of its own: the JSON pre-scan would miss keys like x\\\"%s", s, s)
		}
	}
}

// FuzzByteSearch checks the word-at-a-time search against bytes.LastIndexByte at every
// end, and zeroBytes against a byte loop.
func FuzzByteSearch(f *testing.F) {
	f.Add([]byte(`{"id":1,"v":"x"},{"id":1,"v":"x"}`), byte(':'))
	f.Add(bytes.Repeat([]byte{0x80, 0xff, 0x3a, 0x22, 0x00, 0x7f, 0x01}, 30), byte('"'))
	f.Fuzz(func(t *testing.T, b []byte, c byte) {
		for i := 0; i <= len(b); i++ {
			if got, want := lastIndexByteBefore(b, i, c), bytes.LastIndexByte(b[:i], c); got != want {
				t.Fatalf("lastIndexByteBefore(%q, %d, %q) = %d, want %d", b, i, c, got, want)
			}
		}
		for i := 0; i+8 <= len(b); i++ {
			m := zeroBytes(binary.LittleEndian.Uint64(b[i:]) ^ (ones * uint64(c)))
			for k := range 8 {
				if got, want := m>>(8*k+7)&1 == 1, b[i+k] == c; got != want {
					t.Fatalf("zeroBytes: byte %d of %q: %v, want %v", k, b[i:i+8], got, want)
				}
			}
		}
	})
}
