package redact

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestHeaders(t *testing.T) {
	r := New([]string{"X-Tenant"}, nil)
	for name, want := range map[string]bool{
		"Authorization": true, "proxy-authorization": true, "Cookie": true, "Set-Cookie": true,
		"X-Api-Key": true, "X-API_KEY": true, "X-Auth-Token": true, "X-Amz-Security-Token": true,
		"X-Goog-Api-Key": true, "X-Session-Id": true, "X-Hub-Signature-256": true, "X-Tenant": true,
		"Content-Type": false, "Host": false, "WWW-Authenticate": false, "Accept": false, "X-Request-Id": false,
	} {
		if got := r.Header(name); got != want {
			t.Errorf("Header(%q) = %v, want %v", name, got, want)
		}
	}
	for _, c := range []struct{ name, in, want string }{
		{"Authorization", "Bearer eyJhbGciOi", "Bearer **********"},
		{"Authorization", "Basic dXNlcjpwdw==", "Basic ************"},
		{"Authorization", "rawkey", "******"},
		{"Cookie", "sid=abc123; lang=en", "sid=******; lang=**"},
		{"Cookie", "sid=abc;", "sid=***;"},
		{"Set-Cookie", "sid=abc123; Path=/; HttpOnly", "sid=******; Path=/; HttpOnly"},
		{"X-Api-Key", "metlo.secret", "************"},
		{"X-Api-Key", "clé", "***"},
	} {
		if got := string(r.AppendHeaderValue(nil, c.name, c.in)); got != c.want {
			t.Errorf("%s: %q → %q, want %q", c.name, c.in, got, c.want)
		}
	}
}

func TestFields(t *testing.T) {
	r := New(nil, []string{"ssn"})
	for name, want := range map[string]bool{
		"password": true, "Password": true, "pass_word": true, "PASSWD": true, "api_key": true, "api-key": true,
		"apiKey": true, "access_token": true, "refreshToken": true, "client_secret": true, "db_password": true,
		"user.password": true, "stripe_secret": true, "ssn": true, "pin": true,
		"username": false, "email": false, "token_type": false, "expires_in": false, "passenger": false, "id": false,
	} {
		if got := r.Field(name); got != want {
			t.Errorf("Field(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestJSONBodies(t *testing.T) {
	r := New(nil, nil)
	for _, c := range []struct{ in, want string }{
		{`{"user":"ann","password":"hunter2"}`, `{"user":"ann","password":"*******"}`},
		{`{"user":"ann","pass\u0077ord":"hunter2"}`, `{"user":"ann","pass\u0077ord":"*******"}`},
		{`{"PASS\u0057ORD" : "a\"b"}`, `{"PASS\u0057ORD" : "***"}`},
		{`{"pin":1234,"ok":true}`, `{"pin":0,"ok":true}`},
		{`{"token":null,"secret":false}`, `{"token":null,"secret":false}`},
		{`{"credentials":{"user":"a","key":"xyz","n":[1,"ab"]}}`, `{"credentials":{"user":"*","key":"***","n":[0,"**"]}}`},
		{`[{"a":{"refresh_token":"r1"}},{"api_key":"k"}]`, `[{"a":{"refresh_token":"**"}},{"api_key":"*"}]`},
		{`{"note":"the password is \"x\"","password":"é✓"}`, `{"note":"the password is \"x\"","password":"**"}`},
	} {
		got, changed := r.AppendBody(nil, []byte(c.in), "application/json")
		if !changed || string(got) != c.want {
			t.Errorf("%s\n got %s (changed=%v)\nwant %s", c.in, got, changed, c.want)
		}
		if !json.Valid(got) {
			t.Errorf("masked JSON is invalid: %s", got)
		}
	}
	for _, in := range []string{`{"user":"ann"}`, `not json password`, `{"password"`, `{"a":"password"}`} {
		if got, changed := r.AppendBody([]byte("keep"), []byte(in), "application/json"); changed || string(got) != "keep" {
			t.Errorf("%s: changed=%v dst=%q", in, changed, got)
		}
	}
	// JSON without a JSON content type is still found.
	if got, _ := r.AppendBody(nil, []byte(` {"token":"abc"}`), "text/plain"); string(got) != ` {"token":"***"}` {
		t.Errorf("text/plain JSON: %s", got)
	}
	if _, changed := r.AppendBody(nil, []byte(`password=x`), "text/html"); changed {
		t.Error("html changed")
	}
}

func TestFormBodies(t *testing.T) {
	r := New(nil, nil)
	for _, c := range []struct{ in, want string }{
		{"user=ann&password=hunter2&x=1", "user=ann&password=*******&x=1"},
		{"pass%77ord=a%20b&api_key=k+v", "pass%77ord=***&api_key=***"},
		{"password=&a", "password=&a"},
		{"a=1&&token=zz&", "a=1&&token=**&"},
	} {
		got, _ := r.AppendBody(nil, []byte(c.in), "application/x-www-form-urlencoded; charset=utf-8")
		if string(got) != c.want {
			t.Errorf("%s → %s, want %s", c.in, got, c.want)
		}
	}
}

func TestMultipartBodies(t *testing.T) {
	r := New(nil, nil)
	body := "--XyZ\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nann\r\n" +
		"--XyZ\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\nhunter2\r\n" +
		"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\ndata\r\n--XyZ--\r\n"
	got, changed := r.AppendBody(nil, []byte(body), `multipart/form-data; boundary=XyZ`)
	want := strings.Replace(body, "hunter2", "*******", 1)
	if !changed || string(got) != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
}

func TestNilRedactsNothing(t *testing.T) {
	var r *Redactor
	if r.Header("Authorization") || r.Field("password") {
		t.Fatal("nil redactor redacts")
	}
	if _, changed := r.AppendBody(nil, []byte(`{"password":"x"}`), "application/json"); changed {
		t.Fatal("nil redactor changed a body")
	}
}

func FuzzJSON(f *testing.F) {
	for _, s := range []string{`{"password":"x"}`, `{"a":{"token":[1,{"b":"c"}]}}`, `{"pass\u0077ord":"\ud83d\ude00"}`, `[`, `{"token":`} {
		f.Add([]byte(s))
	}
	r := New(nil, nil)
	f.Fuzz(func(t *testing.T, in []byte) {
		out, changed := r.AppendBody(nil, in, "application/json")
		if !changed {
			return
		}
		if json.Valid(in) && !json.Valid(out) {
			t.Fatalf("valid JSON became invalid:\n%s\n%s", in, out)
		}
		var v any
		if json.Unmarshal(in, &v) == nil && strings.Contains(string(out), "hunter2") && strings.Contains(string(in), `"password":"hunter2"`) {
			t.Fatalf("secret survived: %s", out)
		}
	})
}

func BenchmarkJSONBody(b *testing.B) {
	r := New(nil, nil)
	body := []byte(`{"id":12345,"name":"Ann Example","email":"ann@example.com","items":[{"sku":"A-1","qty":2,"price":9.99},{"sku":"B-2","qty":1,"price":19.5}],"address":{"street":"1 Main St","city":"Springfield","zip":"12345"},"note":"leave at the door"}`)
	b.SetBytes(int64(len(body)))
	var dst []byte
	for b.Loop() {
		dst, _ = r.AppendBody(dst[:0], body, "application/json")
	}
}

// BenchmarkJSONBodyWithSecret is the exporter benchmark's request body: one key masked.
func BenchmarkJSONBodyWithSecret(b *testing.B) {
	r := New(nil, nil)
	body := []byte(`{"name":"Ann","password":"hunter2"}`)
	var dst []byte
	for b.Loop() {
		dst, _ = r.AppendBody(dst[:0], body, "application/json")
	}
}

// BenchmarkFormBody is a login-form-like body with no secret in it.
func BenchmarkFormBody(b *testing.B) {
	r := New(nil, nil)
	body := []byte(`user=ann&email=ann%40example.com&remember=1&next=%2Fhome`)
	var dst []byte
	for b.Loop() {
		dst, _ = r.AppendBody(dst[:0], body, "application/x-www-form-urlencoded")
	}
}
