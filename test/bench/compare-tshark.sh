#!/usr/bin/env bash
# Times `metlo-appliance collect --pcap` against `tshark -Y http` extracting the same
# request/response pairs from the same synthetic VXLAN mirror capture.
#   test/bench/compare-tshark.sh [CONNS] [EXCHANGES_PER_CONN]
set -euo pipefail
cd "$(dirname "$0")/../.."
conns=${1:-600}
per=${2:-40}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

command -v tshark >/dev/null || { echo "tshark not installed (apt-get install tshark)" >&2; exit 1; }
go build -o "$work/metlo-appliance" ./cmd/metlo-appliance
go run ./test/synth/synthcap -conns "$conns" -exchanges "$per" -o "$work/capture.pcap"

# Both tools must find every pair before their times mean anything.
"$work/metlo-appliance" collect --pcap "$work/capture.pcap" --sink "jsonl:$work/traces.jsonl" 2>/dev/null
tshark -r "$work/capture.pcap" -Y http.response -T fields -e http.response_for.uri -e http.response.code >"$work/tshark.txt" 2>/dev/null
ours=$(wc -l <"$work/traces.jsonl")
theirs=$(wc -l <"$work/tshark.txt")
echo "pairs: metlo-appliance=$ours tshark=$theirs (expected $((conns * per)))"

if command -v hyperfine >/dev/null; then
  hyperfine --warmup 1 --runs "${RUNS:-5}" \
    "$work/metlo-appliance collect --pcap $work/capture.pcap --sink jsonl:$work/out.jsonl" \
    "tshark -r $work/capture.pcap -Y http.response -T fields -e http.response_for.uri -e http.response.code"
else
  time "$work/metlo-appliance" collect --pcap "$work/capture.pcap" --sink "jsonl:$work/out.jsonl" 2>/dev/null
  time tshark -r "$work/capture.pcap" -Y http.response -T fields -e http.response_for.uri -e http.response.code >/dev/null 2>&1
fi
