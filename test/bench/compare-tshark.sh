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

# tshark three ways: -Y http alone (a summary line per HTTP packet, no pairing), the pairs
# (response -> request URI and status), and the pairs with the request line, response line
# and bodies — the closest to the traces metlo-appliance writes.
ours_cmd="$work/metlo-appliance collect --pcap $work/capture.pcap --sink jsonl:/dev/null"
ts_http="tshark -r $work/capture.pcap -Y http"
ts_pairs="tshark -r $work/capture.pcap -Y http.response -T fields -e http.response_for.uri -e http.response.code"
ts_full="tshark -r $work/capture.pcap -Y http -T fields -e http.request.method -e http.request.full_uri -e http.request.line -e http.response.code -e http.response_for.uri -e http.response.line -e http.file_data"
if command -v hyperfine >/dev/null; then
  hyperfine -N --warmup 1 --runs "${RUNS:-5}" "$ours_cmd" "$ts_http" "$ts_pairs" "$ts_full"
else
  for c in "$ours_cmd" "$ts_http" "$ts_pairs" "$ts_full"; do
    echo "$c"
    # shellcheck disable=SC2086 # the commands are word lists on purpose
    time $c >/dev/null 2>&1
  done
fi
