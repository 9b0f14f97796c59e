#!/bin/sh
# Install metlo-appliance into DESTDIR (default: this machine): the binary, systemd units,
# image default config, sysctls and the metlo system user; then enable the units.
# Used by the Packer build on the image and by the install test in a scratch root:
#   DESTDIR=/tmp/root BIN=bin/metlo-appliance packer/scripts/install.sh
set -eu

here=$(cd "$(dirname "$0")" && pwd)
DESTDIR=${DESTDIR:-}
BIN=${BIN:-$here/../../bin/metlo-appliance}
FILES=${FILES:-$here/../files}
root=${DESTDIR:-/}

[ -x "$BIN" ] || { echo "install.sh: binary $BIN missing (run make build)" >&2; exit 1; }

install -D -m 0755 "$BIN" "$DESTDIR/usr/bin/metlo-appliance"
install -D -m 0755 "$FILES/set-mtu.sh" "$DESTDIR/usr/lib/metlo-appliance/set-mtu"
install -D -m 0644 "$FILES/config.yaml" "$DESTDIR/usr/share/metlo-appliance/config.yaml"
install -D -m 0644 "$FILES/sysctl.d/60-metlo-appliance.conf" "$DESTDIR/usr/lib/sysctl.d/60-metlo-appliance.conf"
install -D -m 0644 "$FILES/sysusers.d/metlo-appliance.conf" "$DESTDIR/usr/lib/sysusers.d/metlo-appliance.conf"
units=""
for unit in "$FILES"/systemd/*; do
	name=$(basename "$unit")
	install -D -m 0644 "$unit" "$DESTDIR/usr/lib/systemd/system/$name"
	if grep -q '^\[Install\]' "$unit"; then
		units="$units $name"
	fi
done

# The metlo system user runs every unit; the collector gets its capabilities from systemd.
if command -v systemd-sysusers >/dev/null 2>&1; then
	systemd-sysusers --root="$root" "$DESTDIR/usr/lib/sysusers.d/metlo-appliance.conf"
elif ! grep -q '^metlo:' "$DESTDIR/etc/passwd"; then
	useradd --root "$root" --system --user-group --home-dir /var/lib/metlo-appliance \
		--no-create-home --shell /usr/sbin/nologin --comment metlo-appliance metlo
fi
uid=$(awk -F: '$1 == "metlo" { print $3 }' "$DESTDIR/etc/passwd")
gid=$(awk -F: '$1 == "metlo" { print $3 }' "$DESTDIR/etc/group")
if [ -z "$uid" ] || [ -z "$gid" ]; then
	echo "install.sh: user metlo was not created" >&2
	exit 1
fi

# Rendered at boot by metlo-appliance-config.service (running as metlo): 0750, files 0600.
install -d -m 0750 -o "$uid" -g "$gid" "$DESTDIR/etc/metlo-appliance"
install -d -m 0750 -o "$uid" -g "$gid" "$DESTDIR/var/lib/metlo-appliance"

# shellcheck disable=SC2086 # $units is a list of unit names without spaces
if [ -n "$DESTDIR" ]; then
	systemctl --root="$DESTDIR" enable $units
else
	systemctl enable $units
	systemctl daemon-reload 2>/dev/null || true
fi
echo "metlo-appliance installed into $root:$units"
