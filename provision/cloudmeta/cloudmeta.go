// Package cloudmeta reads the appliance's boot settings (METLO_* values) from the cloud it
// runs on: AWS user data and instance tags through IMDSv2, or GCE project and instance
// metadata attributes. It also tells which cloud that is.
package cloudmeta

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
)

// maxMetadataBytes bounds every metadata read: AWS user data is at most 16 KiB.
const maxMetadataBytes = 64 << 10

// Client reads METLO_* settings from the AWS IMDS (v2, session tokens) or the GCE metadata
// server, with short timeouts so a machine outside any cloud moves on quickly.
type Client struct {
	HTTP    *http.Client // with a short timeout
	IMDS    string       // AWS IMDS base URL, http://169.254.169.254
	GCPHost string       // GCE metadata host[:port], metadata.google.internal
}

// Detect probes both metadata services at once and names the first that answers: "aws", "gcp" or "none".
func (m *Client) Detect(ctx context.Context) string {
	found := make(chan string, 2)
	go func() {
		if _, err := m.awsToken(ctx); err == nil {
			found <- "aws"
			return
		}
		found <- ""
	}()
	go func() {
		// Every answer of the GCE metadata server carries this header, even a 404.
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.GCPHost+"/computeMetadata/v1/", nil)
		if err == nil {
			req.Header.Set("Metadata-Flavor", "Google")
			if resp, err := m.HTTP.Do(req); err == nil {
				resp.Body.Close()
				if resp.Header.Get("Metadata-Flavor") == "Google" {
					found <- "gcp"
					return
				}
			}
		}
		found <- ""
	}()
	for range 2 {
		if c := <-found; c != "" {
			return c
		}
	}
	return "none"
}

func (m *Client) awsToken(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, m.IMDS+"/latest/api/token", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "300")
	body, ok, err := m.get(req)
	if err == nil && !ok {
		err = errors.New("imds token: not found")
	}
	return body, err
}

// get performs req and returns the (bounded) body; a 404 is (“”, false, nil).
func (m *Client) get(req *http.Request) (string, bool, error) {
	resp, err := m.HTTP.Do(req)
	if err != nil {
		return "", false, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataBytes))
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return "", false, nil
	case resp.StatusCode != http.StatusOK:
		return "", false, fmt.Errorf("%s %s: %s", req.Method, req.URL.Path, resp.Status)
	case err != nil:
		return "", false, fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
	return string(b), true, nil
}

// AWSSettings reads METLO_* lines from user data, then instance tags (which win: they can
// be changed on a stopped instance without editing user data).
func (m *Client) AWSSettings(ctx context.Context, log *slog.Logger) (map[string]string, error) {
	token, err := m.awsToken(ctx)
	if err != nil {
		return nil, err
	}
	get := func(path string) (string, bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.IMDS+path, nil)
		if err != nil {
			return "", false, err
		}
		req.Header.Set("X-Aws-Ec2-Metadata-Token", token)
		return m.get(req)
	}
	userData, _, err := get("/latest/user-data")
	if err != nil {
		return nil, err
	}
	out := ParseSettings(userData)
	list, ok, err := get("/latest/meta-data/tags/instance")
	if err != nil {
		return nil, err
	}
	if !ok {
		log.Info("instance tags not readable from IMDS (launch with --metadata-options InstanceMetadataTags=enabled to use tags)")
	}
	for _, key := range strings.Fields(list) {
		if !strings.HasPrefix(key, "METLO_") {
			continue
		}
		v, ok, err := get("/latest/meta-data/tags/instance/" + key)
		if err != nil {
			return nil, err
		}
		if ok {
			out[key] = v
		}
	}
	return out, nil
}

// GCPSettings reads METLO_* project attributes, then instance attributes (which win).
func (m *Client) GCPSettings(ctx context.Context) (map[string]string, error) {
	get := func(path string) (string, bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.GCPHost+"/computeMetadata/v1/"+path, nil)
		if err != nil {
			return "", false, err
		}
		req.Header.Set("Metadata-Flavor", "Google")
		return m.get(req)
	}
	out := map[string]string{}
	for _, scope := range []string{"project/attributes/", "instance/attributes/"} {
		list, _, err := get(scope)
		if err != nil {
			return nil, err
		}
		for _, key := range strings.Fields(list) {
			if !strings.HasPrefix(key, "METLO_") {
				continue
			}
			v, ok, err := get(scope + key)
			if err != nil {
				return nil, err
			}
			if ok {
				out[key] = v
			}
		}
	}
	return out, nil
}

// ParseSettings picks METLO_KEY=VALUE lines out of user data; `export` and quotes are
// allowed so a shell-script user data works too, and every other line is ignored.
func ParseSettings(text string) map[string]string {
	out := map[string]string{}
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "export "))
		k, v, ok := strings.Cut(line, "=")
		if !ok || !strings.HasPrefix(k, "METLO_") || strings.ContainsAny(k, " \t") {
			continue
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		out[k] = v
	}
	return out
}
