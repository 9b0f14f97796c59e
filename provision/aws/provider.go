// Package aws provisions AWS VPC Traffic Mirroring to this appliance: a mirror target (the
// appliance's ENI or an internal NLB), one filter, and one session per source ENI. Every
// resource is found by its tags before anything is created, so runs can repeat forever.
package aws

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"strings"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/smithy-go"

	"github.com/metlo-labs/metlo-appliance/provision"
)

// Tag keys on every resource this package creates.
const (
	TagManaged   = "metlo:managed"   // always "true"
	TagAppliance = "metlo:appliance" // the appliance's instance id
	TagSource    = "metlo:source"    // sessions: the KIND:VALUE source that asked for it
	TagOwner     = "metlo:owner"     // sessions: what the source ENI belongs to
)

// SourceKinds are the source kinds AWS understands.
var SourceKinds = []string{"instance", "eni", "tag", "ecs", "alb"}

// Config is the AWS-specific configuration; empty identity fields are discovered via IMDSv2.
type Config struct {
	InstanceID string // this appliance's instance id
	Region     string // overrides Options.Region and IMDS
	VPCID      string
	SubnetID   string // subnet for the internal NLB
	ENIID      string // the appliance's primary ENI (the default mirror target)

	VNI          int      // VXLAN id of every session; 0 = derived from the instance id
	PacketLength int      // bytes mirrored per packet; 0 = whole packet
	FilterRules  []string // extra filter rules, see ParseRules
	NLBName      string   // name of the NLB and its target group; "" = metlo-<instance-id>

	Endpoint     string // base endpoint for EC2, ELBv2 and ECS (tests, VPC endpoints)
	IMDSEndpoint string // instance metadata endpoint override

	MaxAttempts     int           // API attempts per call, throttling included; 0 = 8
	RetryMaxBackoff time.Duration // longest wait between attempts; 0 = 20s
	Logger          *slog.Logger
}

// Provider implements provision.Provider for AWS.
type Provider struct {
	cfg Config
	log *slog.Logger
}

var _ provision.Provider = (*Provider)(nil)

// New returns a provider; nothing is contacted until a method runs.
func New(cfg Config) *Provider {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Provider{cfg: cfg, log: log}
}

// identity is who and where this appliance is.
type identity struct {
	InstanceID, Region, VPCID, SubnetID, ENI string
}

// env is one command's resolved identity, API clients and output.
type env struct {
	self identity
	vni  int
	cfg  Config
	ec2  ec2API
	elb  elbAPI
	ecs  ecsAPI
	out  io.Writer
	log  *slog.Logger
}

// discover fills what flags left empty from IMDSv2.
func (p *Provider) discover(ctx context.Context, region string) (identity, error) {
	id := identity{InstanceID: p.cfg.InstanceID, Region: p.cfg.Region, VPCID: p.cfg.VPCID, SubnetID: p.cfg.SubnetID, ENI: p.cfg.ENIID}
	if id.Region == "" {
		id.Region = region
	}
	if id.InstanceID != "" && id.Region != "" && id.VPCID != "" && id.SubnetID != "" && id.ENI != "" {
		return id, nil
	}
	opts := imds.Options{Endpoint: p.cfg.IMDSEndpoint}
	opts.Retryer = retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts = 2 })
	client := imds.New(opts)
	get := func(path string) (string, error) {
		out, err := client.GetMetadata(ctx, &imds.GetMetadataInput{Path: path})
		if err != nil {
			return "", fmt.Errorf("read instance metadata %s (off EC2, pass --aws-instance-id, --aws-region, --aws-vpc-id, --aws-subnet-id, --aws-eni-id): %w", path, err)
		}
		defer out.Content.Close()
		b, err := io.ReadAll(out.Content)
		return strings.TrimSpace(string(b)), err
	}
	fill := func(dst *string, path string) error {
		if *dst != "" {
			return nil
		}
		v, err := get(path)
		*dst = v
		return err
	}
	if err := fill(&id.InstanceID, "instance-id"); err != nil {
		return id, err
	}
	if err := fill(&id.Region, "placement/region"); err != nil {
		return id, err
	}
	if id.ENI == "" || id.VPCID == "" || id.SubnetID == "" {
		mac, err := get("mac")
		if err != nil {
			return id, err
		}
		base := "network/interfaces/macs/" + mac + "/"
		for dst, leaf := range map[*string]string{&id.ENI: "interface-id", &id.VPCID: "vpc-id", &id.SubnetID: "subnet-id"} {
			if err := fill(dst, base+leaf); err != nil {
				return id, err
			}
		}
	}
	return id, nil
}

// open discovers the identity and builds the API clients for one command.
func (p *Provider) open(ctx context.Context, opts provision.Options) (*env, error) {
	self, err := p.discover(ctx, opts.Region)
	if err != nil {
		return nil, err
	}
	attempts, backoff := p.cfg.MaxAttempts, p.cfg.RetryMaxBackoff
	if attempts <= 0 {
		attempts = 8
	}
	if backoff <= 0 {
		backoff = 20 * time.Second
	}
	loadOpts := []func(*config.LoadOptions) error{
		config.WithRegion(self.Region),
		config.WithRetryer(func() awssdk.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts, o.MaxBackoff = attempts, backoff })
		}),
	}
	if p.cfg.IMDSEndpoint != "" {
		loadOpts = append(loadOpts, config.WithEC2IMDSEndpoint(p.cfg.IMDSEndpoint))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("load aws configuration: %w", err)
	}
	var endpoint *string
	if p.cfg.Endpoint != "" {
		endpoint = awssdk.String(p.cfg.Endpoint)
	}
	vni := p.cfg.VNI
	if vni == 0 {
		vni = DefaultVNI(self.InstanceID)
	}
	if vni < 0 || vni >= 1<<24 {
		return nil, fmt.Errorf("vni %d: want 1-16777215", vni)
	}
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	return &env{
		self: self, vni: vni, cfg: p.cfg, out: out, log: p.log,
		ec2: ec2.NewFromConfig(awsCfg, func(o *ec2.Options) { o.BaseEndpoint = endpoint }),
		elb: elb.NewFromConfig(awsCfg, func(o *elb.Options) { o.BaseEndpoint = endpoint }),
		ecs: ecs.NewFromConfig(awsCfg, func(o *ecs.Options) { o.BaseEndpoint = endpoint }),
	}, nil
}

// DefaultVNI derives the appliance's fixed VXLAN id from its instance id (24 bits, never 0).
func DefaultVNI(instanceID string) int {
	h := fnv.New32a()
	h.Write([]byte(instanceID))
	v := int(h.Sum32() & 0xFFFFFF)
	if v == 0 {
		v = 1
	}
	return v
}

// name is the Name tag of the appliance's target and filter.
func (e *env) name() string { return "metlo-appliance-" + e.self.InstanceID }

// tags are the tags every created resource carries, plus extra key/value pairs.
func (e *env) tags(extra ...string) map[string]string {
	t := map[string]string{TagManaged: "true", TagAppliance: e.self.InstanceID, "Name": e.name()}
	for i := 0; i+1 < len(extra); i += 2 {
		t[extra[i]] = extra[i+1]
	}
	return t
}

// ours reports whether tags mark a resource as this appliance's.
func (e *env) ours(tags map[string]string) bool {
	return tags[TagManaged] == "true" && tags[TagAppliance] == e.self.InstanceID
}

// clientToken is a deterministic idempotency token (≤ 64 ASCII) for one logical create;
// attempt > 0 salts it when an earlier token replays a resource that no longer exists.
func (e *env) clientToken(attempt int, parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(append([]string{e.self.InstanceID, fmt.Sprint(attempt)}, parts...), "\x00")))
	return "metlo-" + hex.EncodeToString(h[:])[:40]
}

// apiCode returns the AWS error code of err, or "".
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// apiMessage is the AWS error message (or the error text) for user-facing lines.
func apiMessage(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode() + ": " + ae.ErrorMessage()
	}
	return err.Error()
}

// isNotFound reports the "already gone" answers of EC2 and ELBv2.
func isNotFound(err error) bool {
	c := apiCode(err)
	return strings.HasSuffix(c, ".NotFound") || strings.HasSuffix(c, "NotFound") || c == "ClusterNotFoundException" || c == "ServiceNotFoundException"
}
