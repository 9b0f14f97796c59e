package gcp

import _ "embed"

// Role is a predefined IAM role the provisioner's identity needs, with the permissions the
// provisioner relies on from it.
type Role struct {
	Name        string
	Why         string
	Permissions []string
}

// Roles are the predefined roles that cover every call the provisioner makes; grant them on
// the project (docs/provision-gcp.md).
var Roles = []Role{
	{"roles/compute.packetMirroringUser", "create, patch and delete the packet mirroring policy",
		[]string{"compute.packetMirrorings.get", "compute.packetMirrorings.list", "compute.packetMirrorings.create", "compute.packetMirrorings.update", "compute.packetMirrorings.delete"}},
	{"roles/compute.packetMirroringAdmin", "name instances, subnets and tags as mirrored sources of the policy", nil},
	{"roles/compute.loadBalancerAdmin", "the collector: instance group, health check, backend service, forwarding rule",
		[]string{"compute.instanceGroupManagers.use",
			"compute.instanceGroups.get", "compute.instanceGroups.list", "compute.instanceGroups.create", "compute.instanceGroups.update", "compute.instanceGroups.delete", "compute.instanceGroups.use",
			"compute.regionHealthChecks.get", "compute.regionHealthChecks.create", "compute.regionHealthChecks.update", "compute.regionHealthChecks.delete", "compute.regionHealthChecks.useReadOnly",
			"compute.regionBackendServices.get", "compute.regionBackendServices.create", "compute.regionBackendServices.delete", "compute.regionBackendServices.use",
			"compute.forwardingRules.get", "compute.forwardingRules.create", "compute.forwardingRules.delete", "compute.forwardingRules.use",
			"compute.instances.use", "compute.networks.use", "compute.subnetworks.use",
		}},
	{"roles/compute.securityAdmin", "firewall rules for the health checkers and the mirrored traffic",
		[]string{"compute.firewalls.get", "compute.firewalls.create", "compute.firewalls.update", "compute.firewalls.delete", "compute.networks.updatePolicy"}},
	{"roles/compute.instanceAdmin.v1", "a collector fleet: instance template, regional managed instance group, autoscaler (only with --gcp-fleet-size)",
		[]string{"compute.instanceTemplates.get", "compute.instanceTemplates.list", "compute.instanceTemplates.create", "compute.instanceTemplates.delete", "compute.instanceTemplates.useReadOnly",
			"compute.instanceGroupManagers.get", "compute.instanceGroupManagers.create", "compute.instanceGroupManagers.update", "compute.instanceGroupManagers.delete",
			"compute.autoscalers.get", "compute.autoscalers.create", "compute.autoscalers.update", "compute.autoscalers.delete",
			"compute.instances.create", "compute.disks.create", "compute.images.useReadOnly", "compute.instances.setMetadata", "compute.instances.setTags",
			"compute.instances.setServiceAccount", "compute.regionBackendServices.update"}},
	{"roles/iam.serviceAccountUser", "let the fleet's collectors run as the appliance's service account (only with --gcp-fleet-size)", []string{"iam.serviceAccounts.actAs"}},
	{"roles/compute.viewer", "discover this appliance and the sources to mirror, follow operations",
		[]string{"compute.instances.get", "compute.instances.list", "compute.subnetworks.get", "compute.subnetworks.list", "compute.networks.get",
			"compute.zoneOperations.get", "compute.regionOperations.get", "compute.globalOperations.get"}},
}

// MethodPermissions maps every Compute API method the provisioner calls to the IAM
// permissions that call needs.
var MethodPermissions = map[string][]string{
	"compute.instances.get":                   {"compute.instances.get"},
	"compute.instances.aggregatedList":        {"compute.instances.list"},
	"compute.subnetworks.get":                 {"compute.subnetworks.get"},
	"compute.subnetworks.list":                {"compute.subnetworks.list"},
	"compute.instanceGroups.get":              {"compute.instanceGroups.get"},
	"compute.instanceGroups.insert":           {"compute.instanceGroups.create", "compute.networks.use", "compute.subnetworks.use"},
	"compute.instanceGroups.addInstances":     {"compute.instanceGroups.update", "compute.instances.use"},
	"compute.instanceGroups.listInstances":    {"compute.instanceGroups.list"},
	"compute.instanceGroups.delete":           {"compute.instanceGroups.delete"},
	"compute.regionHealthChecks.get":          {"compute.regionHealthChecks.get"},
	"compute.regionHealthChecks.insert":       {"compute.regionHealthChecks.create"},
	"compute.regionHealthChecks.patch":        {"compute.regionHealthChecks.update"},
	"compute.regionHealthChecks.delete":       {"compute.regionHealthChecks.delete"},
	"compute.regionBackendServices.get":       {"compute.regionBackendServices.get"},
	"compute.regionBackendServices.insert":    {"compute.regionBackendServices.create", "compute.regionHealthChecks.useReadOnly", "compute.instanceGroups.use"},
	"compute.regionBackendServices.delete":    {"compute.regionBackendServices.delete"},
	"compute.regionBackendServices.getHealth": {"compute.regionBackendServices.get"},
	"compute.forwardingRules.get":             {"compute.forwardingRules.get"},
	"compute.forwardingRules.insert":          {"compute.forwardingRules.create", "compute.regionBackendServices.use", "compute.networks.use", "compute.subnetworks.use"},
	"compute.forwardingRules.delete":          {"compute.forwardingRules.delete"},
	"compute.firewalls.get":                   {"compute.firewalls.get"},
	"compute.firewalls.insert":                {"compute.firewalls.create", "compute.networks.updatePolicy"},
	"compute.firewalls.patch":                 {"compute.firewalls.update", "compute.networks.updatePolicy"},
	"compute.firewalls.delete":                {"compute.firewalls.delete", "compute.networks.updatePolicy"},
	"compute.packetMirrorings.get":            {"compute.packetMirrorings.get"},
	"compute.packetMirrorings.list":           {"compute.packetMirrorings.list"},
	"compute.packetMirrorings.insert":         {"compute.packetMirrorings.create", "compute.forwardingRules.use"},
	"compute.packetMirrorings.patch":          {"compute.packetMirrorings.update", "compute.forwardingRules.use"},
	"compute.packetMirrorings.delete":         {"compute.packetMirrorings.delete"},
	"compute.zoneOperations.get":              {"compute.zoneOperations.get"},
	"compute.regionOperations.get":            {"compute.regionOperations.get"},
	"compute.globalOperations.get":            {"compute.globalOperations.get"},
	"compute.regionBackendServices.patch":     {"compute.regionBackendServices.update", "compute.instanceGroups.use"},
	"compute.instanceTemplates.get":           {"compute.instanceTemplates.get"},
	"compute.instanceTemplates.list":          {"compute.instanceTemplates.list"},
	"compute.instanceTemplates.insert": {"compute.instanceTemplates.create", "compute.images.useReadOnly", "compute.networks.use", "compute.subnetworks.use",
		"iam.serviceAccounts.actAs"},
	"compute.instanceTemplates.delete":        {"compute.instanceTemplates.delete"},
	"compute.regionInstanceGroupManagers.get": {"compute.instanceGroupManagers.get"},
	"compute.regionInstanceGroupManagers.insert": {"compute.instanceGroupManagers.create", "compute.instanceTemplates.useReadOnly", "compute.instances.create",
		"compute.disks.create", "compute.instances.setMetadata", "compute.instances.setTags", "compute.instances.setServiceAccount", "compute.regionHealthChecks.useReadOnly",
		"iam.serviceAccounts.actAs"},
	"compute.regionInstanceGroupManagers.patch":  {"compute.instanceGroupManagers.update", "compute.instanceTemplates.useReadOnly", "compute.regionHealthChecks.useReadOnly"},
	"compute.regionInstanceGroupManagers.delete": {"compute.instanceGroupManagers.delete"},
	"compute.regionAutoscalers.get":              {"compute.autoscalers.get"},
	"compute.regionAutoscalers.insert":           {"compute.autoscalers.create", "compute.instanceGroupManagers.use"},
	"compute.regionAutoscalers.patch":            {"compute.autoscalers.update", "compute.instanceGroupManagers.use"},
	"compute.regionAutoscalers.delete":           {"compute.autoscalers.delete"},
}

// CustomRole is the custom IAM role definition (gcloud iam roles create --file) holding
// exactly the permissions in MethodPermissions.
//
//go:embed iam-role.yaml
var CustomRole string
