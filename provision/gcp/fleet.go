package gcp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/iterator"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/metlo-labs/metlo-appliance/provision"
)

// FleetConfig describes a regional managed instance group of collectors behind the
// collector load balancer: autohealing on the /readyz health check and an autoscaler on CPU.
type FleetConfig struct {
	Size           int      // members when the group is created; 0 = no fleet
	Min, Max       int      // autoscaler bounds; 0 = Size and 2×Size
	MachineType    string   // "" = e2-standard-4
	Image          string   // boot image (URL or projects/P/global/images/NAME or …/family/F); required
	ServiceAccount string   // "" = this appliance's
	Settings       []string // METLO_KEY=VALUE metadata of the members (values never printed)
	CPUTarget      float64  // percent; 0 = 60
	Delete         bool     // cleanup: delete the group and its members too
}

func (f FleetConfig) withDefaults(e *env) (FleetConfig, error) {
	if f.Min == 0 {
		f.Min = f.Size
	}
	if f.Max == 0 {
		f.Max = max(2*f.Size, f.Min)
	}
	if f.CPUTarget == 0 {
		f.CPUTarget = 60
	}
	if f.MachineType == "" {
		f.MachineType = "e2-standard-4"
	}
	if f.ServiceAccount == "" {
		f.ServiceAccount = e.serviceAccount
	}
	switch {
	case f.Image == "":
		return f, fmt.Errorf("a collector fleet needs --gcp-fleet-image (the appliance image, e.g. projects/P/global/images/family/metlo-appliance)")
	case f.Min > f.Size || f.Size > f.Max:
		return f, fmt.Errorf("fleet size %d must be between --gcp-fleet-min %d and --gcp-fleet-max %d", f.Size, f.Min, f.Max)
	case f.CPUTarget <= 0 || f.CPUTarget > 100:
		return f, fmt.Errorf("--gcp-fleet-cpu-target %v: want 1-100", f.CPUTarget)
	}
	for _, s := range f.Settings {
		k, _, ok := strings.Cut(s, "=")
		if !ok || !strings.HasPrefix(k, "METLO_") {
			return f, fmt.Errorf("--gcp-fleet-setting %q: want METLO_KEY=VALUE", k)
		}
		if k == "METLO_SOURCES" || k == "METLO_SOURCE" {
			return f, fmt.Errorf("--gcp-fleet-setting: members must not provision (the fleet's mirroring is set up here): drop %s", k)
		}
	}
	return f, nil
}

// template is the members' instance template; its name carries a hash of its properties
// because templates cannot change: a new configuration is a new template.
func (p *Provider) template(e *env, f FleetConfig) *computepb.InstanceTemplate {
	image := f.Image
	if !strings.Contains(image, "/") {
		image = "projects/" + e.project + "/global/images/" + image
	}
	meta := &computepb.Metadata{}
	settings := append([]string(nil), f.Settings...)
	sort.Strings(settings)
	for _, s := range settings {
		k, v, _ := strings.Cut(s, "=")
		meta.Items = append(meta.Items, &computepb.Items{Key: proto.String(k), Value: proto.String(v)})
	}
	props := &computepb.InstanceProperties{
		MachineType: proto.String(f.MachineType),
		Disks: []*computepb.AttachedDisk{{Boot: proto.Bool(true), AutoDelete: proto.Bool(true),
			InitializeParams: &computepb.AttachedDiskInitializeParams{SourceImage: proto.String(image)}}},
		NetworkInterfaces: []*computepb.NetworkInterface{{Network: proto.String(e.network), Subnetwork: proto.String(e.subnetwork)}},
		Metadata:          meta,
		Tags:              &computepb.Tags{Items: []string{"metlo-appliance"}},
		// Members are labelled with their fleet, so billing and inventory can find them.
		Labels: map[string]string{"metlo-appliance-fleet": e.id},
	}
	if f.ServiceAccount != "" {
		props.ServiceAccounts = []*computepb.ServiceAccount{{Email: proto.String(f.ServiceAccount), Scopes: []string{"https://www.googleapis.com/auth/cloud-platform"}}}
	}
	b, _ := protojson.Marshal(props)
	sum := sha256.Sum256(b)
	return &computepb.InstanceTemplate{Name: proto.String(e.name("it-" + hex.EncodeToString(sum[:3]))),
		Description: proto.String(e.description("collector fleet instance template")), Properties: props}
}

// ourTemplates lists this fleet's instance templates by name.
func (p *Provider) ourTemplates(ctx context.Context, e *env) ([]string, error) {
	var out []string
	it := p.api.templates.List(ctx, &computepb.ListInstanceTemplatesRequest{Project: e.project})
	for {
		t, err := it.Next()
		if err == iterator.Done {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list instance templates: %w", err)
		}
		if strings.HasPrefix(t.GetName(), e.name("it-")) && e.ours(t.GetDescription()) {
			out = append(out, t.GetName())
		}
	}
}

// planFleet plans the template, the regional managed instance group (autohealing on the
// collector health check) and its autoscaler; obsolete templates are deleted at the end.
func (p *Provider) planFleet(ctx context.Context, e *env, prices provision.Prices, est *provision.Estimate) (before, after []provision.Step, err error) {
	f, err := p.cfg.Fleet.withDefaults(e)
	if err != nil {
		return nil, nil, err
	}
	tmpl := p.template(e, f)
	tname := tmpl.GetName()
	turl := "projects/" + e.project + "/global/instanceTemplates/" + tname
	existing, err := p.ourTemplates(ctx, e)
	if err != nil {
		return nil, nil, err
	}
	detail := fmt.Sprintf("%s, %s, %d settings", f.MachineType, lastSegment(f.Image), len(f.Settings))
	if contains(existing, tname) {
		before = append(before, keep("instance template", tname, detail))
	} else {
		before = append(before, provision.Step{Sym: "+", Verb: "create", Kind: "instance template", Name: tname, Detail: detail,
			Run: func(ctx context.Context, out io.Writer) error {
				return p.insert(ctx, out, "create instance template "+tname, requestID("insert", turl, tmpl),
					func(rid *string) (*compute.Operation, error) {
						return p.api.templates.Insert(ctx, &computepb.InsertInstanceTemplateRequest{Project: e.project, InstanceTemplateResource: tmpl, RequestId: rid})
					},
					func(ctx context.Context) error {
						t, err := p.api.templates.Get(ctx, &computepb.GetInstanceTemplateRequest{Project: e.project, InstanceTemplate: tname})
						return present(ownedOrMissing(e, "instance template", tname, t.GetDescription(), err))
					})
			}})
	}
	for _, old := range existing {
		if old == tname {
			continue
		}
		name := old
		after = append(after, provision.Step{Sym: "-", Verb: "delete", Kind: "instance template", Name: name, Detail: "replaced by " + tname,
			Run: func(ctx context.Context, out io.Writer) error {
				return p.remove(ctx, out, "delete instance template "+name, func() (*compute.Operation, error) {
					return p.api.templates.Delete(ctx, &computepb.DeleteInstanceTemplateRequest{Project: e.project, InstanceTemplate: name, RequestId: randomID()})
				})
			}})
	}
	migName := e.name("mig")
	hc := e.regional("healthChecks", e.name("hc"))
	heal := []*computepb.InstanceGroupManagerAutoHealingPolicy{{HealthCheck: proto.String(hc), InitialDelaySec: proto.Int32(300)}}
	mig, err := p.api.migs.Get(ctx, &computepb.GetRegionInstanceGroupManagerRequest{Project: e.project, Region: e.region, InstanceGroupManager: migName})
	exists, err := ownedOrMissing(e, "managed instance group", migName, mig.GetDescription(), err)
	if err != nil {
		return nil, nil, err
	}
	if !exists {
		est.Add(prices, fmt.Sprintf("%d collectors (%s)", f.Size, f.MachineType), float64(f.Size*provision.HoursPerMonth), "gcp-instance-hour")
		want := &computepb.InstanceGroupManager{Name: proto.String(migName), Description: proto.String(e.description("collector fleet")),
			BaseInstanceName: proto.String(e.id), InstanceTemplate: proto.String(turl), TargetSize: proto.Int32(int32(f.Size)), AutoHealingPolicies: heal}
		before = append(before, provision.Step{Sym: "+", Verb: "create", Kind: "managed instance group", Name: migName,
			Detail: fmt.Sprintf("regional, %d collectors, autohealing on %s (/readyz)", f.Size, e.name("hc")),
			Run: func(ctx context.Context, out io.Writer) error {
				return p.insert(ctx, out, "create managed instance group "+migName, requestID("insert", e.regional("instanceGroupManagers", migName), want),
					func(rid *string) (*compute.Operation, error) {
						return p.api.migs.Insert(ctx, &computepb.InsertRegionInstanceGroupManagerRequest{Project: e.project, Region: e.region, InstanceGroupManagerResource: want, RequestId: rid})
					},
					func(ctx context.Context) error {
						g, err := p.api.migs.Get(ctx, &computepb.GetRegionInstanceGroupManagerRequest{Project: e.project, Region: e.region, InstanceGroupManager: migName})
						return present(ownedOrMissing(e, "managed instance group", migName, g.GetDescription(), err))
					})
			}})
	} else {
		var changes []string
		patch := &computepb.InstanceGroupManager{}
		if relPath(e.project, mig.GetInstanceTemplate()) != turl {
			patch.InstanceTemplate = proto.String(turl)
			changes = append(changes, "template "+tname+" (collectors created from now on)")
		}
		if len(mig.GetAutoHealingPolicies()) != 1 || relPath(e.project, mig.GetAutoHealingPolicies()[0].GetHealthCheck()) != hc {
			patch.AutoHealingPolicies = heal
			changes = append(changes, "autohealing on "+e.name("hc"))
		}
		if len(changes) == 0 {
			before = append(before, keep("managed instance group", migName, fmt.Sprintf("%d collectors", mig.GetTargetSize())))
		} else {
			before = append(before, provision.Step{Sym: "~", Verb: "patch", Kind: "managed instance group", Name: migName, Detail: strings.Join(changes, ", "),
				Run: func(ctx context.Context, out io.Writer) error {
					what := "patch managed instance group " + migName
					op, err := p.api.migs.Patch(ctx, &computepb.PatchRegionInstanceGroupManagerRequest{Project: e.project, Region: e.region, InstanceGroupManager: migName,
						InstanceGroupManagerResource: patch, RequestId: randomID()})
					if err != nil {
						return fmt.Errorf("%s: %w", what, err)
					}
					return p.wait(ctx, out, what, op)
				}})
		}
	}
	s, err := p.planAutoscaler(ctx, e, f, migName)
	if err != nil {
		return nil, nil, err
	}
	return append(before, s), after, nil
}

// planAutoscaler keeps the group's average CPU at the target between the bounds.
func (p *Provider) planAutoscaler(ctx context.Context, e *env, f FleetConfig, migName string) (provision.Step, error) {
	name := e.name("as")
	policy := &computepb.AutoscalingPolicy{MinNumReplicas: proto.Int32(int32(f.Min)), MaxNumReplicas: proto.Int32(int32(f.Max)), CoolDownPeriodSec: proto.Int32(120),
		CpuUtilization: &computepb.AutoscalingPolicyCpuUtilization{UtilizationTarget: proto.Float64(f.CPUTarget / 100)}}
	detail := fmt.Sprintf("%d-%d collectors, average CPU %.0f%%", f.Min, f.Max, f.CPUTarget)
	as, err := p.api.autoscalers.Get(ctx, &computepb.GetRegionAutoscalerRequest{Project: e.project, Region: e.region, Autoscaler: name})
	exists, err := ownedOrMissing(e, "autoscaler", name, as.GetDescription(), err)
	if err != nil {
		return provision.Step{}, err
	}
	if exists {
		cur := as.GetAutoscalingPolicy()
		if cur.GetMinNumReplicas() == int32(f.Min) && cur.GetMaxNumReplicas() == int32(f.Max) && cur.GetCpuUtilization().GetUtilizationTarget() == f.CPUTarget/100 {
			return keep("autoscaler", name, detail), nil
		}
		return provision.Step{Sym: "~", Verb: "patch", Kind: "autoscaler", Name: name, Detail: detail,
			Run: func(ctx context.Context, out io.Writer) error {
				what := "patch autoscaler " + name
				op, err := p.api.autoscalers.Patch(ctx, &computepb.PatchRegionAutoscalerRequest{Project: e.project, Region: e.region, Autoscaler: proto.String(name),
					AutoscalerResource: &computepb.Autoscaler{Name: proto.String(name), AutoscalingPolicy: policy}, RequestId: randomID()})
				if err != nil {
					return fmt.Errorf("%s: %w", what, err)
				}
				return p.wait(ctx, out, what, op)
			}}, nil
	}
	want := &computepb.Autoscaler{Name: proto.String(name), Description: proto.String(e.description("collector fleet autoscaler")),
		Target: proto.String(e.regional("instanceGroupManagers", migName)), AutoscalingPolicy: policy}
	return provision.Step{Sym: "+", Verb: "create", Kind: "autoscaler", Name: name, Detail: detail,
		Run: func(ctx context.Context, out io.Writer) error {
			return p.insert(ctx, out, "create autoscaler "+name, requestID("insert", e.regional("autoscalers", name), want),
				func(rid *string) (*compute.Operation, error) {
					return p.api.autoscalers.Insert(ctx, &computepb.InsertRegionAutoscalerRequest{Project: e.project, Region: e.region, AutoscalerResource: want, RequestId: rid})
				},
				func(ctx context.Context) error {
					a, err := p.api.autoscalers.Get(ctx, &computepb.GetRegionAutoscalerRequest{Project: e.project, Region: e.region, Autoscaler: name})
					return present(ownedOrMissing(e, "autoscaler", name, a.GetDescription(), err))
				})
		}}, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
