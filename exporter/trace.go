package exporter

import (
	"encoding/base64"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
)

// MetloSource is the meta.metloSource value of every trace the appliance sends.
const MetloSource = "metlo-appliance"

// Trace is one Metlo v1 API trace; its JSON form is what AppendTrace writes.
type Trace struct {
	Request  TraceRequest  `json:"request"`
	Response TraceResponse `json:"response"`
	Meta     TraceMeta     `json:"meta"`
}

// TraceRequest is the request half of a trace.
type TraceRequest struct {
	URL     TraceURL    `json:"url"`
	Headers []NameValue `json:"headers"`
	Body    string      `json:"body"`
	Method  string      `json:"method"`
}

// TraceURL is the request URL split the way Metlo stores it.
type TraceURL struct {
	Host       string      `json:"host"`
	Path       string      `json:"path"`
	Parameters []NameValue `json:"parameters"`
}

// NameValue is one header or query parameter.
type NameValue struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// TraceResponse is the response half of a trace; Status is 0 when none was seen.
type TraceResponse struct {
	Status  int         `json:"status"`
	Headers []NameValue `json:"headers"`
	Body    string      `json:"body"`
}

// TraceMeta holds Metlo's connection metadata plus the appliance's own capture facts.
type TraceMeta struct {
	Environment           string  `json:"environment"`
	Incoming              bool    `json:"incoming"`
	Source                string  `json:"source"`
	SourcePort            int     `json:"sourcePort"`
	Destination           string  `json:"destination"`
	DestinationPort       int     `json:"destinationPort"`
	MetloSource           string  `json:"metloSource"`
	VNI                   uint32  `json:"vni"`
	StartTime             string  `json:"startTime"`
	DurationMs            float64 `json:"durationMs"`
	TTFBMs                float64 `json:"ttfbMs"`
	RequestBodyTruncated  bool    `json:"requestBodyTruncated"`
	ResponseBodyTruncated bool    `json:"responseBodyTruncated"`
	NoResponse            bool    `json:"noResponse"`
	Gap                   bool    `json:"gap"`
	DecodeError           bool    `json:"decodeError"`
	Incomplete            bool    `json:"incomplete"`
	FramingError          bool    `json:"framingError,omitempty"`
	RequestBodyEncoding   string  `json:"requestBodyEncoding,omitempty"`
	ResponseBodyEncoding  string  `json:"responseBodyEncoding,omitempty"`
	RequestBodyDecoded    string  `json:"requestBodyDecoded,omitempty"`
	ResponseBodyDecoded   string  `json:"responseBodyDecoded,omitempty"`
	Trimmed               bool    `json:"trimmed,omitempty"`
	OriginalPath          string  `json:"originalPath,omitempty"`
	OriginalSource        string  `json:"originalSource,omitempty"`
	Protocol              string  `json:"protocol,omitempty"`
	Scheme                string  `json:"scheme,omitempty"`
	HeadersUnknown        bool    `json:"headersUnknown,omitempty"`
	GRPCService           string  `json:"grpcService,omitempty"`
	GRPCMethod            string  `json:"grpcMethod,omitempty"`
	GRPCStatus            *int    `json:"grpcStatus,omitempty"`
	GRPCMessage           string  `json:"grpcMessage,omitempty"`
}

// NewTrace builds the Trace for x without redaction or trimming (the path is made one
// Metlo accepts, as AppendTrace does); strings keep the bytes
// seen on the wire (encoding/json replaces invalid UTF-8). AppendTrace writes the same
// document, byte for byte, much faster.
func NewTrace(x *exchange.Exchange, environment string) Trace {
	path, rewrite := metloPath(x.Request.Path)
	t := Trace{
		Request: TraceRequest{
			URL: TraceURL{
				Host:       traceHost(x),
				Path:       path,
				Parameters: []NameValue{},
			},
			Headers: nameValues(x.Request.Headers),
			Body:    bodyText(x.Request.Body),
			Method:  x.Request.Method,
		},
		Response: TraceResponse{
			Status:  x.Response.Status,
			Headers: nameValues(x.Response.Headers),
			Body:    bodyText(x.Response.Body),
		},
		Meta: TraceMeta{
			Environment:           environment,
			Incoming:              true,
			Source:                x.Client.Addr().Unmap().String(),
			SourcePort:            int(x.Client.Port()),
			Destination:           x.Server.Addr().Unmap().String(),
			DestinationPort:       int(x.Server.Port()),
			MetloSource:           MetloSource,
			VNI:                   x.Tunnel,
			StartTime:             x.Request.Time.UTC().Format(time.RFC3339Nano),
			DurationMs:            durationMs(x.Duration()),
			TTFBMs:                durationMs(x.TimeToFirstByte()),
			RequestBodyTruncated:  x.Request.BodyTruncated,
			ResponseBodyTruncated: x.Response.BodyTruncated,
			NoResponse:            x.Flags&exchange.FlagNoResponse != 0,
			Gap:                   x.Flags&exchange.FlagGap != 0,
			DecodeError:           x.Flags&exchange.FlagDecodeError != 0,
			Incomplete:            x.Flags&exchange.FlagIncomplete != 0,
			FramingError:          x.Flags&exchange.FlagFramingError != 0,
			RequestBodyDecoded:    x.Request.BodyDecoded,
			ResponseBodyDecoded:   x.Response.BodyDecoded,
			RequestBodyEncoding:   bodyEncoding(x.Request.Body),
			ResponseBodyEncoding:  bodyEncoding(x.Response.Body),
			OriginalSource:        originalSource(x.Request.Headers),
		},
	}
	if rewrite != "" {
		t.Meta.OriginalPath = x.Request.Path
	}
	setProtocolMeta(&t.Meta, x)
	var scratch []byte
	forEachParam(x.Request.RawQuery, func(name, value string) {
		var n, v string
		scratch, n = unescapeQuery(scratch[:0], name)
		n = strings.Clone(n)
		scratch, v = unescapeQuery(scratch[:0], value)
		v = strings.Clone(v)
		t.Request.URL.Parameters = append(t.Request.URL.Parameters, NameValue{
			Name:  n,
			Value: v,
		})
	})
	return t
}

func nameValues(hs []exchange.Header) []NameValue {
	out := make([]NameValue, len(hs))
	for i, h := range hs {
		out[i] = NameValue{Name: h.Name, Value: h.Value}
	}
	return out
}

// traceHost is the Host header, or the server's ip:port when the request had none.
func traceHost(x *exchange.Exchange) string {
	if x.Request.Host != "" {
		return x.Request.Host
	}
	return netip.AddrPortFrom(x.Server.Addr().Unmap(), x.Server.Port()).String()
}

func durationMs(d time.Duration) float64 {
	return float64(d) / float64(time.Millisecond)
}

// originalSource is the first X-Forwarded-For entry: the client a proxy in front of the
// mirrored server saw.
func originalSource(hs []exchange.Header) string {
	for _, h := range hs {
		if strings.EqualFold(h.Name, "X-Forwarded-For") {
			first, _, _ := strings.Cut(h.Value, ",")
			return strings.TrimSpace(first)
		}
	}
	return ""
}

// forEachParam calls fn for every name=value pair of a raw query, in order, still escaped.
// Repeated names are kept; a pair without '=' has an empty value; empty pairs are skipped.
func forEachParam(rawQuery string, fn func(name, value string)) {
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		if pair == "" {
			continue
		}
		name, value, _ := strings.Cut(pair, "=")
		fn(name, value)
	}
}

// unescapeQuery decodes one query component ('+' is a space, %XX a byte) using scratch for
// the result. A component with an invalid escape is returned raw, as it was sent. The
// returned string may share memory with scratch or s.
func unescapeQuery(scratch []byte, s string) ([]byte, string) {
	needs := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '%':
			if i+2 >= len(s) || unhex(s[i+1]) < 0 || unhex(s[i+2]) < 0 {
				return scratch, s
			}
			needs = true
		case '+':
			needs = true
		}
	}
	if !needs {
		return scratch, s
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '%':
			scratch = append(scratch, byte(unhex(s[i+1])<<4|unhex(s[i+2])))
			i += 2
		case '+':
			scratch = append(scratch, ' ')
		default:
			scratch = append(scratch, c)
		}
	}
	return scratch, bytesView(scratch)
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// appendRFC3339Nano appends t in UTC exactly as time.RFC3339Nano formats it.
func appendRFC3339Nano(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.UTC().AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

func appendInt(dst []byte, v int64) []byte { return strconv.AppendInt(dst, v, 10) }

// bodyText is a body as a trace carries it: the text when it is valid UTF-8, else base64 of
// its bytes (bodyEncoding then says "base64"), never text with bytes replaced.
func bodyText(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// bodyEncoding is "base64" for a body bodyText encodes, "" for text.
func bodyEncoding(b []byte) string {
	if utf8.Valid(b) {
		return ""
	}
	return "base64"
}
