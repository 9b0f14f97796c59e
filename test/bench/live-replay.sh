#!/usr/bin/env bash
# Live capture benchmark: tcpreplay pushes a synthetic VXLAN mirror capture into a veth whose
# far end (in its own namespace) is captured by `metlo-appliance collect` with each live
# method in turn; reports the replay rate, what the kernel/rings dropped, how many of the
# exchanges came out as traces and the collector's CPU time per packet.
# Needs root, tcpreplay, iproute2, ethtool; LOAD=cpu needs stress-ng (or falls back to
# shell busy loops).
#
#   test/bench/live-replay.sh [CONNS] [EXCHANGES_PER_CONN] [MODES...]
#
# Environment:
#   TRIALS=N      runs per mode (default 1)
#   LOAD=cpu      keep every CPU busy (stress-ng --cpu NPROC) while replaying
#   PPS=N         replay at N packets/s instead of --topspeed (CPU time per packet at a fixed rate)
#   STEP="a b c"  RFC 2544 style: replay at each rate in turn (packets/s), stop at the first
#                 trial that loses anything; reports the highest zero-loss rate per mode
#   ARGS="..."    extra `collect` flags (e.g. "--ring-bytes 16777216")
#   BIN=path      a prebuilt metlo-appliance (A/B runs against another commit)
set -euo pipefail
cd "$(dirname "$0")/../.."
conns=${1:-1000}
per=${2:-20}
shift 2 2>/dev/null || shift $#
modes=("$@")
[ ${#modes[@]} -gt 0 ] || modes=(xdp afpacket udp)
trials=${TRIALS:-1}
load=${LOAD:-none}
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }

work=$(mktemp -d)
ns=lrb$$
loadpids=()
stop_load() {
  for p in "${loadpids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${loadpids[@]}"; do wait "$p" 2>/dev/null || true; done
  loadpids=()
}
cleanup() {
  stop_load
  ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip link del lrb$$a 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

start_load() {
  [ "$load" = cpu ] || return 0
  if command -v stress-ng >/dev/null; then
    stress-ng --cpu "$(nproc)" --quiet &
    loadpids+=($!)
  else
    for _ in $(seq "$(nproc)"); do (while :; do :; done) & loadpids+=($!); done
  fi
}

if [ -n "${BIN:-}" ]; then cp "$BIN" "$work/metlo-appliance"; else go build -o "$work/metlo-appliance" ./cmd/metlo-appliance; fi
synth=$(go run ./test/synth/synthcap -conns "$conns" -exchanges "$per" -o "$work/raw.pcap")
frames=$(sed -n 's/.*: \([0-9]*\) frames.*/\1/p' <<<"$synth")
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

# cputicks PID: user+system clock ticks the process has used.
cputicks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# trial MODE RATE: one collector run; prints a result line and returns 1 when anything was lost.
trial() {
  local mode=$1 rate=$2 out="$work/$1.jsonl" log="$work/$1.log" pid rep pps mbps n last t0 t1 lost=0
  : >"$out"
  # shellcheck disable=SC2086
  ip netns exec "$ns" "$work/metlo-appliance" collect --capture "$mode" -i lrb$$b \
    --sink "jsonl:$out" --metrics-addr "" --config /dev/null --credentials-file "" \
    --response-timeout 5s ${ARGS:-} 2>"$log" &
  pid=$!
  for _ in $(seq 50); do grep -qE 'attached|capturing|listening' "$log" 2>/dev/null && break; sleep 0.1; done
  sleep 0.5
  start_load
  t0=$(cputicks "$pid")
  if [ "$rate" = top ]; then
    rep=$(tcpreplay --topspeed -i lrb$$a "$work/capture.pcap" 2>&1)
  else
    rep=$(tcpreplay --pps="$rate" -i lrb$$a "$work/capture.pcap" 2>&1)
  fi
  pps=$(sed -n 's/.*Rated: [0-9.]* Bps, \([0-9.]*\) Mbps, \([0-9.]*\) pps.*/\2/p' <<<"$rep")
  mbps=$(sed -n 's/.*Rated: [0-9.]* Bps, \([0-9.]*\) Mbps.*/\1/p' <<<"$rep")
  last=-1
  for _ in $(seq 120); do
    n=$(wc -l <"$out")
    [ "$n" = "$last" ] && [ "$n" -gt 0 ] && break
    last=$n
    sleep 0.5
  done
  t1=$(cputicks "$pid")
  stop_load
  kill -TERM "$pid"
  wait "$pid" || true
  n=$(wc -l <"$out")
  local counters gaps drops cpu
  counters=$(sed -n 's/^capture *//p' "$log")
  gaps=$(sed -n 's/^tcp .*gaps=\([0-9]*\).*/\1/p' "$log")
  drops=$(grep -oE '(ringbuf_full|kernel_drops|socket_drops|queue_freezes)=[0-9]+' <<<"$counters" | awk -F= '{s+=$2} END {print s+0}')
  cpu=$(awk -v t=$((t1 - t0)) -v hz="$hz" -v f="$frames" 'BEGIN {printf "%.0f", t / hz * 1e9 / f}')
  [ "$n" -ge "$want" ] && [ "$drops" = 0 ] || lost=1
  printf '%-9s %-5s %10s %12s %10s %8s %8s %6s %8s %10s  %s\n' "$mode" "$load" "$rate" "$pps" "$mbps" "$n" \
    "$(awk -v n="$n" -v w="$want" 'BEGIN {printf "%.2f%%", 100 * n / w}')" "${gaps:-?}" "$drops" "$cpu" "$counters"
  return $lost
}

echo "capture: $frames frames, $want exchanges; load: $load; $(nproc) CPUs; $(uptime | sed 's/.*load/load/')"
printf '%-9s %-5s %10s %12s %10s %8s %8s %6s %8s %10s  %s\n' mode load offered replay_pps replay_Mbps traces "of $want" gaps drops "cpu_ns/pkt" "capture counters"
for mode in "${modes[@]}"; do
  if [ -n "${STEP:-}" ]; then
    best=none
    for rate in $STEP; do
      if trial "$mode" "$rate"; then best=$rate; else break; fi
    done
    echo "$mode: highest zero-loss rate $best pps (load $load)"
    continue
  fi
  for _ in $(seq "$trials"); do
    trial "$mode" "${PPS:-top}" || true
  done
done
