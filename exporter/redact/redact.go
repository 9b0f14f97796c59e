// Package redact masks credentials in HTTP messages before they leave the appliance:
// credential headers, and the values of sensitive field names in query strings, JSON,
// form-urlencoded and multipart bodies. Masks keep the value's shape — a string stays a
// string of the same length (in '*'), a number becomes 0, an object keeps its keys — so
// Metlo still sees the field, its type and its size, never its value.
package redact

import (
	"slices"
	"strings"
	"unicode/utf8"
)

// MaxMask bounds a mask's length; longer values are masked to this many '*'.
const MaxMask = 1024

// DefaultHeaders are the header names masked by default (compared case-insensitively,
// ignoring '-' and '_'); any header whose name contains a CredentialWords entry is masked too.
var DefaultHeaders = []string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie",
	"X-Api-Key", "X-Auth-Token", "X-Access-Token", "X-CSRF-Token", "X-XSRF-Token", "X-Amz-Security-Token"}

// CredentialWords mark a header name as a credential wherever they appear in it.
var CredentialWords = []string{"auth", "token", "secret", "passw", "apikey", "cookie", "credential", "session", "signature"}

// notCredentialHeaders contain a credential word but carry none.
var notCredentialHeaders = []string{"wwwauthenticate", "proxyauthenticate", "authenticationinfo"}

// DefaultFields are the field names masked by default in query strings and bodies
// (compared after unescaping, case-insensitively, ignoring '-', '_', '.' and spaces).
var DefaultFields = []string{"password", "passwd", "pwd", "pass", "passphrase", "secret", "token",
	"api_key", "apikey", "access_token", "refresh_token", "id_token", "session_token", "auth_token",
	"client_secret", "api_secret", "secret_key", "access_key", "private_key", "authorization", "auth",
	"credential", "credentials", "session", "session_id", "sessid", "otp", "pin", "cvv", "cvc",
	"signature", "jwt", "bearer", "csrf_token", "xsrf_token"}

// fieldSuffixes mark a field as sensitive when its normalised name ends with one:
// db_password, bearer_token, stripe_secret, user_api_key.
var fieldSuffixes = []string{"password", "passwd", "secret", "token", "apikey", "privatekey", "sessionid"}

// Redactor decides what to mask. A nil *Redactor masks nothing.
type Redactor struct {
	headers map[string]bool // normalised DefaultHeaders plus extras
	fields  map[string]bool // normalised extra field names (the defaults are compiled in)
}

// New returns a Redactor for the defaults plus extra header and field names.
func New(extraHeaders, extraFields []string) *Redactor {
	r := &Redactor{headers: map[string]bool{}}
	var buf [128]byte
	for _, h := range append(append([]string(nil), DefaultHeaders...), extraHeaders...) {
		if n := normalize(buf[:0], h); len(n) > 0 {
			r.headers[string(n)] = true
		}
	}
	for _, f := range extraFields {
		if n := normalize(buf[:0], f); len(n) > 0 && !fieldName(&Redactor{}, n, plainName) {
			if r.fields == nil {
				r.fields = map[string]bool{}
			}
			r.fields[string(n)] = true
		}
	}
	return r
}

// normalize lower-cases ASCII letters and drops '-', '_', '.' and spaces.
func normalize(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c, keep := foldNameByte(s[i]); keep {
			dst = append(dst, c)
		}
	}
	return dst
}

// foldNameByte is one byte of a field name as names are compared: ASCII letters
// lower-cased, '-', '_', '.' and spaces dropped (keep false).
func foldNameByte(c byte) (byte, bool) {
	switch {
	case c == '-' || c == '_' || c == '.' || c == ' ':
		return 0, false
	case 'A' <= c && c <= 'Z':
		return c + 'a' - 'A', true
	}
	return c, true
}

func containsWord(n []byte, words []string) bool {
	for _, w := range words {
		if len(w) <= len(n) && strings.Contains(string(n), w) {
			return true
		}
	}
	return false
}

// Header reports whether a header's value is masked.
func (r *Redactor) Header(name string) bool {
	if r == nil {
		return false
	}
	var buf [128]byte
	if len(name) > len(buf) {
		return true // no real header name is this long: mask it
	}
	n := normalize(buf[:0], name)
	if r.headers[string(n)] {
		return true
	}
	for _, x := range notCredentialHeaders {
		if string(n) == x {
			return false
		}
	}
	return containsWord(n, CredentialWords)
}

// Field reports whether the value of a field (query parameter, JSON key, form field) with
// this unescaped name is masked.
func (r *Redactor) Field(name string) bool {
	if r == nil {
		return false
	}
	return fieldName(r, name, plainName)
}

// AppendMask appends one '*' per character of v (at most MaxMask).
func AppendMask(dst []byte, v string) []byte {
	return appendStars(dst, utf8.RuneCountInString(v))
}

func appendStars(dst []byte, n int) []byte {
	n = min(n, MaxMask)
	dst = slices.Grow(dst, n)
	stars := dst[len(dst) : len(dst)+n]
	for i := range stars {
		stars[i] = '*'
	}
	return dst[:len(dst)+n]
}

// AppendHeaderValue appends the masked form of a credential header's value: the
// authentication scheme is kept ("Bearer ****"), cookie names are kept ("sid=****; lang=**"),
// Set-Cookie attributes are kept.
func (r *Redactor) AppendHeaderValue(dst []byte, name, value string) []byte {
	var buf [128]byte
	switch string(normalize(buf[:0], name)) {
	case "authorization", "proxyauthorization":
		for i := 0; i < len(value); i++ {
			if value[i] == ' ' {
				return AppendMask(append(dst, value[:i+1]...), value[i+1:])
			}
		}
	case "cookie":
		for first := true; ; first = false {
			c, rest, more := cutByteOK(value, ';')
			if !first {
				dst = append(dst, ';')
			}
			dst = appendCookie(dst, c)
			if !more {
				return dst
			}
			value = rest
		}
	case "setcookie":
		c, attrs, ok := cutByteOK(value, ';')
		dst = appendCookie(dst, c)
		if ok {
			dst = append(append(dst, ';'), attrs...)
		}
		return dst
	}
	return AppendMask(dst, value)
}

// appendCookie appends "name=****" for one cookie pair, keeping surrounding spaces.
func appendCookie(dst []byte, c string) []byte {
	name, val, ok := cutByteOK(c, '=')
	if !ok {
		return AppendMask(dst, c)
	}
	return AppendMask(append(append(dst, name...), '='), val)
}

func cutByteOK(s string, sep byte) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
