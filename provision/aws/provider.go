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
	"net/http"
	"strings"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/smithy-go"

	"github.com/metlo-labs/metlo-appliance/provision"
)

// Tag keys on every resource this package creates.
const (
	TagManaged   = "metlo:managed"   // always "true"
	TagAppliance = "metlo:appliance" // the instance id of the appliance that owns (or created) it
	TagFleet     = "metlo:fleet"     // fleet-owned resources: the fleet's name; its members share them
	TagSource    = "metlo:source"    // sessions: the KIND:VALUE source that asked for it
	TagOwner     = "metlo:owner"     // sessions: what the source ENI belongs to
)

// SourceKinds are the source kinds AWS understands ("alb" only to explain why it cannot work).
var SourceKinds = []string{"instance", "eni", "tag", "ecs", "alb"}

// SourceHelp lists the source kinds with examples, for --help and error messages.
const SourceHelp = `  instance:i-0abc123       every eligible network interface of the instance
  eni:eni-0abc123          one network interface
  tag:Env=prod             every running instance with the tag, in VPCs that can reach the target
  ecs:CLUSTER/SERVICE      the awsvpc interface of every running task of the service (EC2 launch type)
  (alb:NAME is refused: AWS cannot mirror load balancer interfaces; mirror the ALB's targets)`

// Config is the AWS-specific configuration; empty identity fields are discovered via IMDSv2.
type Config struct {
	InstanceID string // this appliance's instance id
	Region     string // overrides Options.Region and IMDS
	VPCID      string
	SubnetID   string // the appliance's subnet (the NLB's subnet in its AZ)
	ENIID      string // the appliance's primary ENI (the default mirror target)

	VNI           int      // VXLAN id of every session; 0 = derived from the instance (or fleet) name
	PacketLength  int      // bytes mirrored per packet; 0 = whole packet
	SessionNumber string   // "" = after existing sessions, "first" = before them, or a number 1-32766
	FilterRules   []string // extra filter rules, see ParseRules
	NLBName       string   // name of the NLB and its target group; set = the fleet sharing them
	NLBSubnets    []string // subnets of the NLB; empty = the appliance's plus one per other AZ of its VPC
	ReachableVPCs []string // VPCs (besides the appliance's and peered ones) whose sources can reach the target
	AllowVXLAN    bool     // add the security-group rule letting the sources' VXLAN in, when missing

	Fleet FleetConfig // Auto Scaling fleet behind the NLB (Fleet.Size > 0 turns it on)

	Endpoint        string        // base endpoint for EC2, ELBv2, ECS and Auto Scaling (tests, VPC endpoints)
	IMDSEndpoint    string        // instance metadata endpoint override
	MetadataTimeout time.Duration // longest wait for instance metadata in all; 0 = 5s

	MaxAttempts     int           // API attempts per call, throttling included; 0 = 8
	RetryMaxBackoff time.Duration // longest wait between attempts; 0 = 20s
	// ConsistencyWait bounds how long a resource just created may stay invisible to Describe
	// (EC2 is eventually consistent) before the create is believed lost; 0 = 15s.
	ConsistencyWait time.Duration
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
	if cfg.ConsistencyWait <= 0 {
		cfg.ConsistencyWait = 15 * time.Second
	}
	if cfg.MetadataTimeout <= 0 {
		cfg.MetadataTimeout = 5 * time.Second
	}
	return &Provider{cfg: cfg, log: log}
}

// identity is who and where this appliance is.
type identity struct {
	InstanceID, Region, VPCID, SubnetID, ENI string
}

// env is one command's resolved identity, API clients and output.
type env struct {
	self  identity
	owner owner
	vni   int
	cfg   Config
	ec2   ec2API
	elb   elbAPI
	ecs   ecsAPI
	asg   asgAPI
	out   io.Writer
	log   *slog.Logger
}

// owner is the tag that marks a resource as ours: this appliance's, or its fleet's.
type owner struct{ key, value string }

func (o owner) String() string { return o.key + "=" + o.value }

// imdsEndpoint is the metadata endpoint in use, for messages.
func (p *Provider) imdsEndpoint() string {
	if p.cfg.IMDSEndpoint != "" {
		return p.cfg.IMDSEndpoint
	}
	return "http://169.254.169.254"
}

// discover fills what flags left empty from IMDSv2, waiting at most MetadataTimeout in all.
func (p *Provider) discover(ctx context.Context, region string) (identity, error) {
	id := identity{InstanceID: p.cfg.InstanceID, Region: p.cfg.Region, VPCID: p.cfg.VPCID, SubnetID: p.cfg.SubnetID, ENI: p.cfg.ENIID}
	if id.Region == "" {
		id.Region = region
	}
	if id.InstanceID != "" && id.Region != "" && id.VPCID != "" && id.SubnetID != "" && id.ENI != "" {
		return id, nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.MetadataTimeout)
	defer cancel()
	opts := imds.Options{Endpoint: p.cfg.IMDSEndpoint, HTTPClient: &http.Client{Timeout: 2 * time.Second}}
	opts.Retryer = retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts = 2 })
	client := imds.New(opts)
	get := func(path string) (string, error) {
		out, err := client.GetMetadata(ctx, &imds.GetMetadataInput{Path: path})
		if err != nil {
			why := err.Error()
			if ctx.Err() != nil {
				why = fmt.Sprintf("no answer within %s", p.cfg.MetadataTimeout)
			}
			return "", fmt.Errorf("read instance metadata %s from %s: %s (off EC2, pass --aws-instance-id, --region, --aws-vpc-id, --aws-subnet-id, --aws-eni-id)", path, p.imdsEndpoint(), why)
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
		for _, f := range []struct {
			dst  *string
			leaf string
		}{{&id.ENI, "interface-id"}, {&id.VPCID, "vpc-id"}, {&id.SubnetID, "subnet-id"}} {
			if err := fill(f.dst, base+f.leaf); err != nil {
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
	return p.openAs(ctx, opts, self)
}

func (p *Provider) openAs(ctx context.Context, opts provision.Options, self identity) (*env, error) {
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
	own := owner{TagAppliance, self.InstanceID}
	if p.cfg.NLBName != "" {
		own = owner{TagFleet, p.cfg.NLBName}
	}
	vni := p.cfg.VNI
	if vni == 0 {
		vni = DefaultVNI(own.value)
	}
	if vni < 0 || vni >= 1<<24 {
		return nil, fmt.Errorf("vni %d: want 1-16777215", vni)
	}
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	return &env{
		self: self, owner: own, vni: vni, cfg: p.cfg, out: out, log: p.log,
		ec2: ec2.NewFromConfig(awsCfg, func(o *ec2.Options) { o.BaseEndpoint = endpoint }),
		elb: elb.NewFromConfig(awsCfg, func(o *elb.Options) { o.BaseEndpoint = endpoint }),
		ecs: ecs.NewFromConfig(awsCfg, func(o *ecs.Options) { o.BaseEndpoint = endpoint }),
		asg: autoscaling.NewFromConfig(awsCfg, func(o *autoscaling.Options) { o.BaseEndpoint = endpoint }),
	}, nil
}

// DefaultVNI derives a fixed VXLAN id from the owner (instance id or fleet name): 24 bits, never 0.
func DefaultVNI(name string) int {
	h := fnv.New32a()
	h.Write([]byte(name))
	v := int(h.Sum32() & 0xFFFFFF)
	if v == 0 {
		v = 1
	}
	return v
}

// fleet reports whether the resources belong to a fleet sharing one NLB.
func (e *env) fleet() bool { return e.owner.key == TagFleet }

// name is the Name tag of the target and filter.
func (e *env) name() string {
	if e.fleet() {
		return "metlo-fleet-" + e.owner.value
	}
	return "metlo-appliance-" + e.self.InstanceID
}

// tags are the tags every created resource carries, plus extra key/value pairs.
func (e *env) tags(extra ...string) map[string]string {
	t := map[string]string{TagManaged: "true", TagAppliance: e.self.InstanceID, "Name": e.name()}
	if e.fleet() {
		t[TagFleet] = e.owner.value
	}
	for i := 0; i+1 < len(extra); i += 2 {
		t[extra[i]] = extra[i+1]
	}
	return t
}

// ours reports whether tags mark a resource as owned by this appliance (or its fleet).
func (e *env) ours(tags map[string]string) bool {
	if tags[TagManaged] != "true" || tags[e.owner.key] != e.owner.value {
		return false
	}
	// A fleet member never claims a standalone appliance's resources, nor the reverse.
	return e.fleet() || tags[TagFleet] == ""
}

// clientToken is a deterministic idempotency token (≤ 64 ASCII) for one logical create;
// attempt > 0 salts it when an earlier token replays a resource that no longer exists.
func (e *env) clientToken(attempt int, parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(append([]string{e.owner.String(), fmt.Sprint(attempt)}, parts...), "\x00")))
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

// isDenied reports IAM refusals of every service in use.
func isDenied(err error) bool {
	switch apiCode(err) {
	case "UnauthorizedOperation", "AccessDenied", "AccessDeniedException":
		return true
	}
	return false
}

func notFoundIsNil(err error) error {
	if isNotFound(err) {
		return nil
	}
	return err
}
