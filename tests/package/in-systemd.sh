#!/bin/bash
# Run by check-package.sh inside a container booted with systemd as PID 1
# (podman --systemd=always, --network=none), where the coap2mqtt package
# and Debian's mosquitto are installed: the service as systemd runs it.
# Prints "ok: ..." / "FAIL: ..." lines; exits 1 on any failure.
set -u
ok()  { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
fails=0
now() { date +%s; }

# systemd comes up, starts mosquitto and coap2mqtt (enabled by the package).
end=$(( $(now) + 60 ))
until [ "$(systemctl is-active coap2mqtt)" = active ]; do
    if [ "$(now)" -gt "$end" ]; then
        systemctl status coap2mqtt --no-pager | head -n 20
        journalctl -u coap2mqtt --no-pager | tail -n 20
        echo "FAIL: coap2mqtt.service not active 60 s after boot ($(systemctl is-active coap2mqtt))"
        exit 1
    fi
    sleep 0.5
done
ok "coap2mqtt.service active under systemd (Type=notify: READY=1 came), enabled: $(systemctl is-enabled coap2mqtt)"
user=$(ps -o user= -p "$(systemctl show -P MainPID coap2mqtt)")
[ "$user" = coap2mqtt ] && ok "runs as $user" || bad "runs as '$user', not coap2mqtt"
state=$(mosquitto_sub -h localhost -t coap2mqtt/bridge/state -C 1 -W 15 2>&1)
[ "$state" = online ] && ok "bridge/state on the local broker: online" || bad "bridge/state: '$state'"
end=$(( $(now) + 15 ))
until grep -qx 'mqtt=connected' /var/lib/coap2mqtt/health 2>/dev/null; do
    [ "$(now)" -gt "$end" ] && { bad "state_dir/health never said mqtt=connected: $(cat /var/lib/coap2mqtt/health 2>&1 | tr '\n' ' ')"; break; }
    sleep 0.5
done
grep -qx 'mqtt=connected' /var/lib/coap2mqtt/health 2>/dev/null && ok "state_dir/health: mqtt=connected"

# systemctl reload: ExecReload runs -t, then HUP; same process afterwards.
pid=$(systemctl show -P MainPID coap2mqtt)
echo "meter-0001:hex:00112233445566778899aabbccddeeff" >> /etc/coap2mqtt/psk.keys
if systemctl reload coap2mqtt; then
    [ "$(systemctl show -P MainPID coap2mqtt)" = "$pid" ] && [ "$(systemctl is-active coap2mqtt)" = active ] \
        && ok "systemctl reload: exit 0, same process, still active" || bad "reload changed the process or stopped it"
else
    bad "systemctl reload coap2mqtt failed"
    journalctl -u coap2mqtt --no-pager | tail -n 8
fi

# Purge with the service running and real state on disk.
[ -d /var/lib/private/coap2mqtt/spool ] && ok "state in /var/lib/private/coap2mqtt (DynamicUser=)" \
    || bad "no /var/lib/private/coap2mqtt/spool"
DEBIAN_FRONTEND=noninteractive apt-get purge -y -q coap2mqtt > /tmp/purge.log 2>&1 < /dev/null \
    || { cat /tmp/purge.log; bad "apt-get purge failed"; }
[ "$(systemctl is-active coap2mqtt)" != active ] && ok "purge stopped the service" || bad "still active after purge"
for p in /var/lib/coap2mqtt /var/lib/private/coap2mqtt /etc/coap2mqtt /usr/bin/coap2mqtt; do
    [ -e "$p" ] || [ -L "$p" ] && bad "$p left after purge" || ok "purge removed $p"
done
[ "$fails" -eq 0 ]
