package redact

import (
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
