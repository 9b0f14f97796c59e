#!/usr/bin/env bash
# run.sh — real-kernel traffic-mirroring lab.
#
# Builds three network namespaces (client, server, collector), mirrors every TCP frame on
# the server's veth (tc clsact + u32 + mirred, ingress and egress) into a kernel VXLAN device
# aimed at the collector (mode vxlan, AWS-style) or straight onto the collector's veth (mode
# raw, GCP-style), runs labserver + labclient, and records what reaches the collector's veth
# with tcpdump. Writes <out>/<mode>.pcap and <out>/<mode>.groundtruth.jsonl. Needs root.
# Everything it creates is torn down on exit, success or not.
set -euo pipefail

usage() {
	cat <<USAGE
usage: $0 [-m vxlan|raw] [-o outdir] [-s seed] [-n vni] [--no-huge] [-- labclient flags]
  -m, --mode      vxlan (default): mirror into a VXLAN device; raw: mirror onto the collector veth
  -o, --out       output directory (default: test/lab/out)
  -s, --seed      labclient seed (default: 1)
  -n, --vni       VXLAN network identifier (default: 4242)
      --no-huge   skip the uncompressed 1 MiB transfers (keeps committed captures small)
  after --, flags for labclient (e.g. -- -per-worker 3500: a 52k-packet capture)
USAGE
}

MODE=vxlan
SEED=1
VNI=4242
HUGE=true
CLIENT_ARGS=()
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
OUT="$REPO/test/lab/out"

while [[ $# -gt 0 ]]; do
	case "$1" in
	-m | --mode) MODE=$2; shift 2 ;;
	-o | --out) OUT=$2; shift 2 ;;
	-s | --seed) SEED=$2; shift 2 ;;
	-n | --vni) VNI=$2; shift 2 ;;
	--no-huge) HUGE=false; shift ;;
	--) shift; CLIENT_ARGS=("$@"); break ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
case "$MODE" in vxlan | raw) ;; *) echo "unknown mode: $MODE" >&2; exit 2 ;; esac
if [[ $EUID -ne 0 ]]; then
	echo "run.sh needs root (network namespaces, tc, tcpdump)" >&2
	exit 1
fi
for tool in ip tc ethtool tcpdump go; do
	command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d)
# Unique per run so parallel labs never collide; interface names stay under 15 bytes.
P="lab$(printf '%05d' $((RANDOM % 100000)))$$"
P=${P:0:12}
NS_CLI="$P-cli" NS_SRV="$P-srv" NS_COL="$P-col"
CLI_IP=10.200.1.1 SRV_IP=10.200.1.2 TAP_IP=10.200.2.1 COL_IP=10.200.2.2
PORT=8080
PIDS=()

cleanup() {
	local rc=$?
	set +e
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null
	done
	for ns in "$NS_CLI" "$NS_SRV" "$NS_COL"; do
		ip netns del "$ns" 2>/dev/null
	done
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT INT TERM

in_ns() { ip netns exec "$1" "${@:2}"; }

echo "building labserver and labclient" >&2
(cd "$REPO" && go build -o "$WORK/" ./test/lab/labserver ./test/lab/labclient)

ip netns add "$NS_CLI"
ip netns add "$NS_SRV"
ip netns add "$NS_COL"
ip link add "${P}c" netns "$NS_CLI" type veth peer name "${P}s" netns "$NS_SRV"
ip link add "${P}t" netns "$NS_SRV" type veth peer name "${P}k" netns "$NS_COL"
ip -n "$NS_CLI" addr add "$CLI_IP/24" dev "${P}c"
ip -n "$NS_SRV" addr add "$SRV_IP/24" dev "${P}s"
ip -n "$NS_SRV" addr add "$TAP_IP/24" dev "${P}t"
ip -n "$NS_COL" addr add "$COL_IP/24" dev "${P}k"
# Room for a full 1514-byte frame plus 50 bytes of VXLAN so the outer packet is never fragmented.
ip -n "$NS_SRV" link set "${P}t" mtu 1600
ip -n "$NS_COL" link set "${P}k" mtu 1600
for pair in "$NS_CLI:${P}c" "$NS_SRV:${P}s" "$NS_SRV:${P}t" "$NS_COL:${P}k"; do
	ns=${pair%%:*} dev=${pair#*:}
	# No TSO/GSO/GRO: the mirror must see wire-sized frames, not 64 KB super-frames.
	in_ns "$ns" ethtool -K "$dev" tso off gso off gro off >/dev/null 2>&1 || true
	ip -n "$ns" link set "$dev" up
	ip -n "$ns" link set lo up
done

TARGET="${P}t"
FILTER="tcp"
if [[ $MODE == vxlan ]]; then
	ip -n "$NS_SRV" link add vx0 type vxlan id "$VNI" local "$TAP_IP" remote "$COL_IP" dstport 4789 dev "${P}t"
	ip -n "$NS_SRV" link set vx0 mtu 1550 up
	TARGET=vx0
	FILTER="udp dst port 4789"
fi
in_ns "$NS_SRV" tc qdisc add dev "${P}s" clsact
for dir in ingress egress; do
	in_ns "$NS_SRV" tc filter add dev "${P}s" "$dir" protocol ip u32 match ip protocol 6 0xff \
		action mirred egress mirror dev "$TARGET"
done
# Pin the collector's MAC so the first mirrored frames never wait (or drop) behind ARP.
COL_MAC=$(cat "/sys/class/net/${P}k/address" 2>/dev/null || ip netns exec "$NS_COL" cat "/sys/class/net/${P}k/address")
ip -n "$NS_SRV" neigh replace "$COL_IP" lladdr "$COL_MAC" dev "${P}t" nud permanent

PCAP="$OUT/$MODE.pcap"
TRUTH="$OUT/$MODE.groundtruth.jsonl"
ip netns exec "$NS_COL" tcpdump -i "${P}k" -n -s 0 -U -w "$PCAP" "$FILTER" 2>"$WORK/tcpdump.log" &
PIDS+=($!)
TCPDUMP_PID=$!
for _ in $(seq 50); do
	grep -q "listening on" "$WORK/tcpdump.log" && break
	sleep 0.1
done

ip netns exec "$NS_SRV" "$WORK/labserver" -addr "$SRV_IP:$PORT" -truth "$TRUTH" -ready "$WORK/ready" 2>"$WORK/server.log" &
PIDS+=($!)
SERVER_PID=$!
for _ in $(seq 50); do
	[[ -f $WORK/ready ]] && break
	sleep 0.1
done
[[ -f $WORK/ready ]] || { echo "labserver did not start:" >&2; cat "$WORK/server.log" >&2; exit 1; }

echo "running labclient (mode $MODE, seed $SEED)" >&2
in_ns "$NS_CLI" "$WORK/labclient" -addr "$SRV_IP:$PORT" -seed "$SEED" -huge="$HUGE" "${CLIENT_ARGS[@]}"

sleep 1 # let the last mirrored frames (FINs) land
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" || true
kill -INT "$TCPDUMP_PID"
wait "$TCPDUMP_PID" || true
PIDS=()

grep -E "packets (captured|received|dropped)" "$WORK/tcpdump.log" >&2 || true
echo "exchanges: $(wc -l <"$TRUTH")" >&2
echo "wrote $PCAP and $TRUTH"
