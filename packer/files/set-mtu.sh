#!/bin/sh
# Raise the capture interface's MTU to the largest the cloud allows, so mirrored packets
# (original frame + 50 bytes of VXLAN) are not truncated: AWS VPCs allow 9001; GCP VPCs
# set their MTU (up to 8896) and the metadata server reports it.
# Override with a number in /etc/metlo-appliance/mtu. SYSFS, ETC, IP and METADATA exist
# for tests.
set -eu

SYSFS=${SYSFS:-/sys}
ETC=${ETC:-/etc/metlo-appliance}
IP=${IP:-ip}
METADATA=${METADATA:-http://169.254.169.254}

iface=$(awk '$2 == "00000000" { print $1; exit }' "${ROUTES:-/proc/self/net/route}")
if [ -z "$iface" ]; then
	echo "set-mtu: no default route; leaving MTUs alone"
	exit 0
fi

vendor=$(cat "$SYSFS/class/dmi/id/sys_vendor" "$SYSFS/class/dmi/id/product_name" 2>/dev/null || true)
mtu=""
if [ -r "$ETC/mtu" ]; then
	mtu=$(tr -dc '0-9' <"$ETC/mtu")
elif printf '%s' "$vendor" | grep -q 'Amazon EC2'; then
	mtu=9001
elif printf '%s' "$vendor" | grep -q 'Google'; then
	if command -v curl >/dev/null 2>&1; then
		mtu=$(curl -fsS --max-time 2 -H 'Metadata-Flavor: Google' \
			"$METADATA/computeMetadata/v1/instance/network-interfaces/0/mtu" | tr -dc '0-9' || true)
	fi
fi

if [ -z "$mtu" ]; then
	echo "set-mtu: no cloud MTU known for $iface; leaving it as DHCP set it"
	exit 0
fi
current=$(cat "$SYSFS/class/net/$iface/mtu" 2>/dev/null || echo 0)
if [ "$current" = "$mtu" ]; then
	echo "set-mtu: $iface already at MTU $mtu"
	exit 0
fi
echo "set-mtu: $iface MTU $current -> $mtu"
"$IP" link set dev "$iface" mtu "$mtu"
