package gcp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"cloud.google.com/go/compute/apiv1/computepb"

	"github.com/metlo-labs/metlo-appliance/provision"
)

// env is where the appliance lives and what its resources are called, after discovery and
// overrides. All references are project-relative paths ("projects/p/regions/r/…").
type env struct {
	project, region, zone string
	instance              string // relative path of this appliance; "" when a group is given instead
	network               string
	subnetwork            string
	serviceAccount        string
	tags                  []string
	id                    string
	group                 string // collector instance group path
	ownGroup              bool   // the group is ours to create and delete
	fleet                 bool   // the group is a regional managed instance group of collectors
}

// resolve fills env from flags first, then the metadata server, then the instance itself.
func (p *Provider) resolve(ctx context.Context, opts provision.Options) (*env, error) {
	c := p.cfg
	e := &env{project: c.Project, zone: c.Zone, region: opts.Region}
	instName := c.Instance
	var err error
	mdCtx, cancel := context.WithTimeout(ctx, p.cfg.MetadataTimeout)
	defer cancel()
	md := func(what, path string) string {
		if err != nil {
			return ""
		}
		v, gerr := p.meta.GetWithContext(mdCtx, path)
		if gerr != nil {
			why := gerr.Error()
			if mdCtx.Err() != nil {
				why = fmt.Sprintf("no answer within %s", p.cfg.MetadataTimeout)
			} else if p.cfg.MetadataHost != "" {
				// The library names its default host even when the request went elsewhere.
				why = strings.ReplaceAll(why, "169.254.169.254", p.cfg.MetadataHost)
			}
			err = fmt.Errorf("discover %s from the metadata server at %s (not on GCE? pass --gcp-%s): %s", what, p.metadataHost(), what, why)
		}
		return strings.TrimSpace(v)
	}
	if e.project == "" {
		e.project = md("project", "project/project-id")
	}
	needInstance := c.InstanceGroup == "" && !(c.Fleet.Size > 0 && c.Network != "" && c.Subnetwork != "")
	if e.zone == "" && (needInstance || !strings.Contains(c.InstanceGroup, "/")) {
		e.zone = lastSegment(md("zone", "instance/zone"))
	}
	if instName == "" && needInstance {
		instName = md("instance", "instance/name")
	}
	if err != nil {
		return nil, err
	}
	if e.region == "" && e.zone != "" {
		e.region = regionOf(e.zone)
	}
	if e.region == "" {
		return nil, fmt.Errorf("region unknown: pass --region or --gcp-zone")
	}
	if e.zone != "" && regionOf(e.zone) != e.region {
		return nil, fmt.Errorf("region %s: this appliance is in zone %s (region %s); the collector and the policy must share the appliance's region, or pass --gcp-instance-group in %s", e.region, e.zone, regionOf(e.zone), e.region)
	}
	if instName != "" {
		e.instance = fmt.Sprintf("projects/%s/zones/%s/instances/%s", e.project, e.zone, instName)
		inst, gerr := p.api.instances.Get(ctx, &computepb.GetInstanceRequest{Project: e.project, Zone: e.zone, Instance: instName})
		if gerr != nil {
			return nil, fmt.Errorf("look up this appliance %s: %w", e.instance, gerr)
		}
		if nics := inst.GetNetworkInterfaces(); len(nics) > 0 {
			e.network = relPath(e.project, nics[0].GetNetwork())
			e.subnetwork = relPath(e.project, nics[0].GetSubnetwork())
		}
		if sas := inst.GetServiceAccounts(); len(sas) > 0 {
			e.serviceAccount = sas[0].GetEmail()
		}
		e.tags = inst.GetTags().GetItems()
	}
	if c.Network != "" {
		e.network = ref(e.project, "global", "networks", c.Network)
	}
	if c.Subnetwork != "" {
		e.subnetwork = ref(e.project, "regions/"+e.region, "subnetworks", c.Subnetwork)
	}
	if e.network == "" {
		return nil, fmt.Errorf("network unknown: pass --gcp-network")
	}
	if e.subnetwork == "" {
		return nil, fmt.Errorf("subnetwork unknown: pass --gcp-subnetwork")
	}
	e.id = c.ID
	if e.id == "" {
		e.id = instName
	}
	if e.id == "" {
		return nil, fmt.Errorf("appliance id unknown: pass --gcp-id")
	}
	e.id = sanitizeID(e.id)
	if c.InstanceGroup != "" {
		if strings.Contains(c.InstanceGroup, "/") {
			e.group = relPath(e.project, c.InstanceGroup)
		} else {
			if e.zone == "" {
				return nil, fmt.Errorf("instance group %q: give it as zones/ZONE/instanceGroups/NAME or pass --gcp-zone", c.InstanceGroup)
			}
			e.group = fmt.Sprintf("projects/%s/zones/%s/instanceGroups/%s", e.project, e.zone, c.InstanceGroup)
		}
		if regionOf(segment(e.group, "zones")) != e.region {
			return nil, fmt.Errorf("instance group %s is not in region %s", e.group, e.region)
		}
	} else {
		e.group = fmt.Sprintf("projects/%s/zones/%s/instanceGroups/%s", e.project, e.zone, e.name("ig"))
		e.ownGroup = true
		fleet := c.Fleet.Size > 0
		if !fleet {
			// A fleet made earlier stays the collector for list, cleanup and doctor.
			mig, err := p.api.migs.Get(ctx, &computepb.GetRegionInstanceGroupManagerRequest{Project: e.project, Region: e.region, InstanceGroupManager: e.name("mig")})
			switch {
			case err == nil:
				fleet = e.ours(mig.GetDescription())
			case !isNotFound(err):
				return nil, fmt.Errorf("look up the collector fleet %s: %w", e.name("mig"), err)
			}
		}
		if fleet {
			e.fleet, e.ownGroup = true, false
			e.group = e.regional("instanceGroups", e.name("mig"))
		}
	}
	return e, nil
}

// metadataHost is the metadata server in use, for messages.
func (p *Provider) metadataHost() string {
	if p.cfg.MetadataHost != "" {
		return p.cfg.MetadataHost
	}
	if h := os.Getenv("GCE_METADATA_HOST"); h != "" {
		return h
	}
	return "169.254.169.254"
}

// name is the name of one of this appliance's resources.
func (e *env) name(suffix string) string { return "metlo-appliance-" + e.id + "-" + suffix }

// marker is the description text that marks a resource as this appliance's.
func (e *env) marker() string { return "[metlo-appliance-id=" + e.id + "]" }

func (e *env) description(what string) string {
	return "metlo-appliance " + what + ", managed by `metlo-appliance provision` " + e.marker()
}

func (e *env) ours(description string) bool { return strings.Contains(description, e.marker()) }

// regional returns the relative path of a regional resource.
func (e *env) regional(coll, name string) string {
	return fmt.Sprintf("projects/%s/regions/%s/%s/%s", e.project, e.region, coll, name)
}

// firewallTarget chooses what the firewall rules apply to: a dedicated network tag, else the
// appliance's own service account — never the shared default compute account, which would
// open every VM using it.
func (p *Provider) firewallTarget(e *env) (tags, serviceAccounts []string, err error) {
	if p.cfg.TargetTag != "" {
		return []string{p.cfg.TargetTag}, nil, nil
	}
	if e.serviceAccount != "" && !strings.HasSuffix(e.serviceAccount, "-compute@developer.gserviceaccount.com") {
		return nil, []string{e.serviceAccount}, nil
	}
	for _, t := range e.tags {
		if t == "metlo-appliance" {
			return []string{t}, nil, nil
		}
	}
	return nil, nil, fmt.Errorf("firewall target: this appliance has no dedicated service account or \"metlo-appliance\" network tag; pass --gcp-target-tag with a tag only appliances carry")
}

// sanitizeID turns an instance name into a name fragment short enough for every suffix.
func sanitizeID(s string) string {
	s = strings.ToLower(s)
	var b strings.Builder
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	id := strings.Trim(b.String(), "-")
	// "metlo-appliance-" (16) + id + "-fw-mirror6" (11) must fit in 63.
	const maxID = 63 - 16 - 11
	if len(id) > maxID {
		sum := sha256.Sum256([]byte(id))
		id = strings.TrimRight(id[:maxID-7], "-") + "-" + hex.EncodeToString(sum[:3])
	}
	return id
}

// regionOf turns a zone (us-central1-a) into its region (us-central1).
func regionOf(zone string) string {
	if i := strings.LastIndex(zone, "-"); i > 0 {
		return zone[:i]
	}
	return zone
}

func lastSegment(s string) string { return s[strings.LastIndex(s, "/")+1:] }

// segment returns the path element after key ("zones" → "us-central1-a").
func segment(path, key string) string {
	parts := strings.Split(path, "/")
	for i := 0; i+1 < len(parts); i++ {
		if parts[i] == key {
			return parts[i+1]
		}
	}
	return ""
}

// relPath reduces a full URL or partial reference to "projects/p/…".
func relPath(project, s string) string {
	if i := strings.Index(s, "/compute/v1/"); i >= 0 {
		s = s[i+len("/compute/v1/"):]
	}
	s = strings.TrimPrefix(s, "/")
	if s != "" && !strings.HasPrefix(s, "projects/") {
		s = "projects/" + project + "/" + s
	}
	return s
}

// ref builds the path of a name in scope, or normalises a reference that already is a path.
func ref(project, scope, coll, nameOrPath string) string {
	if strings.Contains(nameOrPath, "/") {
		return relPath(project, nameOrPath)
	}
	return fmt.Sprintf("projects/%s/%s/%s/%s", project, scope, coll, nameOrPath)
}

// short drops the "projects/p/" prefix for display.
func short(path string) string {
	parts := strings.SplitN(path, "/", 3)
	if len(parts) == 3 && parts[0] == "projects" {
		return parts[2]
	}
	return path
}

// requestID derives a stable, valid UUID from what a request does, so a retried or re-run
// insert is recognised by the API instead of repeated.
func requestID(parts ...any) *string {
	b, _ := json.Marshal(parts)
	sum := sha256.Sum256(b)
	sum[6] = sum[6]&0x0f | 0x50
	sum[8] = sum[8]&0x3f | 0x80
	h := hex.EncodeToString(sum[:16])
	s := h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
	return &s
}
