package aws

import _ "embed"

// IAMPolicy is the least-privilege IAM policy the provisioner needs (ec2:CreateTags and
// elasticloadbalancing:AddTags cover tagging on create).
//
//go:embed iam-policy.json
var IAMPolicy string
