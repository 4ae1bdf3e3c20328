#!/usr/bin/env bash
# bench/resumption.sh - DTLS session resumption against the gateway: bytes
# and datagrams on the wire for a full PSK handshake and for a resumed one
# (RFC 5077 session ticket), counted by nftables on loopback, with
# OpenSSL's s_client as the device (libcoap 4.3.1's own client cannot
# resume: it keeps no session across coap sessions).  Root (nft).
#   bench/resumption.sh [ROUNDS]     (default 5; prints one line per kind)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${1:-5}
DIR=$(mktemp -d /tmp/c2m-resume.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
KEY=00112233445566778899aabbccddeeff
TABLE=c2m_resume_$$
cleanup() { kill "$GW" 2>/dev/null || true; nft delete table inet "$TABLE" 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
printf 'dev-1:hex:%s\n' "$KEY" >"$DIR/psk.keys"; chmod 600 "$DIR/psk.keys"
cat >"$DIR/gw.conf" <<CONF
coap = { listen = [ "127.0.0.1:$PORT" ]; psk_file = "$DIR/psk.keys"; };
state_dir = "$DIR/state";
mqtt = { host = "127.0.0.1"; port = 1; };
CONF
"$ROOT/build/coap2mqtt" -c "$DIR/gw.conf" >"$DIR/gw.log" 2>&1 & GW=$!
sleep 1
count() {   # kind, s_client args...: one handshake, then "packets bytes" each way
  local kind=$1; shift
  nft delete table inet "$TABLE" 2>/dev/null || true
  nft add table inet "$TABLE"
  nft add chain inet "$TABLE" out '{ type filter hook output priority 0; }'
  nft add rule inet "$TABLE" out udp dport "$PORT" counter
  nft add rule inet "$TABLE" out udp sport "$PORT" counter
  echo | timeout 10 openssl s_client -dtls1_2 -connect "127.0.0.1:$PORT" -psk_identity dev-1 \
    -psk "$KEY" "$@" >"$DIR/$kind.out" 2>&1 || true
  grep -qE "^(New|Reused)," "$DIR/$kind.out" || { echo "$kind: no handshake" >&2; exit 1; }
  grep -oE "^(New|Reused)" "$DIR/$kind.out" | head -1 | tr '\n' ' '
  nft list table inet "$TABLE" | awk '/counter/ { printf "%s %s ", $(NF-2), $NF }'
  echo
}
for r in $(seq "$ROUNDS"); do
  count full -sess_out "$DIR/sess.pem"
  count resumed -sess_in "$DIR/sess.pem"
done | python3 -c '
import sys, statistics
rows = {"New": [], "Reused": []}
for line in sys.stdin:
    k, cp, cb, sp, sb = line.split()
    rows[k].append((int(cp), int(cb), int(sp), int(sb)))
for k, name in (("New", "full handshake"), ("Reused", "resumed (session ticket)")):
    if not rows[k]:
        print("%s: none" % name); continue
    m = [statistics.median(x[i] for x in rows[k]) for i in range(4)]
    print("%-26s device->gw %d datagrams %d bytes, gw->device %d datagrams %d bytes, total %d bytes (IP, median of %d, close_notify included)"
          % (name, m[0], m[1], m[2], m[3], m[1] + m[3], len(rows[k])))
'
