package main

import (
	"context"
	"log/slog"

	"github.com/spf13/pflag"

	"github.com/metlo-labs/metlo-appliance/provision"
	provaws "github.com/metlo-labs/metlo-appliance/provision/aws"
)

func init() { clouds["aws"] = awsFlags }

// awsFlags registers the --aws-… flags on one command and returns its provider constructor.
func awsFlags(fs *pflag.FlagSet) func(context.Context) (provision.Provider, error) {
	var c provaws.Config
	fs.StringVar(&c.InstanceID, "aws-instance-id", "", "aws: this appliance's instance id (default: from instance metadata)")
	fs.StringVar(&c.Region, "aws-region", "", "aws: region, overrides --region (default: from instance metadata)")
	fs.StringVar(&c.VPCID, "aws-vpc-id", "", "aws: the appliance's VPC (default: from instance metadata)")
	fs.StringVar(&c.SubnetID, "aws-subnet-id", "", "aws: subnet for the internal NLB (default: the appliance's, from instance metadata)")
	fs.StringVar(&c.ENIID, "aws-eni-id", "", "aws: the appliance's primary ENI, the default mirror target (default: from instance metadata)")
	fs.IntVar(&c.VNI, "aws-vni", 0, "aws: VXLAN id of every mirror session, 1-16777215 (default: derived from the instance id)")
	fs.IntVar(&c.PacketLength, "aws-packet-length", 0, "aws: bytes mirrored per packet (default: whole packets)")
	fs.StringArrayVar(&c.FilterRules, "aws-filter-rule", nil, "aws: mirror filter rule, e.g. action=reject,dst-port=22 or dst-port=80-443,src=10.0.0.0/8 (repeatable; default: all TCP)")
	fs.StringVar(&c.NLBName, "aws-nlb-name", "", "aws: name of the NLB and target group for --target nlb (default: metlo-<instance-id>)")
	fs.StringVar(&c.Endpoint, "aws-endpoint", "", "aws: base endpoint for the EC2, ELBv2 and ECS APIs (VPC endpoints, tests)")
	fs.StringVar(&c.IMDSEndpoint, "aws-imds-endpoint", "", "aws: instance metadata endpoint")
	fs.IntVar(&c.MaxAttempts, "aws-max-attempts", 8, "aws: attempts per API call, throttling included")
	return func(context.Context) (provision.Provider, error) {
		cfg := c
		cfg.Logger = slog.Default()
		return provaws.New(cfg), nil
	}
}
