package awsemu

import (
	"net/http"
	"net/http/httptest"
	"strings"
)

// IMDS emulates the instance metadata service (IMDSv2 only: GETs need a session token).
type IMDS struct {
	InstanceID, Region, MAC, ENI, VPCID, SubnetID string
}

// Start serves the metadata on a loopback listener.
func (m *IMDS) Start() *httptest.Server { return httptest.NewServer(m) }

const imdsToken = "emu-imds-token"

// ServeHTTP answers token requests and the metadata paths the provisioner reads.
func (m *IMDS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/latest/api/token" {
		if r.Method != http.MethodPut || r.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds") == "" {
			http.Error(w, "", http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", r.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds"))
		_, _ = w.Write([]byte(imdsToken))
		return
	}
	if r.Header.Get("X-Aws-Ec2-Metadata-Token") != imdsToken {
		http.Error(w, "", http.StatusUnauthorized)
		return
	}
	p, ok := strings.CutPrefix(r.URL.Path, "/latest/meta-data/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	iface := "network/interfaces/macs/" + m.MAC + "/"
	values := map[string]string{
		"instance-id": m.InstanceID, "placement/region": m.Region, "mac": m.MAC,
		iface + "interface-id": m.ENI, iface + "vpc-id": m.VPCID, iface + "subnet-id": m.SubnetID,
	}
	v, ok := values[p]
	if !ok {
		http.NotFound(w, r)
		return
	}
	_, _ = w.Write([]byte(v))
}
