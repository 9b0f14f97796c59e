#!/usr/bin/env bash
# regen.sh — regenerate every committed capture in testdata/lab from fresh lab runs.
# Needs root. Usage: sudo test/lab/regen.sh [seed]
set -euo pipefail
SEED=${1:-1}
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
DEST="$REPO/testdata/lab"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# --no-huge: the committed captures carry the 200 KiB download, the 70 KiB upload and the
# 1 MiB gzip body, but not the uncompressed 1 MiB transfers (size budget).
"$SCRIPT_DIR/run.sh" -m vxlan -s "$SEED" -o "$TMP" --no-huge
"$SCRIPT_DIR/run.sh" -m raw -s "$SEED" -o "$TMP" --no-huge
mkdir -p "$DEST"
install -m 0644 "$TMP/vxlan.pcap" "$DEST/vxlan.pcap"
install -m 0644 "$TMP/vxlan.groundtruth.jsonl" "$DEST/groundtruth.jsonl"
install -m 0644 "$TMP/raw.pcap" "$DEST/raw.pcap"
install -m 0644 "$TMP/raw.groundtruth.jsonl" "$DEST/raw_groundtruth.jsonl"
(cd "$REPO" && go run ./test/lab/derive -in "$DEST/vxlan.pcap" -out "$DEST" -seed "$SEED" \
	-only geneve,geneve_ip,vxlan_in_geneve,vxlan_ipv6,vlan,reordered,dual_eni,pcapng)
ls -l "$DEST"
