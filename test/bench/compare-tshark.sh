#!/usr/bin/env bash
# Times `metlo-appliance collect --pcap` against tshark extracting the request/response
# pairs from the same VXLAN mirror capture, side by side, and prints the ratio.
#
#   test/bench/compare-tshark.sh [CONNS] [EXCHANGES_PER_CONN]   synthetic capture (test/synth)
#   test/bench/compare-tshark.sh --pcap FILE                    any capture, e.g. a lab run
#
# The tshark command is the one issue 2's target is measured against: the pairs (method,
# URI, status), no bodies. The machine may be shared, so the two tools alternate: ROUNDS
# rounds (default 5), each timing metlo-appliance RUNS times (default 10) and tshark
# TSHARK_RUNS times (default 1) with hyperfine; every round gives a ratio of medians, and
# the script prints each round's and their range. ALL=1 also times the three tshark
# extractions of earlier sessions once (docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/../.."

pcap=""
if [[ ${1:-} == --pcap ]]; then
  pcap=${2:?--pcap needs a file}
  shift 2
fi
conns=${1:-600}
per=${2:-40}
rounds=${ROUNDS:-5}
runs=${RUNS:-10}
tshark_runs=${TSHARK_RUNS:-1}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

command -v tshark >/dev/null || { echo "tshark not installed (apt-get install tshark)" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "hyperfine not installed (apt-get install hyperfine)" >&2; exit 1; }
# The binary as shipped (make build).
make -s build BIN="$work/metlo-appliance" >/dev/null
if [[ -z $pcap ]]; then
  pcap=$work/capture.pcap
  go run ./test/synth/synthcap -conns "$conns" -exchanges "$per" -o "$pcap"
fi
[[ -r $pcap ]] || { echo "cannot read $pcap" >&2; exit 1; }

# Both tools must find every pair before their times mean anything. tshark prints one line
# per HTTP message: requests carry the method, responses the status.
ours_cmd="$work/metlo-appliance collect --pcap $pcap --sink jsonl:/dev/null"
tshark_cmd="tshark -r $pcap -Y http -T fields -e http.request.method -e http.request.uri -e http.response.code"
"$work/metlo-appliance" collect --pcap "$pcap" --sink "jsonl:$work/traces.jsonl" 2>/dev/null
$tshark_cmd >"$work/tshark.txt" 2>/dev/null
echo "pairs: metlo-appliance=$(wc -l <"$work/traces.jsonl") traces;" \
  "tshark=$(awk -F'\t' '$1 != ""' "$work/tshark.txt" | wc -l) requests," \
  "$(awk -F'\t' '$3 != ""' "$work/tshark.txt" | wc -l) responses"
echo "machine: $(nproc) CPUs, $(uptime | sed 's/.*load average/load average/')"

ratios=()
for r in $(seq "$rounds"); do
  hyperfine -N --style none --warmup 1 --runs "$runs" "$ours_cmd" --export-csv "$work/ours.csv" >/dev/null
  hyperfine -N --style none --runs "$tshark_runs" "$tshark_cmd" --export-csv "$work/tshark.csv" >/dev/null
  # CSV columns: command,mean,stddev,median,user,system,min,max (seconds).
  ours=$(awk -F, 'NR == 2 {print $4}' "$work/ours.csv")
  theirs=$(awk -F, 'NR == 2 {print $4}' "$work/tshark.csv")
  ratio=$(awk -v a="$theirs" -v b="$ours" 'BEGIN {printf "%.1f", a / b}')
  ratios+=("$ratio")
  printf "round %d: metlo-appliance %6.1f ms (median of %d), tshark %7.1f ms -> %s×\n" \
    "$r" "$(awk -v x="$ours" 'BEGIN {print x * 1000}')" "$runs" "$(awk -v x="$theirs" 'BEGIN {print x * 1000}')" "$ratio"
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{v[NR] = $1} END {
  printf "collect --pcap is %s× – %s× faster (median %s×) than: %s\n", v[1], v[NR], v[int((NR + 1) / 2)], cmd
}' cmd="tshark -r F -Y http -T fields -e http.request.method -e http.request.uri -e http.response.code"
echo "machine after: $(uptime | sed 's/.*load average/load average/')"

if [[ ${ALL:-} == 1 ]]; then
  hyperfine -N --runs 1 "$ours_cmd" \
    "tshark -r $pcap -Y http" \
    "tshark -r $pcap -Y http.response -T fields -e http.response_for.uri -e http.response.code" \
    "tshark -r $pcap -Y http -T fields -e http.request.method -e http.request.full_uri -e http.request.line -e http.response.code -e http.response_for.uri -e http.response.line -e http.file_data"
fi
