#!/bin/sh
# Makes podman usable on this box and gives it a local debian:<suite>-slim
# base image built from the Debian package mirror: no image registry is
# reachable here, so "podman pull" is not an option.  Idempotent: an image
# already present is reused, and packages already installed are not asked for.
#
# Usage: tests/fresh/podman-base-image.sh [bookworm|trixie]   (as root)
#   prints the image's name on its last line; about a minute the first time.
# Exit status: 0 ready, 2 podman could not be installed (apt-get failed),
#              3 podman cannot start a container here (e.g. this runs inside
#                an unprivileged container): the reason is on stderr,
#              1 anything else (debootstrap or podman import failed).
#
# The project's copy of the logic in the team's podman-base-image.sh: a clean
# clone (CI) must not depend on files outside the repository.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
suite=${1:-bookworm}
tag=docker.io/library/debian:$suite-slim
: "${CONTAINERS_CONF:=$here/containers.conf}"
export CONTAINERS_CONF
say() { printf 'podman-base-image: %s\n' "$*" >&2; }

[ "$(id -u)" -eq 0 ] || { say "must run as root (apt-get, debootstrap, rootful podman)"; exit 2; }

start=$(date +%s)
need=""
for p in podman debootstrap runc fuse-overlayfs newuidmap; do
    command -v "$p" >/dev/null 2>&1 || need="$need $p"
done
if [ -n "$need" ]; then
    say "installing podman debootstrap runc uidmap fuse-overlayfs (missing:$need)"
    export DEBIAN_FRONTEND=noninteractive
    if ! { timeout 900 apt-get -o DPkg::Lock::Timeout=600 update -qq &&
           timeout 1500 apt-get -o DPkg::Lock::Timeout=600 install -y -qq podman debootstrap runc uidmap fuse-overlayfs; } \
           > /tmp/coap2mqtt-podman-install.log 2>&1; then
        tail -n 15 /tmp/coap2mqtt-podman-install.log >&2
        say "apt-get could not install podman (log: /tmp/coap2mqtt-podman-install.log)"
        exit 2
    fi
    say "podman installed ($(( $(date +%s) - start )) s)"
fi

# Can podman start a container here at all?  Asked before the minute of
# debootstrap, with a root file system of this box's /usr/bin/true and the
# libraries it loads.
probe=$(mktemp -d /var/tmp/coap2mqtt-probe.XXXXXX)
for f in /usr/bin/true $(ldd /usr/bin/true | grep -o '/[^ ]*'); do
    mkdir -p "$probe$(dirname "$f")" && cp "$f" "$probe$f"
done
if ! err=$(timeout -k 10 120 podman run --rm --network=host --rootfs "$probe" /usr/bin/true 2>&1); then
    rm -rf "$probe"
    say "podman cannot start a container here: $(printf '%s\n' "$err" | grep -m 1 'Error' || printf '%s\n' "$err" | tail -n 1)"
    exit 3
fi
rm -rf "$probe"

# One builder at a time; the second finds the image the first made.
exec 9> /tmp/coap2mqtt-podman-base-image.lock
flock -w 900 9 || { say "another build of $tag holds the lock for 15 min"; exit 1; }

if podman image exists "$tag"; then
    say "$tag already present"
    echo "$tag"
    exit 0
fi

mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
[ -n "$mirror" ] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null)
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian
root=$(mktemp -d /var/tmp/coap2mqtt-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
start=$(date +%s)
say "debootstrap --variant=minbase $suite from $mirror"
if ! timeout 900 debootstrap --variant=minbase "$suite" "$root" "$mirror" \
        > /tmp/coap2mqtt-debootstrap.log 2>&1; then
    tail -n 15 /tmp/coap2mqtt-debootstrap.log >&2
    say "debootstrap failed (log: /tmp/coap2mqtt-debootstrap.log)"
    exit 1
fi
# Like the official image: the suite, its updates and its security archive
# (debootstrap writes only "$suite main"), apt's lists and caches emptied.
sec=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -- '-security' | head -n 1)
[ -n "$sec" ] || sec=http://deb.debian.org/debian-security
rm -f "$root/etc/apt/sources.list"
cat > "$root/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $sec
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
cat > "$root/etc/apt/apt.conf.d/docker-clean" <<'CLEAN'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
CLEAN
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
if ! tar -C "$root" -c . | podman import -q --change 'CMD ["/bin/bash"]' - "$tag" >/dev/null; then
    say "podman import of the $suite root file system failed"
    exit 1
fi
say "built $tag ($(( $(date +%s) - start )) s)"
echo "$tag"
