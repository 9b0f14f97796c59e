#!/usr/bin/env bash
# Live capture benchmark: tcpreplay --topspeed pushes a synthetic VXLAN mirror capture into
# a veth whose far end (in its own namespace) is captured by `metlo-appliance collect` with
# each live method in turn; reports the replay rate, what the kernel/rings dropped and how
# many of the exchanges came out as traces. Needs root, tcpreplay, iproute2, ethtool.
#   test/bench/live-replay.sh [CONNS] [EXCHANGES_PER_CONN] [MODES...]
set -euo pipefail
cd "$(dirname "$0")/../.."
conns=${1:-1000}
per=${2:-20}
shift 2 2>/dev/null || shift $#
modes=("$@")
[ ${#modes[@]} -gt 0 ] || modes=(xdp afpacket udp)
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }

work=$(mktemp -d)
ns=lrb$$
cleanup() {
  ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip link del lrb$$a 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/metlo-appliance" ./cmd/metlo-appliance
go run ./test/synth/synthcap -conns "$conns" -exchanges "$per" -o "$work/raw.pcap"
want=$((conns * per))

ip netns add "$ns"
ip link add lrb$$a type veth peer name lrb$$b
ip link set lrb$$b netns "$ns"
ip link set lrb$$a up
ip -n "$ns" link set lrb$$b up
ip -n "$ns" link set lo up
ip -n "$ns" addr add 172.31.0.99/24 dev lrb$$b
ethtool -K lrb$$a tso off gso off gro off >/dev/null 2>&1 || true
# VXLAN adds 50 bytes to full-size inner frames: room for them, as on a cloud ENI.
ip link set lrb$$a mtu 1600
ip -n "$ns" link set lrb$$b mtu 1600
ip netns exec "$ns" ethtool -K lrb$$b tso off gso off gro off >/dev/null 2>&1 || true
mac=$(ip -n "$ns" -j link show lrb$$b | sed -n 's/.*"address":"\([0-9a-f:]*\)".*/\1/p')
# Address the frames to the collector's veth (MAC) and give them valid IPv4 checksums, so
# the kernel's UDP stack accepts them for --capture udp as it would from a real NIC.
tcprewrite --infile="$work/raw.pcap" --outfile="$work/capture.pcap" --enet-dmac="$mac" --fixcsum

printf '%-9s %12s %10s %8s %9s %10s  %s\n' mode replay_pps replay_Mbps traces "of $want" gaps "capture counters"
for mode in "${modes[@]}"; do
  out="$work/$mode.jsonl"
  : >"$out"
  ip netns exec "$ns" "$work/metlo-appliance" collect --capture "$mode" -i lrb$$b \
    --sink "jsonl:$out" --metrics-addr "" --config /dev/null --credentials-file /nonexistent \
    --response-timeout 5s 2>"$work/$mode.log" &
  pid=$!
  for _ in $(seq 50); do grep -qE 'attached|capturing|listening|udp' "$work/$mode.log" 2>/dev/null && break; sleep 0.1; done
  sleep 0.5
  rep=$(tcpreplay --topspeed -i lrb$$a "$work/capture.pcap" 2>&1)
  pps=$(sed -n 's/.*Rated: [0-9.]* Bps, \([0-9.]*\) Mbps, \([0-9.]*\) pps.*/\2/p' <<<"$rep")
  mbps=$(sed -n 's/.*Rated: [0-9.]* Bps, \([0-9.]*\) Mbps.*/\1/p' <<<"$rep")
  last=-1
  for _ in $(seq 60); do
    n=$(wc -l <"$out")
    [ "$n" = "$last" ] && [ "$n" -gt 0 ] && break
    last=$n
    sleep 0.5
  done
  kill -TERM "$pid"
  wait "$pid" || true
  n=$(wc -l <"$out")
  counters=$(sed -n 's/^capture *//p' "$work/$mode.log")
  gaps=$(sed -n 's/^tcp .*gaps=\([0-9]*\).*/\1/p' "$work/$mode.log")
  printf '%-9s %12s %10s %8s %9s %10s  %s\n' "$mode" "$pps" "$mbps" "$n" "$((100 * n / want))%" "$gaps" "$counters"
done
