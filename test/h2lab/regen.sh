#!/usr/bin/env bash
# Regenerates the committed HTTP/2 lab captures (root: network namespaces, VXLAN, tc):
#   sudo test/h2lab/regen.sh
# A small run of TestHTTP2Lab (H2LAB_SCALE) keeps its captures and logs in testdata/lab.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
H2LAB_SCALE=${H2LAB_SCALE:-0.02} H2LAB_OUT="$out" go test -count=1 -run '^TestHTTP2Lab$' -v ./test/h2lab/ | grep -E 'streams served|joined|capture:|^(ok|FAIL|---)'
cp "$out/h2.pcap" testdata/lab/h2c.pcap
cp "$out/join.pcap" testdata/lab/h2c_join.pcap
cp "$out/truth.jsonl" testdata/lab/h2c_groundtruth.jsonl
cp "$out/nghttpd.log" testdata/lab/h2c_nghttpd.log
ls -l testdata/lab/h2c*
