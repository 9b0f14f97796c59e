#!/usr/bin/env bash
# capture.sh — real captures of real HTTP traffic (curl, ab → nginx in network namespaces)
# in the capture formats and packet shapes the collector must read besides the lab's
# Ethernet/VXLAN: `tcpdump -i any` (Linux SLL and SLL2), NFLOG, raw IP from a tun
# interface, TCP Fast Open, IPv4 fragments made by a router, VXLAN whose outer packets the
# kernel fragments (IPv4 and IPv6). tshark is the reference for what each file holds.
#
#   sudo test/formats/capture.sh [-o outdir] [scenario...]
#   scenarios: anyif tfo frag vxlanfrag tun (default: all)
#
# Needs root, iproute2, tcpdump, nginx, curl, ab, nft (nftables) and socat (tun).
# Everything it creates is torn down on exit.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
OUT="$REPO/test/formats/out"
while getopts "o:h" opt; do
	case $opt in
	o) OUT=$OPTARG ;;
	*) sed -n '2,12p' "$0"; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
SCENARIOS=("$@")
[[ ${#SCENARIOS[@]} -gt 0 ]] || SCENARIOS=(anyif tfo frag vxlanfrag tun)
if [[ $EUID -ne 0 ]]; then
	echo "capture.sh needs root (network namespaces, tcpdump)" >&2
	exit 1
fi
for tool in ip tcpdump nginx curl ab; do
	command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d)
chmod 755 "$WORK"
P="fm$(printf '%04d' $((RANDOM % 10000)))"
PIDS=()
NSS=()

cleanup() {
	local rc=$?
	set +e
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
	for ns in "${NSS[@]}"; do ip netns del "$ns" 2>/dev/null; done
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT INT TERM

in_ns() { ip netns exec "$1" "${@:2}"; }
newns() { ip netns add "$1"; NSS+=("$1"); ip -n "$1" link set lo up; }
offload_off() { in_ns "$1" ethtool -K "$2" tso off gso off gro off >/dev/null 2>&1 || true; }

# nginx serves fixed bodies of several sizes; its access log is the ground truth.
start_nginx() { # ns listen-addresses...
	local ns=$1 conf="$WORK/nginx-$1.conf" root="$WORK/www"
	shift
	mkdir -p "$root"
	head -c 300 /dev/zero | tr '\0' 'a' >"$root/small.txt"
	seq 1 700 >"$root/medium.txt"                     # 2.6 KB: two segments
	seq 1 1400 | sed "s/$/ lorem ipsum/" >"$root/big.txt" # 22 KB: many segments
	{
		echo "worker_processes 1; daemon off; pid $WORK/nginx-$ns.pid; error_log $WORK/nginx-$ns.err;"
		echo "events { worker_connections 256; }"
		echo "http { access_log $WORK/access-$SCENARIO.log; client_body_temp_path $WORK/body-$ns;"
		echo "  proxy_temp_path $WORK/p-$ns; fastcgi_temp_path $WORK/f-$ns; uwsgi_temp_path $WORK/u-$ns; scgi_temp_path $WORK/s-$ns;"
		echo "  server {"
		for a in "$@"; do echo "    listen $a fastopen=16;"; done
		echo "    root $root; keepalive_requests 1000;"
		echo "    location /api/ { default_type application/json; return 200 '{\"ok\":true,\"uri\":\"\$uri\"}'; }"
		echo "    location /upload { client_max_body_size 1m; default_type application/json; return 201 '{\"stored\":true}'; }"
		echo "  }"
		echo "}"
	} >"$conf"
	ip netns exec "$ns" nginx -c "$conf" &
	PIDS+=($!)
	for _ in $(seq 50); do
		[[ -f $WORK/nginx-$ns.pid ]] && return 0
		sleep 0.1
	done
	echo "nginx did not start:" >&2
	cat "$WORK/nginx-$ns.err" >&2
	exit 1
}

stop_nginx() { # ns
	local pid
	pid=$(cat "$WORK/nginx-$1.pid")
	kill -QUIT "$pid"
	for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	rm -f "$WORK/nginx-$1.pid"
}

start_tcpdump() { # ns outfile args...
	local ns=$1 out=$2 log="$WORK/tcpdump-$RANDOM.log"
	shift 2
	# Started with ip netns exec itself, not the in_ns function: a backgrounded function is a
	# subshell that ignores SIGINT, and $! would name it rather than tcpdump.
	# --immediate-mode: a TPACKET_V3 block still open at SIGINT would be lost with the
	# packets in it.
	ip netns exec "$ns" tcpdump -n -s 0 -U --immediate-mode -B 32768 -w "$out" "$@" 2>"$log" &
	PIDS+=($!)
	TCPDUMPS+=($!)
	for _ in $(seq 50); do
		grep -q "listening on" "$log" && return 0
		sleep 0.1
	done
	echo "tcpdump did not start:" >&2
	cat "$log" >&2
	exit 1
}

stop_tcpdumps() {
	sleep 1
	for pid in "${TCPDUMPS[@]}"; do kill -INT "$pid"; done
	for pid in "${TCPDUMPS[@]}"; do wait "$pid" || true; done
	TCPDUMPS=()
	grep -h -E "listening on|packets" "$WORK"/tcpdump-*.log >&2 || true
	rm -f "$WORK"/tcpdump-*.log
}
TCPDUMPS=()

# traffic runs the same mix against a base URL: keep-alive requests of every size, a POST
# with a body, a 404, a burst of keep-alive requests from ab.
traffic() { # ns baseurl [curl options...]
	local ns=$1 url=$2
	shift 2
	in_ns "$ns" curl -sS "$@" "$url/small.txt" "$url/medium.txt" "$url/big.txt" "$url/api/users?id=7" "$url/missing" >/dev/null
	in_ns "$ns" curl -sS -o /dev/null "$@" -H 'Content-Type: application/json' --data-binary @"$WORK/www/medium.txt" "$url/upload"
	in_ns "$ns" ab -q -k -n 20 -c 2 "$url/api/items" >/dev/null
}

# Two namespaces joined by a veth: cli 10.210.1.1 / fd10::1, srv 10.210.1.2 / fd10::2.
pair() {
	newns "$P-cli"
	newns "$P-srv"
	ip link add "${P}c" netns "$P-cli" type veth peer name "${P}s" netns "$P-srv"
	ip -n "$P-cli" addr add 10.210.1.1/24 dev "${P}c"
	ip -n "$P-srv" addr add 10.210.1.2/24 dev "${P}s"
	ip -n "$P-cli" addr add fd10::1/64 dev "${P}c" nodad
	ip -n "$P-srv" addr add fd10::2/64 dev "${P}s" nodad
	for e in "$P-cli:${P}c" "$P-srv:${P}s"; do
		offload_off "${e%%:*}" "${e#*:}"
		ip -n "${e%%:*}" link set "${e#*:}" up
	done
}

teardown() {
	for ns in "${NSS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
	NSS=()
}

# anyif: `tcpdump -i any` in the server namespace, as SLL2 and as SLL, and an NFLOG copy of
# the HTTP packets through nftables; includes a request over the server's loopback, which
# `-i any` (and the NFLOG rules) see twice.
scenario_anyif() {
	pair
	start_nginx "$P-srv" 10.210.1.2:8080 "[fd10::2]:8080" 127.0.0.1:8080
	in_ns "$P-srv" nft -f - <<-NFT
		table inet mirror {
			chain in { type filter hook input priority 0; tcp dport 8080 log group 5; }
			chain out { type filter hook output priority 0; tcp sport 8080 log group 5; }
		}
	NFT
	start_tcpdump "$P-srv" "$OUT/sll2.pcap" -i any -y LINUX_SLL2 tcp port 8080
	start_tcpdump "$P-srv" "$OUT/sll.pcap" -i any -y LINUX_SLL tcp port 8080
	start_tcpdump "$P-srv" "$OUT/nflog.pcap" -i nflog:5
	traffic "$P-cli" http://10.210.1.2:8080
	traffic "$P-cli" "http://[fd10::2]:8080"
	in_ns "$P-srv" curl -sS http://127.0.0.1:8080/api/local http://127.0.0.1:8080/small.txt >/dev/null
	stop_tcpdumps
	stop_nginx "$P-srv"
	cp "$WORK/access-$SCENARIO.log" "$OUT/anyif.access.log"
	teardown
}

# tfo: TCP Fast Open between curl and nginx: the first connection fetches a cookie, the
# next ones carry their request in the SYN.
scenario_tfo() {
	pair
	for ns in "$P-cli" "$P-srv"; do in_ns "$ns" sysctl -qw net.ipv4.tcp_fastopen=3; done
	start_nginx "$P-srv" 10.210.1.2:8080 "[fd10::2]:8080"
	start_tcpdump "$P-srv" "$OUT/tfo.pcap" -i "${P}s" tcp port 8080
	for url in http://10.210.1.2:8080 "http://[fd10::2]:8080"; do
		for path in /api/cookie /api/first /api/second; do
			in_ns "$P-cli" curl -sS -o /dev/null --tcp-fastopen "$url$path"
		done
		in_ns "$P-cli" curl -sS -o /dev/null --tcp-fastopen -H 'Content-Type: application/json' --data-binary '{"in":"the syn"}' "$url/upload"
	done
	stop_tcpdumps
	stop_nginx "$P-srv"
	cp "$WORK/access-$SCENARIO.log" "$OUT/tfo.access.log"
	teardown
}

# frag: client and server send without DF (ip_no_pmtu_disc) through a router whose routes
# have a 576-byte MTU (a route MTU, not the device's: a veth drops frames longer than its
# own MTU on receive); the router fragments both directions. Captured on the server's veth
# (requests arrive fragmented) and on the client's (responses arrive fragmented).
scenario_frag() {
	newns "$P-cli"
	newns "$P-rtr"
	newns "$P-srv"
	ip link add "${P}c" netns "$P-cli" type veth peer name "${P}a" netns "$P-rtr"
	ip link add "${P}b" netns "$P-rtr" type veth peer name "${P}s" netns "$P-srv"
	ip -n "$P-cli" addr add 10.210.1.1/24 dev "${P}c"
	ip -n "$P-rtr" addr add 10.210.1.254/24 dev "${P}a"
	ip -n "$P-rtr" addr add 10.210.2.254/24 dev "${P}b"
	ip -n "$P-srv" addr add 10.210.2.2/24 dev "${P}s"
	for e in "$P-cli:${P}c" "$P-rtr:${P}a" "$P-rtr:${P}b" "$P-srv:${P}s"; do
		offload_off "${e%%:*}" "${e#*:}"
		ip -n "${e%%:*}" link set "${e#*:}" up
	done
	ip -n "$P-rtr" route replace 10.210.1.0/24 dev "${P}a" mtu lock 576
	ip -n "$P-rtr" route replace 10.210.2.0/24 dev "${P}b" mtu lock 576
	in_ns "$P-rtr" sysctl -qw net.ipv4.ip_forward=1
	ip -n "$P-cli" route add default via 10.210.1.254
	ip -n "$P-srv" route add default via 10.210.2.254
	for ns in "$P-cli" "$P-srv"; do in_ns "$ns" sysctl -qw net.ipv4.ip_no_pmtu_disc=1; done
	start_nginx "$P-srv" 10.210.2.2:8080
	start_tcpdump "$P-srv" "$OUT/frag_server.pcap" -i "${P}s" ip
	start_tcpdump "$P-cli" "$OUT/frag_client.pcap" -i "${P}c" ip
	traffic "$P-cli" http://10.210.2.2:8080
	stop_tcpdumps
	stop_nginx "$P-srv"
	cp "$WORK/access-$SCENARIO.log" "$OUT/frag.access.log"
	teardown
}

# vxlanfrag: the lab's AWS-style mirror (tc mirred of the server's IPv4 and IPv6 TCP into a
# kernel VXLAN device) over a collector path with a 1280-byte MTU: the kernel fragments every
# outer IPv4 packet longer than that (vxlan_frag4.pcap). (Over IPv6 the kernel's VXLAN never
# fragments: it drops the packet and sends Packet Too Big, so there is no IPv6 twin.)
scenario_vxlanfrag() {
	pair
	newns "$P-col"
	ip link add "${P}t" netns "$P-srv" type veth peer name "${P}k" netns "$P-col"
	ip -n "$P-srv" addr add 10.210.9.1/24 dev "${P}t"
	ip -n "$P-col" addr add 10.210.9.2/24 dev "${P}k"
	for e in "$P-srv:${P}t" "$P-col:${P}k"; do
		offload_off "${e%%:*}" "${e#*:}"
		ip -n "${e%%:*}" link set "${e#*:}" mtu 1280 up
	done
	ip -n "$P-srv" link add vx4 type vxlan id 4242 local 10.210.9.1 remote 10.210.9.2 dstport 4789
	ip -n "$P-srv" link set vx4 mtu 1600 up
	local kmac
	kmac=$(in_ns "$P-col" cat "/sys/class/net/${P}k/address")
	ip -n "$P-srv" neigh replace 10.210.9.2 lladdr "$kmac" dev "${P}t" nud permanent
	start_nginx "$P-srv" 10.210.1.2:8080 "[fd10::2]:8080"
	in_ns "$P-srv" tc qdisc add dev "${P}s" clsact
	local n=0
	for proto in ip ipv6; do
		for dir in ingress egress; do
			n=$((n + 1))
			if [[ $proto == ip ]]; then
				in_ns "$P-srv" tc filter add dev "${P}s" "$dir" pref $n protocol ip u32 match ip protocol 6 0xff action mirred egress mirror dev vx4
			else
				in_ns "$P-srv" tc filter add dev "${P}s" "$dir" pref $n protocol ipv6 u32 match ip6 protocol 6 0xff action mirred egress mirror dev vx4
			fi
		done
	done
	start_tcpdump "$P-col" "$OUT/vxlan_frag4.pcap" -i "${P}k" "udp port 4789 or (ip[6:2] & 0x1fff != 0)"
	traffic "$P-cli" http://10.210.1.2:8080
	traffic "$P-cli" "http://[fd10::2]:8080"
	stop_tcpdumps
	stop_nginx "$P-srv"
	cp "$WORK/access-$SCENARIO.log" "$OUT/vxlanfrag.access.log"
	teardown
}

# tun: an IP-only link (a layer-3 VPN): socat joins a tun interface in each namespace over
# UDP; tcpdump on the tun interface writes raw IP (LINKTYPE_RAW).
scenario_tun() {
	command -v socat >/dev/null || { echo "tun: socat is missing" >&2; exit 1; }
	pair
	ip netns exec "$P-srv" socat UDP-LISTEN:7000,bind=10.210.1.2 TUN:10.210.7.2/24,tun-name=tun7,iff-no-pi,iff-up &
	PIDS+=($!)
	sleep 0.5
	ip netns exec "$P-cli" socat UDP:10.210.1.2:7000,bind=10.210.1.1:7000 TUN:10.210.7.1/24,tun-name=tun7,iff-no-pi,iff-up &
	PIDS+=($!)
	for _ in $(seq 50); do
		in_ns "$P-cli" ip link show tun7 >/dev/null 2>&1 && in_ns "$P-srv" ip link show tun7 >/dev/null 2>&1 && break
		sleep 0.1
	done
	for ns in "$P-cli" "$P-srv"; do
		in_ns "$ns" ip link set tun7 mtu 1400
		in_ns "$ns" ip -6 addr add "fd17::$([[ $ns == "$P-cli" ]] && echo 1 || echo 2)/64" dev tun7 nodad
	done
	start_nginx "$P-srv" 10.210.7.2:8080 "[fd17::2]:8080"
	start_tcpdump "$P-srv" "$OUT/rawip.pcap" -i tun7
	traffic "$P-cli" http://10.210.7.2:8080
	traffic "$P-cli" "http://[fd17::2]:8080"
	stop_tcpdumps
	stop_nginx "$P-srv"
	cp "$WORK/access-$SCENARIO.log" "$OUT/tun.access.log"
	teardown
}

for SCENARIO in "${SCENARIOS[@]}"; do
	echo "== $SCENARIO" >&2
	"scenario_$SCENARIO"
done
ls -l "$OUT" >&2
