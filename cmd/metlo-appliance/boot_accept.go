package main

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	provaws "github.com/metlo-labs/metlo-appliance/provision/aws"
)

// awsTunnelDefaults fills accept-sources and accept-vnis, when the settings leave them
// unset and boot provisions the mirroring itself, with what that provisioning sets up: the
// VNI every mirror session gets (--aws-vni, else the one derived from the instance id) and
// the appliance's VPC CIDR blocks, where the mirror sources send from. Without sources to
// provision (mirroring set up by hand), nothing is assumed.
func (o *bootOptions) awsTunnelDefaults(ctx context.Context, st *bootSettings, log *slog.Logger) {
	if len(st.Provision["source"]) == 0 {
		return
	}
	md := imds.New(imds.Options{Endpoint: o.imdsEndpoint, Retryer: retry.NewStandard(func(so *retry.StandardOptions) { so.MaxAttempts = 2 })})
	get := func(path string) string {
		ctx, cancel := context.WithTimeout(ctx, o.detectTimeout)
		defer cancel()
		out, err := md.GetMetadata(ctx, &imds.GetMetadataInput{Path: path})
		if err != nil {
			return ""
		}
		defer out.Content.Close()
		b, _ := io.ReadAll(io.LimitReader(out.Content, 64<<10))
		return strings.TrimSpace(string(b))
	}
	if _, set := st.config["accept-vnis"]; !set {
		vni := 0
		if v := st.Provision["aws-vni"]; len(v) > 0 {
			vni, _ = strconv.Atoi(v[len(v)-1])
		}
		if vni == 0 {
			id := ""
			if v := st.Provision["aws-instance-id"]; len(v) > 0 {
				id = v[len(v)-1]
			} else {
				id = get("instance-id")
			}
			if id != "" {
				vni = provaws.DefaultVNI(id)
			}
		}
		if vni > 0 && vni < 1<<24 {
			st.config["accept-vnis"] = []int{vni}
			log.Info("tunnel packets accepted only with the mirror sessions' VNI", "accept-vnis", vni)
		} else {
			log.Warn("cannot tell the mirror sessions' VNI: tunnel packets with any VNI are accepted (set METLO_ACCEPT_VNIS)")
		}
	}
	if _, set := st.config["accept-sources"]; !set {
		var cidrs []string
		if mac := get("mac"); mac != "" {
			for _, kind := range []string{"vpc-ipv4-cidr-blocks", "vpc-ipv6-cidr-blocks"} {
				for _, c := range strings.Fields(get("network/interfaces/macs/" + mac + "/" + kind)) {
					if _, err := netip.ParsePrefix(c); err == nil {
						cidrs = append(cidrs, c)
					}
				}
			}
		}
		if len(cidrs) > 0 {
			st.config["accept-sources"] = cidrs
			log.Info("tunnel packets accepted only from the VPC (mirror sources in other VPCs need METLO_ACCEPT_SOURCES)", "accept-sources", strings.Join(cidrs, ","))
		} else {
			log.Warn("cannot read the VPC's CIDR blocks: tunnel packets from any source are accepted (set METLO_ACCEPT_SOURCES)")
		}
	}
}
