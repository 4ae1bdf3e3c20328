#!/bin/sh
# Prints the compiler flags that say whether this libcoap has OSCORE
# (RFC 8613): libcoap >= 4.3.2 built with it (Debian 13's 4.3.4 is; Debian
# 12's 4.3.1 has none).  Always -DC2M_LIBCOAP_VERSION="X.Y.Z" (for the
# messages of a build without it), and -DC2M_HAVE_OSCORE=1 when a probe
# program that calls coap_oscore_is_supported() builds, links and says 1.
# Usage: probe-oscore.sh CC PKG      (OSCORE=0 in the environment: never)
cc=${1:-cc}
pkg=${2:-libcoap-3-openssl}
ver=$(pkg-config --modversion "$pkg" 2>/dev/null) || ver=unknown
printf -- "-DC2M_LIBCOAP_VERSION='\"%s\"'" "$ver"
if [ "${OSCORE:-}" = 0 ]; then
    printf ' -DC2M_OSCORE_OFF=1'
    exit 0
fi
case $ver in
    4.3.[01]|4.3.[01][!0-9]*|4.[0-2].*|[0-3].*|unknown) exit 0 ;;
esac
dir=$(mktemp -d) || exit 0
trap 'rm -rf "$dir"' EXIT
cat > "$dir/p.c" <<'C'
#include <coap3/coap.h>
int main(void) { return coap_oscore_is_supported() ? 0 : 1; }
C
# shellcheck disable=SC2046
if $cc -o "$dir/p" "$dir/p.c" $(pkg-config --cflags --libs "$pkg") >/dev/null 2>&1 &&
   "$dir/p"; then
    printf ' -DC2M_HAVE_OSCORE=1'
fi
exit 0
