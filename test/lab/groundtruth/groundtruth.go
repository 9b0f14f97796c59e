// Package groundtruth reads the lab server's log of the HTTP exchanges it served and compares
// it with what a collector observed on the wire.
package groundtruth

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"unicode/utf8"
)

// InlineBodyMax is the largest body the ground truth stores inline.
const InlineBodyMax = 4096

// Exchange is one request/response pair as the lab server served it (one JSONL line).
type Exchange struct {
	Seq    int    `json:"seq"`    // order of receipt across the whole server, from 1
	Client string `json:"client"` // client "ip:port" as the server saw it
	Method string `json:"method"`
	Target string `json:"target"` // request-target as sent, e.g. "/api/users?page=2"
	Path   string `json:"path"`   // Target without the query, still percent-encoded
	Query  string `json:"query"`  // raw query after '?', still percent-encoded
	Status int    `json:"status"` // final status (never 100)

	ReqBodyLen    int64  `json:"req_body_len"`
	ReqBodySHA256 string `json:"req_body_sha256"`
	ReqBody       string `json:"req_body,omitempty"`     // inline when ≤ InlineBodyMax and UTF-8
	ReqBodyGen    string `json:"req_body_gen,omitempty"` // labbody spec that reproduces the body

	RespBodyLen    int64  `json:"resp_body_len"`
	RespBodySHA256 string `json:"resp_body_sha256"`
	RespBody       string `json:"resp_body,omitempty"`     // decoded body, inline when ≤ InlineBodyMax and UTF-8
	RespBodyGen    string `json:"resp_body_gen,omitempty"` // labbody spec of the decoded body
	RespEncoding   string `json:"resp_encoding,omitempty"` // Content-Encoding on the wire
	RespFraming    string `json:"resp_framing,omitempty"`  // length, chunked, chunked+trailers, close, none
	Case           string `json:"case,omitempty"`          // what the exchange exercises
}

// SetReqBody fills the request body fields from the received bytes.
func (e *Exchange) SetReqBody(b []byte) {
	e.ReqBodyLen, e.ReqBodySHA256, e.ReqBody = bodyFields(b)
}

// SetRespBody fills the response body fields from the decoded bytes.
func (e *Exchange) SetRespBody(b []byte) {
	e.RespBodyLen, e.RespBodySHA256, e.RespBody = bodyFields(b)
}

func bodyFields(b []byte) (int64, string, string) {
	sum := sha256.Sum256(b)
	inline := ""
	if len(b) <= InlineBodyMax && utf8.Valid(b) {
		inline = string(b)
	}
	return int64(len(b)), hex.EncodeToString(sum[:]), inline
}

// Load reads a ground-truth JSONL file.
func Load(path string) ([]Exchange, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open ground truth: %w", err)
	}
	defer f.Close()
	return Read(f)
}

// Read parses ground-truth JSONL from r.
func Read(r io.Reader) ([]Exchange, error) {
	var out []Exchange
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var e Exchange
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("parse ground truth line %d: %w", line, err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read ground truth: %w", err)
	}
	return out, nil
}
