package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/metlo-labs/metlo-appliance/test/lab/labbody"
)

// Query strings are written raw so percent-encoding, '+', repeated keys and empty values
// reach the wire exactly as listed.
var queries = []string{
	"page=1&limit=5",
	"page=2&limit=3&tag=admin&tag=ops",
	"q=caf%C3%A9+au+lait&limit=2",
	"q=a%26b%3Dc&filter=&flag",
	"tag=&tag=x%20y&page=0",
	"limit=4&sort=-created_at&fields=id,name,email",
	"q=%E2%9C%93%20ok&page=3&limit=1",
}

// op is one request of the keep-alive mix.
type op struct {
	method, target, body, ctype, lcase string
	header                             http.Header
	chunked                            bool // send the body with Transfer-Encoding: chunked
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

func randomOp(r *rand.Rand, c config) op {
	id := r.IntN(120) + 1
	switch r.IntN(16) {
	case 0, 1:
		return op{method: "GET", target: "/api/users?" + pick(r, queries), lcase: "query"}
	case 2:
		return op{method: "GET", target: fmt.Sprintf("/api/users/%d", id), lcase: "get"}
	case 3:
		return op{method: "HEAD", target: fmt.Sprintf("/api/users/%d", id), lcase: "head"}
	case 4:
		body := fmt.Sprintf(`{"name":"user%d","email":"user%d@example.com","tags":["new","seed-%d"]}`, id, id, c.seed)
		return op{method: "POST", target: "/api/users", body: body, ctype: "application/json", lcase: "post-json"}
	case 5:
		body := fmt.Sprintf(`{"name":"renamed%d","email":"r%d@example.org"}`, id, id)
		return op{method: "PUT", target: fmt.Sprintf("/api/users/%d?notify=true", id), body: body, ctype: "application/json", lcase: "put-json"}
	case 6:
		return op{method: "DELETE", target: fmt.Sprintf("/api/users/%d", id), lcase: "delete-204"}
	case 7:
		body := fmt.Sprintf("username=user%d&password=p%%40ss+w%%C3%%B6rd%d&remember=", id, r.IntN(1000))
		return op{method: "POST", target: "/api/login", body: body, ctype: "application/x-www-form-urlencoded", lcase: "form"}
	case 8:
		return op{method: "GET", target: pick(r, []string{"/api/nope", "/api/files/r%C3%A9sum%C3%A9.pdf", "/api/users/999999", "/favicon.ico"}), lcase: "404"}
	case 9:
		return op{method: "GET", target: "/api/fail?retry=" + fmt.Sprint(r.IntN(3)), lcase: "500"}
	case 10, 11:
		enc := pick(r, []string{"gzip", "deflate", "br"})
		fr := pick(r, []string{"length", "chunked"})
		gen := labbody.Spec{Kind: labbody.KindNDJSON, Seed: r.Uint64N(1000), Size: 2000 + r.IntN(12000)}
		return op{method: "GET", target: fmt.Sprintf("/api/blob?gen=%s&encoding=%s&framing=%s", gen, enc, fr),
			header: http.Header{"Accept-Encoding": {"gzip, deflate, br"}}, lcase: enc + "-" + fr}
	case 12:
		return op{method: "GET", target: fmt.Sprintf("/api/stream?events=%d", 5+r.IntN(40)), lcase: "chunked-trailers"}
	case 13:
		gen := labbody.Spec{Kind: labbody.KindText, Seed: r.Uint64N(1000), Size: 500 + r.IntN(20000)}
		return op{method: "POST", target: "/api/ingest?src=chunked", body: string(labbody.Generate(gen)), ctype: "text/plain",
			header: http.Header{"X-Lab-Body-Gen": {gen.String()}}, chunked: true, lcase: "chunked-upload"}
	case 14:
		return op{method: "GET", target: fmt.Sprintf("/api/users/%d?encoding=gzip&framing=chunked", id),
			header: http.Header{"Accept-Encoding": {"gzip"}}, lcase: "gzip-small-chunked"}
	default:
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		mw.SetBoundary(fmt.Sprintf("labboundary%08d", r.IntN(1e8)))
		mw.WriteField("title", fmt.Sprintf("report %d", id))
		fw, _ := mw.CreateFormFile("file", fmt.Sprintf("data%d.csv", id))
		fmt.Fprintf(fw, "id,name\n%d,user%d\n%d,user%d\n", id, id, id+1, id+1)
		mw.Close()
		return op{method: "POST", target: "/api/upload", body: b.String(), ctype: mw.FormDataContentType(), lcase: "multipart"}
	}
}

func newRequest(ctx context.Context, c config, o op) (*http.Request, error) {
	var body io.Reader
	if o.body != "" {
		body = strings.NewReader(o.body)
	}
	req, err := http.NewRequestWithContext(ctx, o.method, "http://"+c.addr+o.target, body)
	if err != nil {
		return nil, fmt.Errorf("build %s %s: %w", o.method, o.target, err)
	}
	req.Host = c.host
	for k, v := range o.header {
		req.Header[k] = v
	}
	if o.ctype != "" {
		req.Header.Set("Content-Type", o.ctype)
	}
	req.Header.Set("User-Agent", "metlo-labclient/1")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("X-Lab-Case", o.lcase)
	if o.chunked {
		req.ContentLength = -1
		req.Body = io.NopCloser(io.MultiReader(strings.NewReader(o.body))) // hide the length
	}
	return req, nil
}

// roundTrip sends one request and drains the (undecoded) response body.
func roundTrip(client *http.Client, req *http.Request) (*http.Response, error) {
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.RequestURI(), err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return nil, fmt.Errorf("%s %s: read body: %w", req.Method, req.URL.RequestURI(), err)
	}
	return resp, nil
}

func newClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1,
			ExpectContinueTimeout: time.Second},
		Timeout: 30 * time.Second,
	}
}

// keepAlive sends a seeded mix of API calls over one persistent connection, revalidating a
// listing with If-None-Match after each plain GET of it (→ 304).
func keepAlive(ctx context.Context, c config, worker int) (int, error) {
	r := rand.New(rand.NewPCG(c.seed, uint64(worker)+100))
	client := newClient()
	defer client.CloseIdleConnections()
	n := 0
	for n < c.perWorker {
		o := randomOp(r, c)
		req, err := newRequest(ctx, c, o)
		if err != nil {
			return n, err
		}
		resp, err := roundTrip(client, req)
		if err != nil {
			return n, err
		}
		n++
		if etag := resp.Header.Get("Etag"); etag != "" && o.method == "GET" && n < c.perWorker {
			req, err := newRequest(ctx, c, op{method: "GET", target: o.target, lcase: "304",
				header: http.Header{"If-None-Match": {etag}}})
			if err != nil {
				return n, err
			}
			if _, err := roundTrip(client, req); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// rawRequest renders one HTTP/1.1 request as bytes.
func rawRequest(c config, method, target string, header http.Header, body string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: metlo-labclient/1\r\n", method, target, c.host)
	for k, vs := range header {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	if body != "" || method == "POST" || method == "PUT" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.Bytes()
}

func dial(ctx context.Context, c config) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	return conn, nil
}

// pipeline writes depth requests back to back in one write, then reads every response.
func pipeline(ctx context.Context, c config, idx int) (int, error) {
	r := rand.New(rand.NewPCG(c.seed, uint64(idx)+200))
	conn, err := dial(ctx, c)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	var wire bytes.Buffer
	methods := make([]string, 0, c.depth)
	for i := range c.depth {
		var o op
		switch i % 4 {
		case 1:
			o = op{method: "HEAD", target: fmt.Sprintf("/api/users/%d", r.IntN(50)+1)}
		case 2:
			o = op{method: "POST", target: "/api/users?via=pipeline", ctype: "application/json",
				body: fmt.Sprintf(`{"name":"piped%d","email":"p%d@example.com"}`, i, r.IntN(1000))}
		case 3:
			o = op{method: "GET", target: fmt.Sprintf("/api/stream?events=%d&encoding=gzip", 3+r.IntN(10))}
		default:
			o = op{method: "GET", target: "/api/users?" + pick(r, queries)}
		}
		h := http.Header{"X-Lab-Case": {"pipelined"}}
		if o.ctype != "" {
			h.Set("Content-Type", o.ctype)
		}
		wire.Write(rawRequest(c, o.method, o.target, h, o.body))
		methods = append(methods, o.method)
	}
	if _, err := conn.Write(wire.Bytes()); err != nil {
		return 0, fmt.Errorf("pipeline write: %w", err)
	}
	br := bufio.NewReader(conn)
	for i, m := range methods {
		resp, err := http.ReadResponse(br, &http.Request{Method: m})
		if err != nil {
			return i, fmt.Errorf("pipeline read response %d: %w", i, err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return i, fmt.Errorf("pipeline read body %d: %w", i, err)
		}
	}
	return len(methods), nil
}

// expectContinue sends bodies only after the server's 100 Continue, and one oversized
// upload the server refuses up front (its body is never sent).
func expectContinue(ctx context.Context, c config) (int, error) {
	n := 0
	for i, size := range []int{3000, 40000} {
		gen := labbody.Spec{Kind: labbody.KindText, Seed: uint64(7 + i), Size: size}
		conn, err := dial(ctx, c)
		if err != nil {
			return n, err
		}
		body := labbody.Generate(gen)
		head := fmt.Sprintf("POST /api/ingest?expect=1 HTTP/1.1\r\nHost: %s\r\nContent-Type: text/plain\r\n"+
			"Content-Length: %d\r\nExpect: 100-continue\r\nX-Lab-Body-Gen: %s\r\nX-Lab-Case: expect-100\r\n\r\n", c.host, len(body), gen)
		br := bufio.NewReader(conn)
		if _, err := conn.Write([]byte(head)); err != nil {
			conn.Close()
			return n, fmt.Errorf("expect write: %w", err)
		}
		line, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
			conn.Close()
			return n, fmt.Errorf("expect: want 100 Continue, got %q: %v", line, err)
		}
		if _, err := br.ReadString('\n'); err != nil { // blank line after the interim response
			conn.Close()
			return n, fmt.Errorf("expect: %w", err)
		}
		if _, err := conn.Write(body); err != nil {
			conn.Close()
			return n, fmt.Errorf("expect body: %w", err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
		}
		conn.Close()
		if err != nil {
			return n, fmt.Errorf("expect response: %w", err)
		}
		n++
	}
	// Refused before the body: the server answers 413 and the client never sends the body.
	conn, err := dial(ctx, c)
	if err != nil {
		return n, err
	}
	defer conn.Close()
	head := fmt.Sprintf("POST /api/ingest?expect=big HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\n"+
		"Content-Length: %d\r\nExpect: 100-continue\r\nX-Lab-Case: expect-refused\r\n\r\n", c.host, 20<<20)
	if _, err := conn.Write([]byte(head)); err != nil {
		return n, fmt.Errorf("expect refused write: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return n, fmt.Errorf("expect refused response: %w", err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		return n, fmt.Errorf("expect refused: status %d", resp.StatusCode)
	}
	return n + 1, nil
}

// closeAfter sends requests with Connection: close, each on its own connection.
func closeAfter(ctx context.Context, c config) (int, error) {
	targets := []string{"/api/users/3?close=1", "/api/users?" + queries[2], "/api/fail?close=1"}
	for i, t := range targets {
		req, err := newRequest(ctx, c, op{method: "GET", target: t, lcase: "conn-close"})
		if err != nil {
			return i, err
		}
		req.Close = true
		client := newClient()
		_, err = roundTrip(client, req)
		client.CloseIdleConnections()
		if err != nil {
			return i, err
		}
	}
	return len(targets), nil
}

// untilClose fetches responses whose body is delimited by the server closing the connection.
func untilClose(ctx context.Context, c config) (int, error) {
	targets := []string{"/api/legacy", "/api/legacy?framing=close10", "/api/blob?gen=ndjson/5/6000&framing=close&encoding=gzip"}
	for i, t := range targets {
		conn, err := dial(ctx, c)
		if err != nil {
			return i, err
		}
		_, err = conn.Write(rawRequest(c, "GET", t, http.Header{"X-Lab-Case": {"read-until-close"}}, ""))
		if err == nil {
			_, err = io.ReadAll(conn)
		}
		conn.Close()
		if err != nil {
			return i, fmt.Errorf("until close %s: %w", t, err)
		}
	}
	return len(targets), nil
}

// large moves bodies past the usual 64 KiB caps: a 200 KiB download, a 1 MiB gzip download
// (small on the wire), a 70 KiB upload and, with huge, raw 1 MiB both ways.
func large(ctx context.Context, c config) (int, error) {
	ops := []op{
		{method: "GET", target: "/api/blob?gen=text/11/204800", lcase: "large-200k"},
		{method: "GET", target: "/api/blob?gen=ndjson/12/1048576&encoding=gzip&framing=chunked",
			header: http.Header{"Accept-Encoding": {"gzip"}}, lcase: "large-1m-gzip"},
		{method: "GET", target: "/api/blob?gen=ndjson/14/150000&encoding=br",
			header: http.Header{"Accept-Encoding": {"br"}}, lcase: "large-br"},
	}
	upload := func(s labbody.Spec, lcase string) op {
		return op{method: "POST", target: "/api/ingest?size=" + fmt.Sprint(s.Size), body: string(labbody.Generate(s)),
			ctype: "text/plain", header: http.Header{"X-Lab-Body-Gen": {s.String()}}, lcase: lcase}
	}
	ops = append(ops, upload(labbody.Spec{Kind: labbody.KindText, Seed: 13, Size: 70 << 10}, "large-upload"))
	if c.huge {
		ops = append(ops, op{method: "GET", target: "/api/blob?gen=text/15/1048576", lcase: "huge-1m"},
			upload(labbody.Spec{Kind: labbody.KindText, Seed: 16, Size: 1 << 20}, "huge-upload"))
	}
	client := newClient()
	defer client.CloseIdleConnections()
	for i, o := range ops {
		req, err := newRequest(ctx, c, o)
		if err != nil {
			return i, err
		}
		if _, err := roundTrip(client, req); err != nil {
			return i, err
		}
	}
	return len(ops), nil
}
