package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/metlo-labs/metlo-appliance/test/lab/labbody"
)

// maxIngest is the largest upload /api/ingest accepts; bigger ones are refused before the
// body is read, which with Expect: 100-continue means the client never sends it.
const maxIngest = 8 << 20

func newAPI() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/users", listUsers)
	mux.HandleFunc("GET /api/users/{id}", getUser) // also serves HEAD
	mux.HandleFunc("POST /api/users", createUser)
	mux.HandleFunc("PUT /api/users/{id}", updateUser)
	mux.HandleFunc("DELETE /api/users/{id}", deleteUser)
	mux.HandleFunc("POST /api/login", login)
	mux.HandleFunc("POST /api/upload", upload)
	mux.HandleFunc("POST /api/ingest", ingest)
	mux.HandleFunc("GET /api/blob", blob)
	mux.HandleFunc("GET /api/stream", stream)
	mux.HandleFunc("GET /api/legacy", legacy)
	mux.HandleFunc("GET /api/fail", fail)
	mux.HandleFunc("/", notFound)
	return mux
}

func jsonReply(status int, v any) reply {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(`{"error":"marshal"}`)
	}
	return reply{status: status, contentType: "application/json", body: b}
}

// wireOptions applies the encoding/framing the client asked for in the query.
func wireOptions(r *http.Request, rp reply) reply {
	q := r.URL.Query()
	switch enc := q.Get("encoding"); enc {
	case "gzip", "deflate", "br":
		rp.encoding = enc
	}
	switch fr := q.Get("framing"); fr {
	case "chunked", "chunked+trailers", "close", "close10", "length":
		rp.framing = fr
	}
	if n, err := strconv.Atoi(q.Get("chunk")); err == nil && n > 0 {
		rp.chunk = n
	}
	return rp
}

type user struct {
	ID    int      `json:"id"`
	Name  string   `json:"name"`
	Email string   `json:"email"`
	Tags  []string `json:"tags,omitempty"`
}

func makeUser(id int) user {
	names := []string{"ada", "grace", "alan", "edsger", "barbara", "ken", "dennis"}
	n := names[id%len(names)]
	return user{ID: id, Name: n, Email: fmt.Sprintf("%s.%d@example.com", n, id)}
}

func listUsers(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	page, _ := strconv.Atoi(q.Get("page"))
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit <= 0 || limit > 100 {
		limit = 5
	}
	users := make([]user, 0, limit)
	for i := range limit {
		u := makeUser(page*limit + i + 1)
		u.Tags = q["tag"]
		users = append(users, u)
	}
	rp := jsonReply(http.StatusOK, map[string]any{
		"page": page, "limit": limit, "q": q.Get("q"), "filter": q["filter"], "users": users,
	})
	sum := sha256.Sum256(rp.body)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	rp.header = http.Header{"Etag": {etag}, "Cache-Control": {"max-age=60"}}
	if r.Header.Get("If-None-Match") == etag {
		rp.status, rp.body = http.StatusNotModified, nil
	}
	send(w, r, wireOptions(r, rp))
}

func userID(w http.ResponseWriter, r *http.Request) (int, bool) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil || id <= 0 || id > 5000 {
		send(w, r, jsonReply(http.StatusNotFound, map[string]string{"error": "no such user", "id": r.PathValue("id")}))
		return 0, false
	}
	return id, true
}

func getUser(w http.ResponseWriter, r *http.Request) {
	if id, ok := userID(w, r); ok {
		send(w, r, wireOptions(r, jsonReply(http.StatusOK, makeUser(id))))
	}
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(r.Body)
	if err == nil {
		err = json.Unmarshal(body, v)
	}
	if err != nil {
		send(w, r, jsonReply(http.StatusBadRequest, map[string]string{"error": "bad json"}))
		return false
	}
	return true
}

func createUser(w http.ResponseWriter, r *http.Request) {
	var u user
	if readJSON(w, r, &u) {
		u.ID = 1000 + len(u.Name)*7 + len(u.Email)
		rp := jsonReply(http.StatusCreated, u)
		rp.header = http.Header{"Location": {"/api/users/" + strconv.Itoa(u.ID)}}
		send(w, r, wireOptions(r, rp))
	}
}

func updateUser(w http.ResponseWriter, r *http.Request) {
	id, ok := userID(w, r)
	if !ok {
		io.Copy(io.Discard, r.Body)
		return
	}
	var u user
	if readJSON(w, r, &u) {
		u.ID = id
		send(w, r, wireOptions(r, jsonReply(http.StatusOK, u)))
	}
}

func deleteUser(w http.ResponseWriter, r *http.Request) {
	if _, ok := userID(w, r); ok {
		send(w, r, reply{status: http.StatusNoContent})
	}
}

func login(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		send(w, r, jsonReply(http.StatusBadRequest, map[string]string{"error": "bad form"}))
		return
	}
	user, pass := r.PostForm.Get("username"), r.PostForm.Get("password")
	if user == "" || pass == "" {
		send(w, r, jsonReply(http.StatusUnauthorized, map[string]string{"error": "missing credentials"}))
		return
	}
	sum := sha256.Sum256([]byte(user + ":" + pass))
	send(w, r, jsonReply(http.StatusOK, map[string]any{
		"token": hex.EncodeToString(sum[:16]), "user": user, "remember": r.PostForm.Get("remember"),
	}))
}

func upload(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseMultipartForm(16 << 20); err != nil {
		send(w, r, jsonReply(http.StatusBadRequest, map[string]string{"error": "bad multipart"}))
		return
	}
	parts := map[string]any{}
	for k, v := range r.MultipartForm.Value {
		parts[k] = v
	}
	for k, fhs := range r.MultipartForm.File {
		for _, fh := range fhs {
			parts[k+":"+fh.Filename] = fh.Size
		}
	}
	r.MultipartForm.RemoveAll()
	send(w, r, jsonReply(http.StatusOK, map[string]any{"received": parts}))
}

// ingest accepts any body (Content-Length, chunked, after 100-continue) and answers with its
// length and hash; X-Lab-Body-Gen names the recipe the client generated it from.
func ingest(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > maxIngest {
		send(w, r, jsonReply(http.StatusRequestEntityTooLarge, map[string]any{"error": "too large", "max": maxIngest}))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxIngest+1))
	if err != nil {
		send(w, r, jsonReply(http.StatusBadRequest, map[string]string{"error": "read body"}))
		return
	}
	if spec, err := labbody.ParseSpec(r.Header.Get("X-Lab-Body-Gen")); err == nil {
		if string(labbody.Generate(spec)) == string(body) {
			exchangeOf(r).reqGen = spec.String()
		}
	}
	sum := sha256.Sum256(body)
	send(w, r, wireOptions(r, jsonReply(http.StatusOK, map[string]any{
		"len": len(body), "sha256": hex.EncodeToString(sum[:]), "chunked": len(r.TransferEncoding) > 0,
	})))
}

// blob serves the generated body named by ?gen=kind/seed/size.
func blob(w http.ResponseWriter, r *http.Request) {
	spec, err := labbody.ParseSpec(r.URL.Query().Get("gen"))
	if err != nil {
		send(w, r, jsonReply(http.StatusBadRequest, map[string]string{"error": err.Error()}))
		return
	}
	ct := "text/plain; charset=utf-8"
	if spec.Kind == labbody.KindNDJSON {
		ct = "application/x-ndjson"
	}
	rp := reply{status: http.StatusOK, contentType: ct, body: labbody.Generate(spec), gen: spec.String()}
	send(w, r, wireOptions(r, rp))
}

// stream is a chunked ndjson feed with trailers unless the query asks otherwise.
func stream(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.URL.Query().Get("events"))
	if err != nil || n <= 0 || n > 1000 {
		n = 10
	}
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"event":%d,"type":"tick","user":%d}`+"\n", i, makeUser(i+1).ID)
	}
	rp := reply{status: http.StatusOK, contentType: "application/x-ndjson", body: []byte(b.String()),
		framing: "chunked+trailers", chunk: 80}
	send(w, r, wireOptions(r, rp))
}

// legacy answers like an old HTTP/1.0 backend: no length, the body ends at close.
func legacy(w http.ResponseWriter, r *http.Request) {
	var b strings.Builder
	for i := range 40 {
		fmt.Fprintf(&b, "legacy line %03d: the quick brown fox jumps over the lazy dog\n", i)
	}
	rp := reply{status: http.StatusOK, contentType: "text/plain", body: []byte(b.String()), framing: "close"}
	send(w, r, wireOptions(r, rp))
}

func fail(w http.ResponseWriter, r *http.Request) {
	send(w, r, wireOptions(r, jsonReply(http.StatusInternalServerError, map[string]string{"error": "internal", "trace": "db timeout"})))
}

func notFound(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	send(w, r, jsonReply(http.StatusNotFound, map[string]string{"error": "not found", "path": r.URL.Path}))
}
