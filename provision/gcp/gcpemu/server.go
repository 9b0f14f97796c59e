// Package gcpemu is an in-process, stateful emulator of the slice of the Compute Engine REST
// API that the GCP provisioner uses, plus a metadata-server emulator. It speaks the real wire
// protocol (JSON bodies, long-running operations polled at their operations/{name} URLs,
// Google JSON errors) so the real cloud.google.com/go/compute/apiv1 REST clients drive it, and
// it enforces the Packet Mirroring and load-balancer rules so provisioning mistakes fail.
package gcpemu

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// linkBase is the prefix of every selfLink the emulator hands out, as the real API does.
const linkBase = "https://www.googleapis.com/compute/v1/"

var (
	nameRE = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)
	uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

// Server is the Compute Engine emulator; create it with New and seed it with AddNetwork,
// AddSubnetwork and AddInstance.
type Server struct {
	// PendingPolls is how many polls an operation answers PENDING (then RUNNING once) before DONE.
	PendingPolls int
	// PageSize caps the items of one list page (callers must follow nextPageToken, as with
	// the real API's maxResults); 0 = unlimited.
	PageSize int
	// AfterMutation, when set, runs after each accepted mutating call (outside the lock) with
	// its method name, e.g. "compute.firewalls.insert"; tests use it to interrupt a client.
	AfterMutation func(method string)

	srv *httptest.Server

	mu        sync.Mutex
	res       map[string]proto.Message // key: relative path "projects/p/regions/r/kind/name"
	members   map[string][]string      // instance group key → instance keys
	ops       map[string]*opState      // key: relative operation path
	requests  map[string]string        // requestId → operation key
	failNext  map[string]apiError      // method → error its next operation ends with
	calls     []string
	unhealthy map[string]bool // instances whose /readyz fails
	nextID    uint64
	opCounter int
}

type opState struct {
	op    *computepb.Operation
	polls int
	err   *apiError // attached when the operation finishes, as the real API does
}

type apiError struct {
	Code    int
	Reason  string
	Message string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.Code, e.Reason, e.Message) }

// New starts an emulator on a loopback port; Close it when done.
func New() *Server {
	s := &Server{
		PendingPolls: 1,
		PageSize:     2,
		unhealthy:    map[string]bool{},
		res:          map[string]proto.Message{},
		members:      map[string][]string{},
		ops:          map[string]*opState{},
		requests:     map[string]string{},
		failNext:     map[string]apiError{},
		nextID:       1000,
	}
	s.srv = httptest.NewServer(s.routes())
	return s
}

// URL is the endpoint to pass to option.WithEndpoint.
func (s *Server) URL() string { return s.srv.URL }

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// FailNextOperation makes the next operation of method (e.g. "compute.packetMirrorings.insert")
// finish DONE with the given error instead of applying its change.
func (s *Server) FailNextOperation(method string, code int, reason, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext[method] = apiError{Code: code, Reason: reason, Message: message}
}

// Calls returns every API method called so far, in order.
func (s *Server) Calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.calls...)
}

// ResetCalls forgets the call log.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = nil
}

// Mutations returns the mutating calls (insert, delete, patch, addInstances) made so far.
func (s *Server) Mutations() []string {
	var out []string
	for _, c := range s.Calls() {
		if isMutating(c) {
			out = append(out, c)
		}
	}
	return out
}

func isMutating(method string) bool {
	for _, verb := range []string{".insert", ".delete", ".patch", ".addInstances", ".removeInstances"} {
		if strings.HasSuffix(method, verb) {
			return true
		}
	}
	return false
}

// Keys lists the stored resources of one collection (e.g. "packetMirrorings"), as relative paths.
func (s *Server) Keys(collection string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.res {
		if collectionOf(k) == collection {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Get returns a copy of a stored resource by relative path, or nil.
func (s *Server) Get(key string) proto.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, ok := s.res[key]; ok {
		return proto.Clone(m)
	}
	return nil
}

// Members lists the instances (relative paths) in an instance group.
func (s *Server) Members(groupKey string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.members[groupKey]...)
}

// Put stores a resource as if someone else had created it (used to seed conflicts).
func (s *Server) Put(key string, m proto.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stamp(key, m)
	s.res[key] = m
}

// AddNetwork seeds a VPC network.
func (s *Server) AddNetwork(project, name string) {
	s.Put(fmt.Sprintf("projects/%s/global/networks/%s", project, name), &computepb.Network{})
}

// AddSubnetwork seeds a subnetwork of network in region.
func (s *Server) AddSubnetwork(project, region, name, network, cidr string) {
	s.Put(fmt.Sprintf("projects/%s/regions/%s/subnetworks/%s", project, region, name), &computepb.Subnetwork{
		Network:     proto.String(linkBase + fmt.Sprintf("projects/%s/global/networks/%s", project, network)),
		IpCidrRange: proto.String(cidr),
	})
}

// Instance describes a VM to seed.
type Instance struct {
	Project, Zone, Name string
	Network, Subnetwork string // names; the subnetwork is in the zone's region
	IP                  string
	Tags                []string
	ServiceAccount      string
}

// AddInstance seeds a VM with one network interface.
func (s *Server) AddInstance(in Instance) {
	inst := &computepb.Instance{
		Status: proto.String("RUNNING"),
		NetworkInterfaces: []*computepb.NetworkInterface{{
			Name:       proto.String("nic0"),
			Network:    proto.String(linkBase + fmt.Sprintf("projects/%s/global/networks/%s", in.Project, in.Network)),
			Subnetwork: proto.String(linkBase + fmt.Sprintf("projects/%s/regions/%s/subnetworks/%s", in.Project, regionOf(in.Zone), in.Subnetwork)),
			NetworkIP:  proto.String(in.IP),
		}},
	}
	if len(in.Tags) > 0 {
		inst.Tags = &computepb.Tags{Items: in.Tags}
	}
	if in.ServiceAccount != "" {
		inst.ServiceAccounts = []*computepb.ServiceAccount{{Email: proto.String(in.ServiceAccount)}}
	}
	s.Put(fmt.Sprintf("projects/%s/zones/%s/instances/%s", in.Project, in.Zone, in.Name), inst)
}

// regionOf turns a zone name (us-central1-a) into its region (us-central1).
func regionOf(zone string) string {
	if i := strings.LastIndex(zone, "-"); i > 0 {
		return zone[:i]
	}
	return zone
}

// rel reduces any resource reference (full URL, "projects/…", or project-relative
// "regions/…" / "zones/…" / "global/…") to the relative path "projects/p/…".
func rel(project, ref string) string {
	if i := strings.Index(ref, "/compute/v1/"); i >= 0 {
		ref = ref[i+len("/compute/v1/"):]
	}
	ref = strings.TrimPrefix(ref, "/")
	if !strings.HasPrefix(ref, "projects/") {
		ref = "projects/" + project + "/" + ref
	}
	return ref
}

// collectionOf returns the collection segment of a relative path.
func collectionOf(key string) string {
	parts := strings.Split(key, "/")
	if len(parts) < 2 {
		return ""
	}
	return parts[len(parts)-2]
}

// location returns ("regions", "us-central1") style scope of a relative path.
func location(key string) (scope, loc string) {
	parts := strings.Split(key, "/")
	if len(parts) >= 4 {
		if parts[2] == "global" {
			return "global", ""
		}
		return parts[2], parts[3]
	}
	return "", ""
}

// stamp fills the output-only fields (name, selfLink, id, kind, creationTimestamp, region/zone).
func (s *Server) stamp(key string, m proto.Message) {
	r := m.ProtoReflect()
	fields := r.Descriptor().Fields()
	setStr := func(name, v string) {
		if f := fields.ByName(protoreflect.Name(name)); f != nil && f.Kind() == protoreflect.StringKind {
			r.Set(f, protoreflect.ValueOfString(v))
		}
	}
	parts := strings.Split(key, "/")
	setStr("name", parts[len(parts)-1])
	setStr("self_link", linkBase+key)
	setStr("creation_timestamp", time.Now().UTC().Format(time.RFC3339))
	setStr("kind", "compute#"+strings.TrimSuffix(collectionOf(key), "s"))
	scope, loc := location(key)
	switch scope {
	case "regions":
		setStr("region", linkBase+strings.Join(parts[:4], "/"))
	case "zones":
		setStr("zone", linkBase+strings.Join(parts[:4], "/"))
	}
	if f := fields.ByName("id"); f != nil && !r.Has(f) {
		s.nextID++
		r.Set(f, protoreflect.ValueOfUint64(s.nextID))
	}
	_ = loc
}

// writeJSON writes a protobuf message as the API's JSON.
func writeJSON(w http.ResponseWriter, m proto.Message) {
	b, err := protojson.Marshal(m)
	if err != nil {
		writeError(w, &apiError{500, "internal", err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	_, _ = w.Write(b)
}

// pageOf cuts one page out of n items for a request's maxResults/pageToken and returns the
// bounds and the next page token ("" on the last page).
func (s *Server) pageOf(r *http.Request, n int) (from, to int, next string, err *apiError) {
	size := s.PageSize
	if m, e := strconv.Atoi(r.URL.Query().Get("maxResults")); e == nil && m > 0 && (size == 0 || m < size) {
		size = m
	}
	if tok := r.URL.Query().Get("pageToken"); tok != "" {
		f, e := strconv.Atoi(tok)
		if e != nil || f < 0 || f > n {
			return 0, 0, "", badRequest("invalid", "Invalid value for field 'pageToken': '%s'", tok)
		}
		from = f
	}
	to = n
	if size > 0 && from+size < n {
		to = from + size
		next = strconv.Itoa(to)
	}
	return from, to, next, nil
}

// writeList writes {"items": [...], "nextPageToken": …} the way the list methods answer.
func writeList(w http.ResponseWriter, kind string, items []proto.Message, next string) {
	raw := make([]json.RawMessage, 0, len(items))
	for _, m := range items {
		b, err := protojson.Marshal(m)
		if err != nil {
			writeError(w, &apiError{500, "internal", err.Error()})
			return
		}
		raw = append(raw, b)
	}
	body := map[string]any{"kind": kind}
	if len(raw) > 0 {
		body["items"] = raw
	}
	if next != "" {
		body["nextPageToken"] = next
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	_ = json.NewEncoder(w).Encode(body)
}

// writeError writes the Google JSON error envelope.
func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(e.Code)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"code":    e.Code,
		"message": e.Message,
		"errors":  []map[string]string{{"domain": "global", "reason": e.Reason, "message": e.Message}},
	}})
}

func notFound(key string) *apiError {
	return &apiError{404, "notFound", fmt.Sprintf("The resource '%s' was not found", key)}
}

func badRequest(reason, format string, args ...any) *apiError {
	return &apiError{400, reason, fmt.Sprintf(format, args...)}
}

// readBody decodes a request body into m, rejecting unknown fields like the real API.
func readBody(r *http.Request, m proto.Message) *apiError {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return badRequest("parseError", "read body: %v", err)
	}
	if err := protojson.Unmarshal(b, m); err != nil {
		return badRequest("parseError", "Invalid JSON payload received. %v", err)
	}
	return nil
}

// record logs a call and returns the request's relative operation scope.
func (s *Server) record(method string) {
	s.mu.Lock()
	s.calls = append(s.calls, method)
	s.mu.Unlock()
}

// startOperation registers a long-running operation for a mutation that was accepted (or
// rejected with opErr) and answers it. Callers hold s.mu; the answer is written after unlock.
func (s *Server) startOperation(project, scope, loc, method, target, requestID string, opErr *apiError) *computepb.Operation {
	s.opCounter++
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", target, s.opCounter)))
	name := fmt.Sprintf("operation-%d-%s", s.opCounter, hex.EncodeToString(sum[:6]))
	var key string
	op := &computepb.Operation{
		Name:          proto.String(name),
		OperationType: proto.String(method[strings.LastIndex(method, ".")+1:]),
		TargetLink:    proto.String(linkBase + target),
		Status:        computepb.Operation_PENDING.Enum(),
		Progress:      proto.Int32(0),
		InsertTime:    proto.String(time.Now().UTC().Format(time.RFC3339)),
		Kind:          proto.String("compute#operation"),
	}
	switch scope {
	case "zones":
		key = fmt.Sprintf("projects/%s/zones/%s/operations/%s", project, loc, name)
		op.Zone = proto.String(linkBase + fmt.Sprintf("projects/%s/zones/%s", project, loc))
	case "regions":
		key = fmt.Sprintf("projects/%s/regions/%s/operations/%s", project, loc, name)
		op.Region = proto.String(linkBase + fmt.Sprintf("projects/%s/regions/%s", project, loc))
	default:
		key = fmt.Sprintf("projects/%s/global/operations/%s", project, name)
	}
	op.SelfLink = proto.String(linkBase + key)
	s.nextID++
	op.Id = proto.Uint64(s.nextID)
	st := &opState{op: op, err: opErr}
	s.ops[key] = st
	if requestID != "" {
		s.requests[requestID] = key
	}
	if s.PendingPolls <= 0 {
		s.finish(st)
	}
	return proto.Clone(op).(*computepb.Operation)
}

func (s *Server) finish(st *opState) {
	if e := st.err; e != nil {
		st.op.Error = &computepb.Error{Errors: []*computepb.Errors{{Code: proto.String(e.Reason), Message: proto.String(e.Message)}}}
		st.op.HttpErrorStatusCode = proto.Int32(int32(e.Code))
		st.op.HttpErrorMessage = proto.String(http.StatusText(e.Code))
	}
	st.op.Status = computepb.Operation_DONE.Enum()
	st.op.Progress = proto.Int32(100)
	st.op.EndTime = proto.String(time.Now().UTC().Format(time.RFC3339))
}

// pollOperation advances an operation by one poll: PENDING for PendingPolls polls, RUNNING
// once, then DONE.
func (s *Server) pollOperation(w http.ResponseWriter, r *http.Request, method, key string) {
	s.record(method)
	s.mu.Lock()
	st, ok := s.ops[key]
	if !ok {
		s.mu.Unlock()
		writeError(w, notFound(key))
		return
	}
	if st.op.GetStatus() != computepb.Operation_DONE {
		st.polls++
		switch {
		case st.polls <= s.PendingPolls-1:
			st.op.Status = computepb.Operation_PENDING.Enum()
		case st.polls == s.PendingPolls:
			st.op.Status = computepb.Operation_RUNNING.Enum()
			st.op.Progress = proto.Int32(50)
		default:
			s.finish(st)
		}
	}
	op := proto.Clone(st.op).(*computepb.Operation)
	s.mu.Unlock()
	writeJSON(w, op)
}

// mutate runs one mutating request: requestId dedupe, synchronous checks, then the change and
// its operation. apply returns a synchronous HTTP error (400/404/409) or an operation error.
func (s *Server) mutate(w http.ResponseWriter, r *http.Request, method, target string, apply func() (sync, opErr *apiError)) {
	s.record(method)
	project := r.PathValue("project")
	scope, loc := location(target)
	requestID := r.URL.Query().Get("requestId")
	if requestID != "" && (!uuidRE.MatchString(requestID) || requestID == "00000000-0000-0000-0000-000000000000") {
		writeError(w, badRequest("invalid", "Invalid value for field 'requestId': '%s'. The request ID must be a valid non-zero UUID.", requestID))
		return
	}
	s.mu.Lock()
	if opKey, ok := s.requests[requestID]; ok && requestID != "" {
		op := proto.Clone(s.ops[opKey].op).(*computepb.Operation)
		s.mu.Unlock()
		writeJSON(w, op)
		return
	}
	var syncErr, opErr *apiError
	if f, ok := s.failNext[method]; ok {
		delete(s.failNext, method)
		opErr = &f
	} else {
		syncErr, opErr = apply()
	}
	if syncErr != nil {
		s.mu.Unlock()
		writeError(w, syncErr)
		return
	}
	op := s.startOperation(project, scope, loc, method, target, requestID, opErr)
	s.mu.Unlock()
	if s.AfterMutation != nil {
		s.AfterMutation(method)
	}
	writeJSON(w, op)
}

// Delete removes a resource as if someone else had deleted it.
func (s *Server) Delete(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.res, key)
	delete(s.members, key)
}

// SetUnhealthy makes an instance fail its load-balancer health checks (its /readyz down).
func (s *Server) SetUnhealthy(instanceKey string, down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unhealthy[instanceKey] = down
}
