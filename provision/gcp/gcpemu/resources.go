package gcpemu

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Packet Mirroring limits per policy (Compute Engine quotas documented for the API).
const (
	maxMirroredInstances = 50
	maxMirroredSubnets   = 5
)

// collection describes one managed resource type: where it lives, its API method prefix and
// the rules it enforces.
type collection struct {
	scope    string // "zones", "regions" or "global"
	name     string // URL collection, e.g. "packetMirrorings"
	method   string // method prefix, e.g. "compute.packetMirrorings"
	newMsg   func() proto.Message
	validate func(s *Server, project, key string, m proto.Message) *apiError
	patch    bool
	// after runs once an insert or patch is stored (side effects such as a managed group's
	// instances); beforeDelete may refuse a delete or clean up what the resource owns.
	after        func(s *Server, project, key string, m proto.Message)
	beforeDelete func(s *Server, key string) *apiError
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	const p = "/compute/v1/projects/{project}/"
	ops := map[string]string{"zones/{loc}/": "compute.zoneOperations.get", "regions/{loc}/": "compute.regionOperations.get", "global/": "compute.globalOperations.get"}
	for prefix, method := range ops {
		mux.HandleFunc("GET "+p+prefix+"operations/{name}", func(w http.ResponseWriter, r *http.Request) {
			s.pollOperation(w, r, method, strings.TrimPrefix(r.URL.Path, "/compute/v1/"))
		})
	}
	s.readOnly(mux, "zones", "instances", "compute.instances")
	s.readOnly(mux, "regions", "subnetworks", "compute.subnetworks")
	s.readOnly(mux, "global", "networks", "compute.networks")
	mux.HandleFunc("GET "+p+"aggregated/instances", s.aggregatedInstances)
	mux.HandleFunc("POST "+p+"zones/{loc}/instanceGroups/{name}/addInstances", s.addInstances)
	mux.HandleFunc("POST "+p+"zones/{loc}/instanceGroups/{name}/listInstances", s.listInstances)
	mux.HandleFunc("POST "+p+"regions/{loc}/backendServices/{name}/getHealth", s.getHealth)
	mux.HandleFunc("PATCH "+p+"regions/{loc}/autoscalers", s.patchAutoscaler)
	s.readOnly(mux, "regions", "instanceGroups", "compute.regionInstanceGroups")
	for _, c := range []collection{
		{scope: "zones", name: "instanceGroups", method: "compute.instanceGroups", newMsg: func() proto.Message { return &computepb.InstanceGroup{} }, validate: validateInstanceGroup},
		{scope: "regions", name: "healthChecks", method: "compute.regionHealthChecks", newMsg: func() proto.Message { return &computepb.HealthCheck{} }, validate: validateHealthCheck, patch: true},
		{scope: "regions", name: "backendServices", method: "compute.regionBackendServices", newMsg: func() proto.Message { return &computepb.BackendService{} }, validate: validateBackendService, patch: true},
		{scope: "global", name: "instanceTemplates", method: "compute.instanceTemplates", newMsg: func() proto.Message { return &computepb.InstanceTemplate{} }, validate: validateInstanceTemplate},
		{scope: "regions", name: "instanceGroupManagers", method: "compute.regionInstanceGroupManagers", newMsg: func() proto.Message { return &computepb.InstanceGroupManager{} },
			validate: validateMIG, patch: true, after: (*Server).scaleMIG, beforeDelete: (*Server).deleteMIG},
		{scope: "regions", name: "autoscalers", method: "compute.regionAutoscalers", newMsg: func() proto.Message { return &computepb.Autoscaler{} },
			validate: validateAutoscaler, after: (*Server).applyAutoscaler},
		{scope: "regions", name: "forwardingRules", method: "compute.forwardingRules", newMsg: func() proto.Message { return &computepb.ForwardingRule{} }, validate: validateForwardingRule},
		{scope: "global", name: "firewalls", method: "compute.firewalls", newMsg: func() proto.Message { return &computepb.Firewall{} }, validate: validateFirewall, patch: true},
		{scope: "regions", name: "packetMirrorings", method: "compute.packetMirrorings", newMsg: func() proto.Message { return &computepb.PacketMirroring{} }, validate: validatePacketMirroring, patch: true},
	} {
		s.managed(mux, c)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{404, "notFound", fmt.Sprintf("emulator: no route for %s %s", r.Method, r.URL.Path)})
	})
	return mux
}

func scopePath(scope string) string {
	if scope == "global" {
		return "global/"
	}
	return scope + "/{loc}/"
}

// itemKey is the relative path of the item a request names.
func itemKey(r *http.Request, scope, coll string) string {
	if scope == "global" {
		return fmt.Sprintf("projects/%s/global/%s/%s", r.PathValue("project"), coll, r.PathValue("name"))
	}
	return fmt.Sprintf("projects/%s/%s/%s/%s/%s", r.PathValue("project"), scope, r.PathValue("loc"), coll, r.PathValue("name"))
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, method, key string) {
	s.record(method)
	if m := s.Get(key); m != nil {
		writeJSON(w, m)
		return
	}
	writeError(w, notFound(key))
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, method, prefix string) {
	s.record(method)
	s.mu.Lock()
	var keys []string
	for k := range s.res {
		if strings.HasPrefix(k, prefix) && strings.Count(k[len(prefix):], "/") == 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	from, to, next, perr := s.pageOf(r, len(keys))
	if perr != nil {
		s.mu.Unlock()
		writeError(w, perr)
		return
	}
	items := make([]proto.Message, 0, len(keys))
	for _, k := range keys[from:to] {
		items = append(items, proto.Clone(s.res[k]))
	}
	s.mu.Unlock()
	writeList(w, "compute#list", items, next)
}

func listPrefix(r *http.Request, scope, coll string) string {
	if scope == "global" {
		return fmt.Sprintf("projects/%s/global/%s/", r.PathValue("project"), coll)
	}
	return fmt.Sprintf("projects/%s/%s/%s/%s/", r.PathValue("project"), scope, r.PathValue("loc"), coll)
}

func (s *Server) readOnly(mux *http.ServeMux, scope, coll, method string) {
	base := "/compute/v1/projects/{project}/" + scopePath(scope) + coll
	mux.HandleFunc("GET "+base+"/{name}", func(w http.ResponseWriter, r *http.Request) {
		s.get(w, r, method+".get", itemKey(r, scope, coll))
	})
	mux.HandleFunc("GET "+base, func(w http.ResponseWriter, r *http.Request) {
		s.list(w, r, method+".list", listPrefix(r, scope, coll))
	})
}

func (s *Server) managed(mux *http.ServeMux, c collection) {
	base := "/compute/v1/projects/{project}/" + scopePath(c.scope) + c.name
	mux.HandleFunc("GET "+base+"/{name}", func(w http.ResponseWriter, r *http.Request) {
		s.get(w, r, c.method+".get", itemKey(r, c.scope, c.name))
	})
	mux.HandleFunc("GET "+base, func(w http.ResponseWriter, r *http.Request) {
		s.list(w, r, c.method+".list", listPrefix(r, c.scope, c.name))
	})
	mux.HandleFunc("POST "+base, func(w http.ResponseWriter, r *http.Request) {
		m := c.newMsg()
		if err := readBody(r, m); err != nil {
			s.record(c.method + ".insert")
			writeError(w, err)
			return
		}
		name := m.ProtoReflect().Get(m.ProtoReflect().Descriptor().Fields().ByName("name")).String()
		r.SetPathValue("name", name)
		key := itemKey(r, c.scope, c.name)
		s.mutate(w, r, c.method+".insert", key, func() (*apiError, *apiError) {
			if !nameRE.MatchString(name) {
				return badRequest("invalid", "Invalid value for field 'resource.name': '%s'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'", name), nil
			}
			if _, ok := s.res[key]; ok {
				return &apiError{409, "alreadyExists", fmt.Sprintf("The resource '%s' already exists", key)}, nil
			}
			if err := c.validate(s, r.PathValue("project"), key, m); err != nil {
				return err, nil
			}
			s.stamp(key, m)
			s.res[key] = m
			if c.after != nil {
				c.after(s, r.PathValue("project"), key, m)
			}
			return nil, nil
		})
	})
	mux.HandleFunc("DELETE "+base+"/{name}", func(w http.ResponseWriter, r *http.Request) {
		key := itemKey(r, c.scope, c.name)
		s.mutate(w, r, c.method+".delete", key, func() (*apiError, *apiError) {
			if _, ok := s.res[key]; !ok {
				return notFound(key), nil
			}
			if user := s.userOf(key); user != "" {
				return nil, badRequest("resourceInUseByAnotherResource", "The %s resource '%s' is already being used by '%s'", strings.TrimSuffix(c.name, "s"), key, user)
			}
			if c.beforeDelete != nil {
				if err := c.beforeDelete(s, key); err != nil {
					return nil, err
				}
			}
			delete(s.res, key)
			delete(s.members, key)
			return nil, nil
		})
	})
	if !c.patch {
		return
	}
	mux.HandleFunc("PATCH "+base+"/{name}", func(w http.ResponseWriter, r *http.Request) {
		key := itemKey(r, c.scope, c.name)
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			s.record(c.method + ".patch")
			writeError(w, badRequest("parseError", "read body: %v", err))
			return
		}
		s.mutate(w, r, c.method+".patch", key, func() (*apiError, *apiError) {
			cur, ok := s.res[key]
			if !ok {
				return notFound(key), nil
			}
			next, perr := mergePatch(cur, body, c.newMsg())
			if perr != nil {
				return perr, nil
			}
			if n := next.ProtoReflect().Get(next.ProtoReflect().Descriptor().Fields().ByName("name")).String(); n != r.PathValue("name") {
				return badRequest("invalid", "the name of a resource cannot be changed (%q → %q)", r.PathValue("name"), n), nil
			}
			if err := c.validate(s, r.PathValue("project"), key, next); err != nil {
				return err, nil
			}
			s.res[key] = next
			if c.after != nil {
				c.after(s, r.PathValue("project"), key, next)
			}
			return nil, nil
		})
	})
}

// mergePatch applies an RFC 7386 JSON merge patch (the semantics of the Compute PATCH
// methods): objects merge field by field, arrays and scalars replace, absent fields stay.
func mergePatch(cur proto.Message, patch []byte, into proto.Message) (proto.Message, *apiError) {
	curJSON, err := protojson.Marshal(cur)
	if err != nil {
		return nil, &apiError{500, "internal", err.Error()}
	}
	var doc, p map[string]any
	if err := json.Unmarshal(curJSON, &doc); err != nil {
		return nil, &apiError{500, "internal", err.Error()}
	}
	if err := json.Unmarshal(patch, &p); err != nil {
		return nil, badRequest("parseError", "Invalid JSON payload received. %v", err)
	}
	merged, _ := json.Marshal(mergeJSON(doc, p))
	if err := protojson.Unmarshal(merged, into); err != nil {
		return nil, badRequest("parseError", "Invalid JSON payload received. %v", err)
	}
	return into, nil
}

func mergeJSON(doc, patch map[string]any) map[string]any {
	for k, v := range patch {
		switch pv := v.(type) {
		case nil:
			delete(doc, k)
		case map[string]any:
			dv, _ := doc[k].(map[string]any)
			if dv == nil {
				dv = map[string]any{}
			}
			doc[k] = mergeJSON(dv, pv)
		default:
			doc[k] = v
		}
	}
	return doc
}

// refsOf lists the resources (relative paths) a resource depends on.
func refsOf(project string, m proto.Message) []string {
	var out []string
	switch v := m.(type) {
	case *computepb.BackendService:
		for _, hc := range v.GetHealthChecks() {
			out = append(out, rel(project, hc))
		}
		for _, b := range v.GetBackends() {
			out = append(out, rel(project, b.GetGroup()))
		}
	case *computepb.ForwardingRule:
		if v.BackendService != nil {
			out = append(out, rel(project, v.GetBackendService()))
		}
	case *computepb.PacketMirroring:
		if v.GetCollectorIlb().GetUrl() != "" {
			out = append(out, rel(project, v.GetCollectorIlb().GetUrl()))
		}
	case *computepb.InstanceGroupManager:
		out = append(out, rel(project, v.GetInstanceTemplate()))
		for _, p := range v.GetAutoHealingPolicies() {
			out = append(out, rel(project, p.GetHealthCheck()))
		}
	case *computepb.Autoscaler:
		out = append(out, rel(project, v.GetTarget()))
	}
	return out
}

// userOf returns a resource that references key, or "".
func (s *Server) userOf(key string) string {
	project := strings.Split(key, "/")[1]
	users := make([]string, 0)
	for k, m := range s.res {
		for _, ref := range refsOf(project, m) {
			if ref == key {
				users = append(users, k)
			}
		}
	}
	sort.Strings(users)
	if len(users) == 0 {
		return ""
	}
	return users[0]
}

func (s *Server) aggregatedInstances(w http.ResponseWriter, r *http.Request) {
	s.record("compute.instances.aggregatedList")
	prefix := "projects/" + r.PathValue("project") + "/zones/"
	out := &computepb.InstanceAggregatedList{Items: map[string]*computepb.InstancesScopedList{}}
	s.mu.Lock()
	var keys []string
	for k := range s.res {
		if strings.HasPrefix(k, prefix) && collectionOf(k) == "instances" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	from, to, next, perr := s.pageOf(r, len(keys))
	if perr != nil {
		s.mu.Unlock()
		writeError(w, perr)
		return
	}
	for _, k := range keys[from:to] {
		_, zone := location(k)
		scoped := out.Items["zones/"+zone]
		if scoped == nil {
			scoped = &computepb.InstancesScopedList{}
			out.Items["zones/"+zone] = scoped
		}
		scoped.Instances = append(scoped.Instances, proto.Clone(s.res[k]).(*computepb.Instance))
	}
	s.mu.Unlock()
	if next != "" {
		out.NextPageToken = proto.String(next)
	}
	writeJSON(w, out)
}

func (s *Server) addInstances(w http.ResponseWriter, r *http.Request) {
	key := itemKey(r, "zones", "instanceGroups")
	req := &computepb.InstanceGroupsAddInstancesRequest{}
	if err := readBody(r, req); err != nil {
		s.record("compute.instanceGroups.addInstances")
		writeError(w, err)
		return
	}
	project := r.PathValue("project")
	s.mutate(w, r, "compute.instanceGroups.addInstances", key, func() (*apiError, *apiError) {
		g, ok := s.res[key].(*computepb.InstanceGroup)
		if !ok {
			return notFound(key), nil
		}
		var add []string
		for _, ref := range req.GetInstances() {
			ik := rel(project, ref.GetInstance())
			inst, ok := s.res[ik].(*computepb.Instance)
			if !ok {
				return notFound(ik), nil
			}
			if _, zone := location(ik); zone != r.PathValue("loc") {
				return badRequest("invalid", "instance %s is not in the instance group's zone %s", ik, r.PathValue("loc")), nil
			}
			if rel(project, inst.GetNetworkInterfaces()[0].GetNetwork()) != rel(project, g.GetNetwork()) {
				return badRequest("invalid", "instance %s is not in the instance group's network %s", ik, g.GetNetwork()), nil
			}
			for _, m := range s.members[key] {
				if m == ik {
					return nil, badRequest("memberAlreadyExists", "The resource '%s' is already a member of '%s'", ik, key)
				}
			}
			add = append(add, ik)
		}
		s.members[key] = append(s.members[key], add...)
		g.Size = proto.Int32(int32(len(s.members[key])))
		return nil, nil
	})
}

func (s *Server) listInstances(w http.ResponseWriter, r *http.Request) {
	s.record("compute.instanceGroups.listInstances")
	key := itemKey(r, "zones", "instanceGroups")
	s.mu.Lock()
	_, ok := s.res[key]
	members := append([]string(nil), s.members[key]...)
	s.mu.Unlock()
	if !ok {
		writeError(w, notFound(key))
		return
	}
	out := &computepb.InstanceGroupsListInstances{}
	from, to, next, perr := s.pageOf(r, len(members))
	if perr != nil {
		writeError(w, perr)
		return
	}
	for _, m := range members[from:to] {
		out.Items = append(out.Items, &computepb.InstanceWithNamedPorts{Instance: proto.String(linkBase + m), Status: proto.String("RUNNING")})
	}
	if next != "" {
		out.NextPageToken = proto.String(next)
	}
	writeJSON(w, out)
}

// ---- validation rules -------------------------------------------------------------------
