#!/usr/bin/env bash
# Times `metlo-appliance collect --pcap` against tshark extracting the HTTP/2 streams of
# the same synthetic VXLAN mirror capture (cleartext HTTP/2 with prior knowledge).
#   test/bench/compare-tshark-http2.sh [CONNS] [EXCHANGES_PER_CONN] [STREAMS_IN_FLIGHT]
set -euo pipefail
cd "$(dirname "$0")/../.."
conns=${1:-600}
per=${2:-40}
inflight=${3:-8}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

command -v tshark >/dev/null || { echo "tshark not installed (apt-get install tshark)" >&2; exit 1; }
go build -o "$work/metlo-appliance" ./cmd/metlo-appliance
go run ./test/synth/synthcap -conns "$conns" -exchanges "$per" -http2 "$inflight" -o "$work/capture.pcap"

# Both tools must find every stream before their times mean anything. tshark needs to be
# told the port speaks HTTP/2 (it does not detect prior knowledge on its own).
decode=(-d "tcp.port==8080,http2")
"$work/metlo-appliance" collect --pcap "$work/capture.pcap" --sink "jsonl:$work/traces.jsonl" 2>/dev/null
tshark -r "$work/capture.pcap" "${decode[@]}" -Y 'http2.headers.status' -T fields -e http2.streamid -e http2.headers.status >"$work/tshark.txt" 2>/dev/null
ours=$(wc -l <"$work/traces.jsonl")
# One line per packet; a packet may carry several streams' HEADERS (comma-separated).
theirs=$(cut -f2 "$work/tshark.txt" | tr ',' '\n' | grep -c .)
echo "streams: metlo-appliance=$ours tshark=$theirs (expected $((conns * per)))"

ours_cmd="$work/metlo-appliance collect --pcap $work/capture.pcap --sink jsonl:/dev/null"
ts_h2="tshark -r $work/capture.pcap ${decode[*]} -Y http2"
ts_pairs="tshark -r $work/capture.pcap ${decode[*]} -Y http2.headers.status -T fields -e http2.streamid -e http2.headers.status"
ts_full="tshark -r $work/capture.pcap ${decode[*]} -Y http2 -T fields -e http2.streamid -e http2.headers.method -e http2.headers.path -e http2.headers.status -e http2.data.data"
if command -v hyperfine >/dev/null; then
  hyperfine -N --warmup 1 --runs "${RUNS:-5}" "$ours_cmd" "$ts_h2" "$ts_pairs" "$ts_full"
else
  for c in "$ours_cmd" "$ts_h2" "$ts_pairs" "$ts_full"; do
    echo "$c"
    # shellcheck disable=SC2086 # the commands are word lists on purpose
    time $c >/dev/null 2>&1
  done
fi
