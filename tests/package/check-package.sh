#!/bin/bash
# The Debian package check (issue 17, item 2), run by "make test" through
# "make package-check".
#
# 1. Builds coap2mqtt_*.deb with "dpkg-buildpackage -b -us -uc" inside a
#    clean debian:bookworm-slim container whose only packages are
#    build-essential, lintian and what debian/control's Build-Depends
#    names (apt-get build-dep): so Build-Depends is proven complete.  That
#    build image is kept, tagged with a hash of the Build-Depends field, and
#    made again only when it changes.  lintian must find no errors.
# 2. Installs the .deb with apt in another clean bookworm container and
#    checks what an operator gets: the binary, the unit (enabled), the man
#    pages, the coap2mqtt user, a private empty psk.keys, and the unit's own
#    binary answering -t on the shipped configuration with exit 0 (as root
#    and as the service user).
# 3. Changes /etc/coap2mqtt/coap2mqtt.conf and psk.keys, upgrades to a
#    package of a higher version (built in step 1 too): both are kept, with
#    no conffile prompt (stdin is /dev/null, so a prompt would fail).
# 4. Purges: binary, unit link, /etc/coap2mqtt and the state directory gone.
# 5. Boots a container with systemd as PID 1 (no network), Debian's mosquitto
#    and the package installed: the unit is active (READY=1 came), runs as
#    coap2mqtt, bridge/state is online on the local broker, state_dir/health
#    says connected, "systemctl reload" works, and a purge with the service
#    running stops it and removes /var/lib/private/coap2mqtt too
#    (tests/package/in-systemd.sh).
#
# The source is the working tree's tracked files as they are now
# (uncommitted changes included, untracked files not).
# Prints "SKIP: ..." and exits 0 only where podman cannot run at all (not
# root, podman not installable, containers cannot start here); any other
# failure exits 1.  Log: build/package/run.log; the .debs: build/package/.
#
# Environment:
#   PACKAGE_TIMEOUT   bound on each container's run, seconds (default 1200)
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
fresh=$(cd "$here/../fresh" && pwd)
run_timeout=${PACKAGE_TIMEOUT:-1200}
CHECK_NAME=package CHECK_TITLE="package check"
. "$fresh/common.sh"

root=$(git -C "$here" rev-parse --show-toplevel 2>/dev/null) \
    || fail "$here is not in a git checkout"
out=$root/build/package
mkdir -p "$out"
log=$out/run.log
: > "$log"

[ "$(id -u)" -eq 0 ] || skip "needs root (rootful podman, as the fresh-box check)"

t_start=$(now_ms)

# --- podman and the base image (the fresh-box check's helper) ---------------
ensure_base_image
if ! err=$(timeout -k 10 120 podman run --rm --network=host "$image" true 2>&1); then
    skip "podman cannot start a container from $image: $(printf '%s\n' "$err" | tail -n 1)"
fi

work=$(mktemp -d /var/tmp/coap2mqtt-package.XXXXXX)
names=()
cleanup() {
    for n in "${names[@]}"; do podman rm -f -t 2 "$n" >/dev/null 2>&1; done
    [ -z "${sysd_image:-}" ] || podman rmi -f "$sysd_image" >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT; trap 'exit 143' TERM

# --- the source: tracked files as they are in the working tree ---------------
mkdir -p "$work/src/coap2mqtt" "$work/out"
( cd "$root" && git ls-files -z | while IFS= read -r -d '' f; do
      [ -e "$f" ] && printf '%s\0' "$f"; done |
  tar --null -T - -cf - ) | tar -C "$work/src/coap2mqtt" -xf - \
    || fail "could not copy the working tree"
rm -f "$out"/*.deb "$out"/*.changes "$out"/*.buildinfo

# --- 1. the build image, then the build ------------------------------------
t0=$(now_ms)
hash=$(sed -n '/^Build-Depends:/,/^[^ ]/{/^Build-Depends:/p;/^ /p}' "$root/debian/control" |
       sha256sum | cut -c1-12)
build_image=localhost/coap2mqtt-pkgbuild:$hash
reused=" (reused)"
if ! podman image exists "$build_image"; then
    reused=""
    say "making the build image $build_image (build-essential, lintian, apt-get build-dep)"
    n=coap2mqtt-pkgbuild-$$; names+=("$n")
    if ! timeout -k 10 "$run_timeout" podman run --name "$n" --network=host \
            -v "$work/src:/src:ro" "$image" bash -c '
            set -e
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -q
            apt-get install -y -q --no-install-recommends build-essential lintian
            apt-get build-dep -y -q --no-install-recommends /src/coap2mqtt
            rm -rf /var/lib/apt/lists/*' >> "$log" 2>&1 < /dev/null; then
        show_tail 40; fail "could not install the build dependencies (Build-Depends of debian/control)"
    fi
    podman commit -q "$n" "$build_image" >> "$log" 2>&1 || fail "podman commit of the build image failed"
    podman rm -f "$n" >/dev/null 2>&1
fi
t_image=$(( $(now_ms) - t0 ))

# Two builds from one tree: the package as it is, then the same with a
# higher version (a changelog entry on top) for the upgrade test.
t0=$(now_ms)
say "dpkg-buildpackage -b -us -uc in a clean container, lintian"
if ! timeout -k 10 "$run_timeout" podman run --rm --network=host \
        -v "$work/src:/src:ro" -v "$work/out:/out" "$build_image" bash -c '
        set -e
        cp -a /src/coap2mqtt /build
        cd /build
        dpkg-buildpackage -b -us -uc
        echo "@@lintian"
        lintian --fail-on error --tag-display-limit 0 ../coap2mqtt_*.changes
        echo "@@lintian-ok"
        cp ../*.deb ../*.changes ../*.buildinfo /out/
        v=$(dpkg-parsechangelog -S Version)
        { printf "coap2mqtt (%s+upgrade1) unstable; urgency=medium\n\n  * The package check'"'"'s upgrade.\n\n -- coap2mqtt maintainers <coap2mqtt@example.org>  %s\n\n" \
              "$v" "$(date -R)"; cat debian/changelog; } > debian/changelog.new
        mv debian/changelog.new debian/changelog
        echo "@@upgrade-build"
        dpkg-buildpackage -b -us -uc > /dev/null
        mkdir -p /out/upgrade && cp ../coap2mqtt_*+upgrade1_*.deb /out/upgrade/' >> "$log" 2>&1 < /dev/null; then
    show_tail 40
    grep -q '^@@lintian$' "$log" && ! grep -q '^@@lintian-ok' "$log" && fail "lintian found errors (above)"
    fail "dpkg-buildpackage failed (above)"
fi
t_build=$(( $(now_ms) - t0 ))
cp "$work"/out/*.deb "$work"/out/*.changes "$out"/ 2>/dev/null
deb=$(cd "$work/out" && ls coap2mqtt_*.deb 2>/dev/null | head -n 1)
up=$(cd "$work/out/upgrade" && ls coap2mqtt_*.deb 2>/dev/null | head -n 1)
[ -n "$deb" ] && [ -n "$up" ] || fail "dpkg-buildpackage made no coap2mqtt_*.deb"
lint=$(sed -n '/^@@lintian$/,/^@@lintian-ok/p' "$log" | grep '^[WIP]:')
say "built $deb ($(du -k "$work/out/$deb" | cut -f1) KiB); lintian: no errors, $(printf '%s' "$lint" | grep -c '^W:') warnings"
[ -z "$lint" ] || printf '%s\n' "$lint" | sed 's/^/  lintian /'

# --- 2-4. install, upgrade, purge in a clean container ----------------------
# Each check prints "ok: ..." or "FAIL: ..."; the script stops at the first
# failure of a step whose later checks depend on it.
t0=$(now_ms)
say "apt-get install ./$deb in a clean $image; -t; upgrade keeps the changed configuration; purge"
inner='
set -u
export DEBIAN_FRONTEND=noninteractive
ok()   { echo "ok: $*"; }
bad()  { echo "FAIL: $*"; fails=$((fails + 1)); }
die()  { echo "FAIL: $*"; exit 1; }
fails=0
conf=/etc/coap2mqtt/coap2mqtt.conf
apt-get update -q > /dev/null || die "apt-get update"
apt-get install -y -q --no-install-recommends "/out/$DEB" < /dev/null || die "apt-get install ./$DEB"

# The unit'"'"'s own binary, on the shipped configuration.
bin=$(sed -n "s/^ExecStart=\([^ ]*\) .*/\1/p" /lib/systemd/system/coap2mqtt.service)
[ "$bin" = /usr/bin/coap2mqtt ] && ok "unit ExecStart=$bin" || bad "unit ExecStart is \"$bin\""
"$bin" -V
"$bin" -t -c "$conf"; rc=$?
[ $rc = 0 ] && ok "coap2mqtt -t on the shipped configuration: exit 0" || die "coap2mqtt -t on the shipped configuration: exit $rc"
runuser -u coap2mqtt -- "$bin" -t -c "$conf"; rc=$?
[ $rc = 0 ] && ok "as user coap2mqtt too" || bad "coap2mqtt -t as user coap2mqtt: exit $rc"
getent passwd coap2mqtt > /dev/null && ok "system user coap2mqtt" || bad "no user coap2mqtt"
st=$(stat -c "%a %U:%G" /etc/coap2mqtt/psk.keys)
[ "$st" = "600 coap2mqtt:coap2mqtt" ] && ok "psk.keys $st" || bad "psk.keys is $st"
dpkg-query -W -f="\${Conffiles}\n" coap2mqtt | grep -q " $conf " && ok "$conf is a conffile" || bad "$conf is not a conffile"
dpkg -L coap2mqtt | grep -q "^/etc/coap2mqtt/psk.keys$" && bad "psk.keys is shipped (a known key)" || ok "psk.keys not shipped"
[ -L /etc/systemd/system/multi-user.target.wants/coap2mqtt.service ] && ok "service enabled" || bad "service not enabled"
for m in /usr/share/man/man8/coap2mqtt.8.gz /usr/share/man/man5/coap2mqtt.conf.5.gz; do
    dpkg -L coap2mqtt | grep -qx "$m" && ok "$m" || bad "no $m"
done

# An operator'"'"'s changes, then an upgrade.
sed -i "s/^  client_id = \"coap2mqtt\";/  client_id = \"gw-hall-3\";/" "$conf"
grep -q "gw-hall-3" "$conf" || die "could not change $conf"
echo "meter-0001:hex:00112233445566778899aabbccddeeff" >> /etc/coap2mqtt/psk.keys
install -d -o coap2mqtt -g coap2mqtt -m 0700 /var/lib/coap2mqtt/spool
echo state > /var/lib/coap2mqtt/spool/000001.seg
apt-get install -y -q --no-install-recommends "/out/upgrade/$UP" < /dev/null || die "upgrade to $UP (a conffile prompt?)"
dpkg-query -W -f="\${Version}\n" coap2mqtt | grep -q "+upgrade1$" && ok "upgraded to $(dpkg-query -W -f="\${Version}" coap2mqtt)" || bad "not upgraded"
grep -q "gw-hall-3" "$conf" && ok "changed $conf kept on upgrade" || bad "$conf lost its change on upgrade"
[ -e "$conf.dpkg-dist" ] && bad "$conf.dpkg-dist left" || true
grep -q "^meter-0001:" /etc/coap2mqtt/psk.keys && ok "psk.keys kept on upgrade" || bad "psk.keys lost on upgrade"
[ -f /var/lib/coap2mqtt/spool/000001.seg ] && ok "state kept on upgrade" || bad "state lost on upgrade"
"$bin" -t -c "$conf" && ok "coap2mqtt -t after the upgrade: exit 0" || bad "coap2mqtt -t after the upgrade"

# Purge.
apt-get purge -y -q coap2mqtt < /dev/null || die "apt-get purge"
for p in /usr/bin/coap2mqtt /etc/coap2mqtt /var/lib/coap2mqtt /lib/systemd/system/coap2mqtt.service \
         /etc/systemd/system/multi-user.target.wants/coap2mqtt.service; do
    [ -e "$p" ] || [ -L "$p" ] && bad "$p left after purge" || ok "purge removed $p"
done
dpkg-query -W -f="\${db:Status-Status}\n" coap2mqtt 2>/dev/null | grep -q installed && bad "still known to dpkg" || ok "dpkg forgot coap2mqtt"
getent passwd coap2mqtt > /dev/null && echo "note: the coap2mqtt system user stays after purge (Debian practice)"
echo "@@fails $fails"
[ $fails = 0 ]
'
timeout -k 10 "$run_timeout" podman run --rm --network=host -e DEB="$deb" -e UP="$up" \
    -v "$work/out:/out:ro" "$image" bash -c "$inner" > "$work/install.log" 2>&1 < /dev/null
rc=$?
t_install=$(( $(now_ms) - t0 ))
cat "$work/install.log" >> "$log"
grep -E '^(ok|FAIL|note): ' "$work/install.log" | sed 's/^/  /'
timings="build image $(secs "$t_image") s$reused, two builds + lintian $(secs "$t_build") s, install/upgrade/purge $(secs "$t_install") s"
if [ "$rc" != 0 ]; then
    grep -q '^FAIL: ' "$work/install.log" || show_tail 40
    say "timings: $timings"
    fail "the installed package did not pass (exit $rc; log: $log)"
fi

# --- 5. under systemd -------------------------------------------------------
# The service as an operator gets it: booted with systemd as PID 1 next to
# Debian's mosquitto, with no network but the container's own loopback.
t0=$(now_ms)
say "under systemd: install systemd, mosquitto and ./$deb, boot /sbin/init without a network, run tests/package/in-systemd.sh"
sysd_image=localhost/coap2mqtt-pkgsysd:$$
n=coap2mqtt-pkgsysd-$$; names+=("$n")
if ! timeout -k 10 "$run_timeout" podman run --name "$n" --network=host -e DEB="$deb" \
        -v "$work/out:/out:ro" "$image" bash -c '
        set -e
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q > /dev/null
        apt-get install -y -q --no-install-recommends systemd systemd-sysv procps \
            mosquitto mosquitto-clients "/out/$DEB"
        rm -rf /var/lib/apt/lists/*' >> "$log" 2>&1 < /dev/null; then
    show_tail 40; fail "could not install systemd, mosquitto and $deb"
fi
podman commit -q "$n" "$sysd_image" >> "$log" 2>&1 || fail "podman commit failed"
podman rm -f "$n" >/dev/null 2>&1
n=coap2mqtt-pkgsysd-run-$$; names+=("$n")
# --privileged: the unit's sandbox (PrivateUsers=, PrivateIPC=, mount
# namespaces) needs systemd to hold every capability, as PID 1 on a real
# box does.  Without it the service starts, but "systemctl reload" fails:
# ExecReload cannot join the service's IPC namespace ("Failed to set up
# mount namespacing: .../dev/mqueue: Operation not permitted", 226/NAMESPACE).
podman run -d --name "$n" --privileged --network=none --systemd=always \
    -v "$here/in-systemd.sh:/in-systemd.sh:ro" "$sysd_image" /sbin/init >> "$log" 2>&1 \
    || { podman rmi -f "$sysd_image" >/dev/null 2>&1; show_tail 40; fail "could not boot systemd in a container"; }
timeout -k 10 300 podman exec "$n" bash /in-systemd.sh > "$work/systemd.log" 2>&1
rc=$?
podman rm -f -t 2 "$n" >/dev/null 2>&1
podman rmi -f "$sysd_image" >/dev/null 2>&1
t_systemd=$(( $(now_ms) - t0 ))
cat "$work/systemd.log" >> "$log"
grep -E '^(ok|FAIL): ' "$work/systemd.log" | sed 's/^/  /'
timings="$timings; under systemd $(secs "$t_systemd") s; total $(secs $(( $(now_ms) - t_start ))) s"
if [ "$rc" != 0 ]; then
    grep -q '^FAIL: ' "$work/systemd.log" || tail -n 30 "$work/systemd.log"
    say "timings: $timings"
    fail "the service under systemd did not pass (exit $rc; log: $log)"
fi
say "ok: $deb builds, installs, answers -t, keeps the changed configuration on upgrade, purges, runs under systemd"
say "timings: $timings"
