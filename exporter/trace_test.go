package exporter

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
)

var t0 = time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)

func sampleExchange() *exchange.Exchange {
	return &exchange.Exchange{
		Tunnel: 42,
		Client: netip.MustParseAddrPort("10.0.0.5:51234"),
		Server: netip.MustParseAddrPort("10.0.1.9:8080"),
		Request: exchange.Request{
			Method: "POST", Target: "/api/users/7?page=2&tag=a&tag=b", Path: "/api/users/7", RawQuery: "page=2&tag=a&tag=b",
			Proto: "HTTP/1.1", Host: "api.example.com",
			Headers: []exchange.Header{
				{Name: "Host", Value: "api.example.com"},
				{Name: "Content-Type", Value: "application/json"},
				{Name: "X-Forwarded-For", Value: "203.0.113.7, 10.0.0.1"},
			},
			Body: []byte(`{"name":"Ann","password":"hunter2"}`), BodySize: 35, Time: t0,
		},
		Response: exchange.Response{
			Status: 201, Reason: "Created", Proto: "HTTP/1.1",
			Headers: []exchange.Header{{Name: "Content-Type", Value: "application/json"}},
			Body:    []byte(`{"id":7}`), BodySize: 8, Time: t0.Add(1500 * time.Microsecond), EndTime: t0.Add(2500 * time.Microsecond),
		},
	}
}

// referenceJSON is what encoding/json makes of NewTrace, with HTML escaping off.
func referenceJSON(t testing.TB, x *exchange.Exchange, env string) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(NewTrace(x, env)); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func TestTraceShapeMatchesMetloV1(t *testing.T) {
	enc := TraceEncoder{Environment: "production"}
	got := enc.AppendTrace(nil, sampleExchange())
	want := `{"request":{"url":{"host":"api.example.com","path":"/api/users/7","parameters":[` +
		`{"name":"page","value":"2"},{"name":"tag","value":"a"},{"name":"tag","value":"b"}]},` +
		`"headers":[{"name":"Host","value":"api.example.com"},{"name":"Content-Type","value":"application/json"},` +
		`{"name":"X-Forwarded-For","value":"203.0.113.7, 10.0.0.1"}],` +
		`"body":"{\"name\":\"Ann\",\"password\":\"hunter2\"}","method":"POST"},` +
		`"response":{"status":201,"headers":[{"name":"Content-Type","value":"application/json"}],"body":"{\"id\":7}"},` +
		`"meta":{"environment":"production","incoming":true,"source":"10.0.0.5","sourcePort":51234,` +
		`"destination":"10.0.1.9","destinationPort":8080,"metloSource":"metlo-appliance","vni":42,` +
		`"startTime":"2024-05-06T07:08:09.123456789Z","durationMs":2.5,"ttfbMs":1.5,"requestBodyTruncated":false,` +
		`"responseBodyTruncated":false,"noResponse":false,"gap":false,"decodeError":false,"incomplete":false,` +
		`"originalSource":"203.0.113.7","protocol":"HTTP/1.1"}}`
	if string(got) != want {
		t.Fatalf("trace mismatch\n got: %s\nwant: %s", got, want)
	}
}

func TestAppendTraceMatchesEncodingJSON(t *testing.T) {
	cases := map[string]func(x *exchange.Exchange){
		"sample": func(x *exchange.Exchange) {},
		"no host header, ipv6": func(x *exchange.Exchange) {
			x.Request.Host = ""
			x.Client = netip.MustParseAddrPort("[2001:db8::1]:40000")
			x.Server = netip.MustParseAddrPort("[2001:db8::2]:443")
		},
		"ipv4-mapped addresses": func(x *exchange.Exchange) {
			x.Request.Host = ""
			x.Server = netip.MustParseAddrPort("[::ffff:10.1.2.3]:80")
			x.Client = netip.MustParseAddrPort("[::ffff:10.1.2.4]:1234")
		},
		"no response": func(x *exchange.Exchange) {
			x.Response = exchange.Response{}
			x.Flags = exchange.FlagNoResponse | exchange.FlagGap
		},
		"binary and invalid utf-8 body": func(x *exchange.Exchange) {
			x.Request.Body = []byte{0x00, 0x01, 0xff, 0xfe, 'a', 0xc3, 0x28, 0xe2, 0x82, '"', '\\', 0x7f, '\t', '\b', '\f'}
			x.Response.Body = []byte("caf\xc3\xa9 \u2028\u2029 <b>&amp;</b> \xf0\x9f\x98\x80 \xed\xa0\x80")
		},
		"query oddities": func(x *exchange.Exchange) {
			x.Request.RawQuery = "a=1&&b&c=%41%42+x&bad=%zz&trail=%4&=v&d=%E2%82%AC&e=%ff"
		},
		"truncated and flags": func(x *exchange.Exchange) {
			x.Request.BodyTruncated = true
			x.Response.BodyTruncated = true
			x.Flags = exchange.FlagDecodeError | exchange.FlagIncomplete
		},
		"framing error and decoded bodies": func(x *exchange.Exchange) {
			x.Flags = exchange.FlagFramingError
			x.Request.BodyDecoded, x.Response.BodyDecoded = "gzip", "br"
		},
		"empty path and headers": func(x *exchange.Exchange) {
			x.Request.Path, x.Request.Headers, x.Response.Headers = "", nil, nil
		},
		"control chars in headers": func(x *exchange.Exchange) {
			x.Request.Headers = append(x.Request.Headers, exchange.Header{Name: "X-\x01", Value: "v\x1f\xff\r\n"})
		},
		"negative duration": func(x *exchange.Exchange) { x.Response.Time = t0.Add(-time.Second) },
		"http/2 with unknown headers": func(x *exchange.Exchange) {
			x.Request.Proto, x.Request.Scheme, x.Flags = "HTTP/2.0", "https", exchange.FlagHeadersUnknown
		},
		"grpc call": func(x *exchange.Exchange) {
			x.Request.Proto, x.Request.Scheme, x.Request.Path = "HTTP/2.0", "http", "/shop.v1.Orders/Get"
			x.Request.Headers = []exchange.Header{{Name: "content-type", Value: "application/grpc+proto"}}
			x.Response.Status = 404
			x.Response.Headers = []exchange.Header{{Name: "content-type", Value: "application/grpc"},
				{Name: "grpc-status", Value: "5"}, {Name: "grpc-message", Value: "order \"7\" not found"}}
		},
		"grpc call without a response": func(x *exchange.Exchange) {
			x.Request.Proto, x.Request.Path = "HTTP/2.0", "/Ping"
			x.Request.Headers = []exchange.Header{{Name: "Content-Type", Value: "application/grpc"}}
			x.Response, x.Flags = exchange.Response{}, exchange.FlagNoResponse
		},
	}
	enc := TraceEncoder{Environment: "staging"}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			x := sampleExchange()
			mutate(x)
			got := enc.AppendTrace([]byte("prefix"), x)
			if !bytes.HasPrefix(got, []byte("prefix")) {
				t.Fatal("AppendTrace lost the existing buffer content")
			}
			got = got[len("prefix"):]
			if want := referenceJSON(t, x, "staging"); !bytes.Equal(got, want) {
				t.Fatalf("differs from encoding/json\n got: %s\nwant: %s", got, want)
			}
			var back Trace
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatalf("not valid JSON: %v", err)
			}
		})
	}
}

func TestQueryParameters(t *testing.T) {
	x := sampleExchange()
	x.Request.RawQuery = "a=1&a=2&b&c=%41%42+x&bad=%zz&=v&eur=%E2%82%AC"
	got := NewTrace(x, "").Request.URL.Parameters
	want := []NameValue{{"a", "1"}, {"a", "2"}, {"b", ""}, {"c", "AB x"}, {"bad", "%zz"}, {"", "v"}, {"eur", "€"}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("parameter %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestHostFallsBackToServerAddress(t *testing.T) {
	x := sampleExchange()
	x.Request.Host = ""
	if h := NewTrace(x, "").Request.URL.Host; h != "10.0.1.9:8080" {
		t.Fatalf("host = %q, want server ip:port", h)
	}
	x.Server = netip.MustParseAddrPort("[2001:db8::2]:443")
	if h := NewTrace(x, "").Request.URL.Host; h != "[2001:db8::2]:443" {
		t.Fatalf("host = %q, want bracketed ipv6", h)
	}
}

func TestAppendTraceMaxTrimsBodies(t *testing.T) {
	x := sampleExchange()
	x.Request.Body = bytes.Repeat([]byte("é\x01"), 300_000) // escapes expand: worst case for the estimate
	x.Response.Body = bytes.Repeat([]byte("x"), 500_000)
	enc := TraceEncoder{Environment: "production"}
	const limit = 100_000
	out, trimmed, ok := enc.AppendTraceMax(nil, x, limit)
	if !ok || !trimmed {
		t.Fatalf("ok=%v trimmed=%v, want both", ok, trimmed)
	}
	if len(out) > limit {
		t.Fatalf("trace is %d bytes, over the %d limit", len(out), limit)
	}
	var tr Trace
	if err := json.Unmarshal(out, &tr); err != nil {
		t.Fatalf("trimmed trace is not JSON: %v", err)
	}
	if !tr.Meta.Trimmed || !tr.Meta.RequestBodyTruncated || !tr.Meta.ResponseBodyTruncated {
		t.Fatalf("trimmed trace not flagged: %+v", tr.Meta)
	}
	if strings.ContainsRune(tr.Request.Body, '\uFFFD') {
		t.Fatal("trimming split a UTF-8 character")
	}
	if len(tr.Request.Body)+len(tr.Response.Body) == 0 {
		t.Fatal("trimmed away more than needed")
	}

	// Small traces pass untouched.
	small := sampleExchange()
	out, trimmed, ok = enc.AppendTraceMax(nil, small, limit)
	if !ok || trimmed || !bytes.Equal(out, enc.AppendTrace(nil, small)) {
		t.Fatal("a trace under the limit was changed")
	}

	// Headers alone over the limit: cannot fit.
	huge := sampleExchange()
	huge.Request.Headers = append(huge.Request.Headers, exchange.Header{Name: "X-Big", Value: strings.Repeat("h", limit)})
	if out, _, ok = enc.AppendTraceMax([]byte("keep"), huge, limit); ok || string(out) != "keep" {
		t.Fatalf("ok=%v out=%q, want a refusal leaving dst unchanged", ok, out)
	}
}

func TestRedactionByDefault(t *testing.T) {
	x := sampleExchange()
	x.Request.RawQuery = "access_token=abc&page=2"
	x.Request.Headers = append(x.Request.Headers,
		exchange.Header{Name: "authorization", Value: "Bearer s3cret"},
		exchange.Header{Name: "Cookie", Value: "sid=abcdef; theme=dark"})
	x.Request.Body = []byte(`{"user":{"Pass\u0077ord" : "hunter2","tags":["password"]},"token":{"a":[1,{"b":"}"}]},"n":5,"password":null}`)
	x.Response.Headers = append(x.Response.Headers, exchange.Header{Name: "Set-Cookie", Value: "sid=abcdef; Path=/; HttpOnly"})
	x.Response.Body = []byte(`not json but has password in it`)
	var tr Trace
	if err := json.Unmarshal(NewExporterEncoder(Options{}).AppendTrace(nil, x), &tr); err != nil {
		t.Fatal(err)
	}
	if want := `{"user":{"Pass\u0077ord" : "*******","tags":["password"]},"token":{"a":[0,{"b":"*"}]},"n":5,"password":null}`; tr.Request.Body != want {
		t.Errorf("request body\n got: %s\nwant: %s", tr.Request.Body, want)
	}
	if tr.Response.Body != string(x.Response.Body) {
		t.Errorf("non-JSON body changed: %s", tr.Response.Body)
	}
	if p := tr.Request.URL.Parameters; p[0].Value != "***" || p[1].Value != "2" {
		t.Errorf("parameters = %v", p)
	}
	want := map[string]string{"authorization": "Bearer ******", "Cookie": "sid=******; theme=****", "Content-Type": "application/json"}
	for _, h := range tr.Request.Headers {
		if w, ok := want[h.Name]; ok && h.Value != w {
			t.Errorf("%s = %q, want %q", h.Name, h.Value, w)
		}
	}
	if h := tr.Response.Headers[1]; h.Value != "sid=******; Path=/; HttpOnly" {
		t.Errorf("Set-Cookie = %q", h.Value)
	}
	// The explicit opt-out sends everything verbatim.
	if err := json.Unmarshal(NewExporterEncoder(Options{NoRedact: true}).AppendTrace(nil, x), &tr); err != nil {
		t.Fatal(err)
	}
	if tr.Request.Body != string(x.Request.Body) || tr.Request.URL.Parameters[0].Value != "abc" {
		t.Errorf("NoRedact still masked: %s", tr.Request.Body)
	}
}

// A form body and an escaped JSON key used to leak with redaction switched on.
func TestRedactionFormAndEscapedKeys(t *testing.T) {
	x := sampleExchange()
	x.Request.Headers = []exchange.Header{{Name: "Content-Type", Value: "application/x-www-form-urlencoded"}}
	x.Request.Body = []byte("user=ann&password=hunter2")
	x.Response.Body = []byte(`{"pass\u0077ord":"hunter2"}`)
	out := NewExporterEncoder(Options{}).AppendTrace(nil, x)
	if strings.Contains(string(out), "hunter2") {
		t.Fatalf("secret left the appliance: %s", out)
	}
}

func FuzzTraceJSON(f *testing.F) {
	f.Add([]byte(`{"a":1}`), "application/json", "a=1&b=%zz", "api.example.com", "GET")
	f.Add([]byte{0xff, 0x00, '"', 0xe2, 0x80, 0xa8}, "\x01\xc3", "%E2%82%AC+&&=", "", "\xffPOST")
	f.Fuzz(func(t *testing.T, body []byte, header, query, host, method string) {
		x := sampleExchange()
		x.Request.Body, x.Response.Body = body, body
		x.Request.Headers = append(x.Request.Headers, exchange.Header{Name: header, Value: header})
		x.Request.RawQuery, x.Request.Host, x.Request.Method = query, host, method
		enc := TraceEncoder{Environment: header}
		got := enc.AppendTrace(nil, x)
		if !json.Valid(got) {
			t.Fatalf("invalid JSON: %q", got)
		}
		if want := referenceJSON(t, x, header); !bytes.Equal(got, want) {
			t.Fatalf("differs from encoding/json\n got: %s\nwant: %s", got, want)
		}
		limited, _, ok := enc.AppendTraceMax(nil, x, 2000)
		if ok && (len(limited) > 2000 || !json.Valid(limited)) {
			t.Fatalf("AppendTraceMax gave %d bytes, valid=%v", len(limited), json.Valid(limited))
		}
	})
}

func BenchmarkAppendTrace(b *testing.B) {
	x := sampleExchange()
	x.Response.Body = bytes.Repeat([]byte(`{"id":7,"name":"Ann Example","email":"ann@example.com"},`), 16)
	enc := TraceEncoder{Environment: "production"}
	buf := enc.AppendTrace(nil, x)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		buf = enc.AppendTrace(buf[:0], x)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "traces/s")
}

// TestAppendJSONStringMatchesEncodingJSON checks the string escaper byte for byte against
// encoding/json on inputs aimed at its paths: 8-byte plain runs, every single byte value at
// every offset of a word, multi-byte UTF-8 at the very end (shorter than the 4-byte copy),
// invalid and truncated sequences, U+2028/U+2029, control characters.
func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	inputs := []string{
		"", "a", "plain ascii text, long enough for several words",
		`{"id":1,"v":"x"},{"id":2,"v":"y"}`, "tab\tnew\nline\rcr\bbs\fff\x00nul\x1fus\x7fdel",
		"héllo wörld — ünïcode", "é", "aé", "€", "a€", "😀", "ab😀", "\u2028x\u2029", "x\u2028",
		"\xff", "a\xffb", "\xe2\x82", "abc\xe2\x82", "\xed\xa0\x80", "\xc0\xaf", strings.Repeat("\\", 9),
	}
	for c := 0; c < 256; c++ {
		for off := 0; off < 9; off++ {
			inputs = append(inputs, strings.Repeat("p", off)+string([]byte{byte(c)})+"tail-bytes")
		}
	}
	for _, in := range inputs {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(in); err != nil {
			t.Fatal(err)
		}
		got := appendJSONString([]byte("prefix"), in)
		if string(got) != "prefix"+strings.TrimSuffix(want.String(), "\n") {
			t.Fatalf("%q: got %s, want %s", in, got[6:], want.String())
		}
	}
}

// A body that is not UTF-8 (an image, protobuf, a gzip the server did not label) travels as
// base64 and says so: decoding it gives back exactly the bytes on the wire.
func TestBinaryBodyKeptFaithfully(t *testing.T) {
	x := sampleExchange()
	x.Response.Body = []byte{0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0xff, 0xfe, '"'}
	var enc TraceEncoder
	var tr struct {
		Request  struct{ Body string }
		Response struct{ Body string }
		Meta     map[string]any
	}
	if err := json.Unmarshal(enc.AppendTrace(nil, x), &tr); err != nil {
		t.Fatal(err)
	}
	got, err := base64.StdEncoding.DecodeString(tr.Response.Body)
	if err != nil || !bytes.Equal(got, x.Response.Body) || tr.Meta["responseBodyEncoding"] != "base64" {
		t.Fatalf("body %q (%v), meta %v", tr.Response.Body, err, tr.Meta["responseBodyEncoding"])
	}
	if _, ok := tr.Meta["requestBodyEncoding"]; ok || tr.Request.Body != string(x.Request.Body) {
		t.Fatalf("a text body changed: %q %v", tr.Request.Body, tr.Meta)
	}
}
