package gcpemu

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
)

// Metadata emulates the GCE metadata server (computeMetadata/v1) for one instance.
type Metadata struct {
	srv *httptest.Server

	mu     sync.Mutex
	values map[string]string
}

// MetadataInstance is what the emulated metadata server reports about "this" VM.
type MetadataInstance struct {
	ProjectID, ProjectNumber, Zone, Name string
	Network                              string // network name
	IP                                   string
	Tags                                 []string
	ServiceAccount                       string
}

// NewMetadata starts a metadata-server emulator describing in.
func NewMetadata(in MetadataInstance) *Metadata {
	tags := `[]`
	if len(in.Tags) > 0 {
		tags = `["` + strings.Join(in.Tags, `","`) + `"]`
	}
	m := &Metadata{values: map[string]string{
		"project/project-id":                      in.ProjectID,
		"project/numeric-project-id":              in.ProjectNumber,
		"instance/zone":                           "projects/" + in.ProjectNumber + "/zones/" + in.Zone,
		"instance/name":                           in.Name,
		"instance/hostname":                       in.Name + "." + in.Zone + ".c." + in.ProjectID + ".internal",
		"instance/tags":                           tags,
		"instance/network-interfaces/0/network":   "projects/" + in.ProjectNumber + "/networks/" + in.Network,
		"instance/network-interfaces/0/ip":        in.IP,
		"instance/service-accounts/default/email": in.ServiceAccount,
	}}
	if in.ServiceAccount == "" {
		delete(m.values, "instance/service-accounts/default/email")
	}
	m.srv = httptest.NewServer(http.HandlerFunc(m.serve))
	return m
}

// Host is the host:port to use as GCE_METADATA_HOST (or the provisioner's metadata host).
func (m *Metadata) Host() string { return strings.TrimPrefix(m.srv.URL, "http://") }

// Close stops the server.
func (m *Metadata) Close() { m.srv.Close() }

// Set overrides or adds one metadata value (path below computeMetadata/v1/).
func (m *Metadata) Set(path, value string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.values[path] = value
}

func (m *Metadata) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Metadata-Flavor", "Google")
	if r.Header.Get("Metadata-Flavor") != "Google" {
		http.Error(w, "Missing Metadata-Flavor:Google header", http.StatusForbidden)
		return
	}
	path, ok := strings.CutPrefix(r.URL.Path, "/computeMetadata/v1/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	m.mu.Lock()
	v, ok := m.values[strings.TrimSuffix(path, "/")]
	m.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/text")
	_, _ = w.Write([]byte(v))
}
