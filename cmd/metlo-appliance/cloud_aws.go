package main

import (
	"context"
	"log/slog"

	"github.com/spf13/pflag"

	"github.com/metlo-labs/metlo-appliance/provision"
	provaws "github.com/metlo-labs/metlo-appliance/provision/aws"
)

func init() { clouds["aws"] = awsFlags }

// awsFlags registers the --aws-… flags a command uses and returns its provider constructor.
func awsFlags(fs *pflag.FlagSet, scope flagScope) func(context.Context) (provision.Provider, error) {
	var c provaws.Config
	fs.StringVar(&c.InstanceID, "aws-instance-id", "", "aws: this appliance's instance id (default: from instance metadata)")
	fs.StringVar(&c.VPCID, "aws-vpc-id", "", "aws: the appliance's VPC (default: from instance metadata)")
	fs.StringVar(&c.SubnetID, "aws-subnet-id", "", "aws: the appliance's subnet (default: from instance metadata)")
	fs.StringVar(&c.ENIID, "aws-eni-id", "", "aws: the appliance's primary ENI, the default mirror target (default: from instance metadata)")
	fs.StringVar(&c.NLBName, "aws-nlb-name", "", "aws: name of the NLB and target group a fleet of appliances shares (default: metlo-<instance-id>, this appliance's own)")
	fs.StringVar(&c.Endpoint, "aws-endpoint", "", "aws: base endpoint for the EC2, ELBv2, ECS and Auto Scaling APIs (VPC endpoints, tests)")
	fs.StringVar(&c.IMDSEndpoint, "aws-imds-endpoint", "", "aws: instance metadata endpoint")
	fs.IntVar(&c.MaxAttempts, "aws-max-attempts", 8, "aws: attempts per API call, throttling included")
	if scope == scopeCleanup {
		fs.BoolVar(&c.Fleet.Delete, "aws-delete-fleet", false, "aws: cleanup: delete the whole fleet named by --aws-nlb-name, its Auto Scaling group and members included")
	}
	if scope == scopeProvision {
		fs.IntVar(&c.VNI, "aws-vni", 0, "aws: VXLAN id of every mirror session, 1-16777215 (default: derived from the instance id, or the fleet's name)")
		fs.IntVar(&c.PacketLength, "aws-packet-length", 0, "aws: bytes mirrored per packet, 1-8500 for an NLB target (default: whole packets)")
		fs.StringVar(&c.SessionNumber, "aws-session-number", "", "aws: where our session goes among others on the same ENI: last (default), first, or a number 1-32766 (AWS mirrors each packet once, to the lowest-numbered session whose filter accepts it)")
		fs.StringArrayVar(&c.FilterRules, "aws-filter-rule", nil, "aws: mirror filter rule, e.g. action=reject,dst-port=22 or dst-port=80-443,src=10.0.0.0/8 (repeatable, never comma-split: a rule holds commas; METLO_AWS_FILTER_RULE separates rules with ;; default: all TCP)")
		fs.StringSliceVar(&c.NLBSubnets, "aws-nlb-subnet", nil, "aws: subnet of the NLB (repeatable or comma-separated, one per AZ; default: the appliance's plus one per other AZ of its VPC)")
		fs.StringSliceVar(&c.ReachableVPCs, "aws-reachable-vpc", nil, "aws: a VPC whose sources reach the target through a transit gateway (repeatable or comma-separated; the appliance's and peered VPCs are found)")
		fs.BoolVar(&c.AllowVXLAN, "aws-allow-vxlan", false, "aws: add the security-group rule letting the sources' VXLAN (UDP 4789) in, when it is missing")
		addFleetFlags(fs, &c.Fleet)
	}
	return func(context.Context) (provision.Provider, error) {
		cfg := c
		cfg.Logger = slog.Default()
		return provaws.New(cfg), nil
	}
}

// addFleetFlags registers the Auto Scaling fleet flags.
func addFleetFlags(fs *pflag.FlagSet, f *provaws.FleetConfig) {
	fs.IntVar(&f.Size, "aws-fleet-size", 0, "aws: run a fleet of this many appliances in an Auto Scaling group behind the NLB named by --aws-nlb-name (needs --target nlb; 0 = no fleet)")
	fs.IntVar(&f.Min, "aws-fleet-min", 0, "aws: fewest fleet members the scaling policy keeps (default: --aws-fleet-size)")
	fs.IntVar(&f.Max, "aws-fleet-max", 0, "aws: most fleet members the scaling policy runs (default: twice --aws-fleet-size)")
	fs.StringVar(&f.ImageID, "aws-fleet-image", "", "aws: AMI of the fleet members (default: this appliance's AMI)")
	fs.StringVar(&f.InstanceType, "aws-fleet-instance-type", "", "aws: instance type of the members (default: this appliance's)")
	fs.StringVar(&f.InstanceProfile, "aws-fleet-instance-profile", "", "aws: IAM instance profile of the members (default: none; members only collect)")
	fs.StringSliceVar(&f.SecurityGroups, "aws-fleet-security-group", nil, "aws: security group of the members (repeatable or comma-separated; default: this appliance's)")
	fs.StringArrayVar(&f.Settings, "aws-fleet-setting", nil, "aws: METLO_KEY=VALUE for the members' user data, e.g. METLO_HOST=… (repeatable, never comma-split: a value may hold commas; values are never printed)")
	fs.Float64Var(&f.CPUTarget, "aws-fleet-cpu-target", 60, "aws: average CPU % the fleet's target-tracking scaling policy keeps")
	fs.DurationVar(&f.DeregistrationDelay, "aws-deregistration-delay", 0, "aws: how long a member leaving the target group keeps its flows (default 120s with --aws-nlb-name)")
}
