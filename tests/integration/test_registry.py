"""The device registry (issue 12, item 11): records of devices that are
gone are forgotten and freed after rd.forget_after, a change of one device
is published on its own retained topic <base>/bridge/devices/<id> while the
full <base>/bridge/devices list is debounced (mqtt.devices_interval), and
plain CoAP (no authentication) holds at most rd.max_unauthenticated
entries, so it cannot lock authenticated devices out of the registry."""

import socket
import time

import pytest

import c2m
import rawcoap
import sec


def register(coap, gw, ident, lt=60, links="</t>;ct=0"):
    return coap(gw, ident, "rd?ep=%s&lt=%d" % (ident, lt), method="post", ct=40,
                payload=links)


def plain_gateway(make_gateway, rd=None, coap=None, mqtt=None):
    port = c2m.free_port(socket.SOCK_DGRAM)
    overrides = {"coap": dict(coap or {}, plain_listen=["127.0.0.1:%d" % port])}
    if rd:
        overrides["rd"] = rd
    if mqtt:
        overrides["mqtt"] = mqtt
    gw = make_gateway(overrides=overrides)
    gw.plain_port = port
    return gw


def plain_register(gw, ep, lt=60):
    """POST /rd?ep=<ep> over plain CoAP from a fresh address (a session of
    its own); the response PDU, or None."""
    client = rawcoap.Client("127.0.0.1", gw.plain_port, local=c2m.peer_addr())
    try:
        return client.register(ep, lifetime=lt)
    finally:
        client.close()


def device_topic(gw, ident):
    return gw.topic("bridge", "devices", ident)


def stats_until(mqtt, gw, pred, timeout=10):
    return sec.stats(mqtt, gw, pred, timeout=timeout)


# --------------------------------------------------------------------------
# per-device topics, the debounced list

def test_change_publishes_the_device_topic(make_gateway, coap, mqtt, mqtt_factory):
    """Each registration publishes <base>/bridge/devices/<id> (retained, that
    device's JSON) at once; the full list does not follow every change
    (mqtt.devices_interval at its default, 30 s)."""
    gateway = make_gateway(overrides={"mqtt": {"devices_interval": 30}})
    ids = ["dev-%d" % i for i in range(1, 7)]
    lst = gateway.topic("bridge", "devices")
    mqtt.subscribe(lst)
    mqtt.subscribe(device_topic(gateway, "+"))
    start = mqtt.mark()
    for ident in ids:
        assert register(coap, gateway, ident, links="</temp>;obs;ct=0").code == "2.01"
    for ident in ids:
        m = mqtt.wait_for(device_topic(gateway, ident),
                          lambda m: m.payload and m.json().get("online") is True,
                          timeout=5, start=start)
        doc = m.json()
        assert doc["id"] == ident and doc["registered"] is True, doc
        assert [r["path"] for r in doc["resources"]] == ["temp"], doc
        assert abs(doc["last_seen"] - time.time()) < 60, doc
    # Six registrations within a few seconds: the whole list went out at
    # most once (the first change after a quiet spell), not per change.
    lists = [m for m in mqtt.received(lst, start) if not m.retain]   # live ones
    assert len(lists) <= 1, "bridge/devices published %d times for %d changes" % (
        len(lists), len(ids))
    # Retained: a newcomer gets one device's record without the list.
    late = mqtt_factory()
    m = late.wait_for(device_topic(gateway, "dev-3"), timeout=5)
    assert m.retain and m.json()["id"] == "dev-3", m


def test_devices_list_debounced(make_gateway, coap, mqtt):
    """With mqtt.devices_interval = 2 the list goes out at most once per
    2 s while devices keep registering, and then lists all of them."""
    gw = make_gateway(overrides={"mqtt": {"devices_interval": 2}})
    ids = ["dev-%d" % i for i in range(1, 9)]
    lst = gw.topic("bridge", "devices")
    mqtt.subscribe(lst)
    start = mqtt.mark()
    t0 = time.monotonic()
    for ident in ids:
        assert register(coap, gw, ident).code == "2.01"
    took = time.monotonic() - t0

    def lists_all(m):
        return {e["id"] for e in m.json()} >= set(ids)
    mqtt.wait_for(lst, lists_all, timeout=10, start=start)
    # Live publications only: the retained copy handed over at the
    # subscription may have been made just before it.
    got = [m for m in mqtt.received(lst, start) if not m.retain]
    assert len(got) <= 2 + int(took / 2), (len(got), took)
    gaps = [b.received - a.received for a, b in zip(got, got[1:])]
    assert all(g >= 1.5 for g in gaps), gaps


# --------------------------------------------------------------------------
# forgetting

@pytest.mark.timeout(60)
def test_forgotten_device_is_freed_and_cleared(make_gateway, coap, mqtt, mqtt_factory):
    """rd.forget_after = 2: a device whose registration expired (lt=1) is
    forgotten 2 s later: its record freed (bridge/stats devices back to 0,
    devices_forgotten counts it), its retained per-device topic and
    availability cleared (an empty retained message).  A device with a
    command waiting for it is kept until the command is gone."""
    gw = make_gateway(overrides={"rd": {"forget_after": 2}, "commands": {"ttl": 5}})
    mqtt.subscribe(gw.topic("+", "availability"))
    mqtt.subscribe(device_topic(gw, "+"))
    replies = "test-replies/registry"
    mqtt.subscribe(replies)
    start = mqtt.mark()
    t0 = time.monotonic()
    assert register(coap, gw, "dev-1", lt=1).code == "2.01"
    assert register(coap, gw, "dev-2", lt=1).code == "2.01"
    # A command for dev-2, asleep (coap-client is gone with its session),
    # 5 s to live (commands.ttl).
    stats_until(mqtt, gw, lambda d: d["sessions"] == 0)
    mqtt.publish(gw.topic("dev-2", "t", "set"), b"1", response_topic=replies)
    mqtt.wait_payload(gw.topic("dev-1", "availability"), "offline", timeout=5, start=start)
    mqtt.wait_for(device_topic(gw, "dev-1"), lambda m: m.payload == b"",
                            timeout=10, start=start)
    took = time.monotonic() - t0
    assert took >= 2.9, "forgotten %.2f s after registering (lt 1 + forget 2)" % took
    mqtt.wait_for(gw.topic("dev-1", "availability"), lambda m: m.payload == b"",
                  timeout=5, start=start)
    doc = stats_until(mqtt, gw, lambda d: sec.counter(d, "devices_forgotten") >= 1)
    # dev-2 is kept while its command waits.
    assert doc["devices"] == 1, doc
    assert not [m for m in mqtt.received(device_topic(gw, "dev-2"), start) if m.payload == b""]
    # The command expires, then dev-2 goes too.
    mqtt.wait_for(replies, timeout=10, start=start)
    mqtt.wait_for(device_topic(gw, "dev-2"), lambda m: m.payload == b"", timeout=10,
                  start=start)
    doc = stats_until(mqtt, gw, lambda d: d["devices"] == 0 and
                      sec.counter(d, "devices_forgotten") == 2)
    # A newcomer finds no retained record of either.
    late = mqtt_factory()
    late.subscribe(device_topic(gw, "+"))
    late.subscribe(gw.topic("+", "availability"))
    late.subscribe(gw.topic("bridge", "state"))
    late.wait_for(gw.topic("bridge", "state"), timeout=5)
    assert late.received(device_topic(gw, "+")) == []
    assert late.received(gw.topic("+", "availability")) == []
    # A forgotten device comes back as a new one.
    assert register(coap, gw, "dev-1", lt=60).code == "2.01"
    mqtt.wait_for(device_topic(gw, "dev-1"), lambda m: m.payload and m.json()["online"],
                  timeout=5, start=start)


# --------------------------------------------------------------------------
# plain CoAP holds only its share

def test_plain_coap_flood_cannot_lock_out_psk_devices(make_gateway, coap, mqtt):
    """rd.max_devices = 6 and the default share for plain CoAP (half of it):
    ten plain-CoAP ids cannot take the whole registry; PSK devices still
    register, and each plain refusal is a 5.03 with Max-Age, counted."""
    gw = plain_gateway(make_gateway, rd={"max_devices": 6})
    codes = []
    for i in range(10):
        r = plain_register(gw, "lab-%d" % i)
        assert r is not None, "no answer to plain registration %d" % i
        codes.append(r.code)
        if r.code != "2.01":
            assert r.code == "5.03", r
            assert r.uint_option(rawcoap.MAX_AGE) > 0, r
    for ident in ("dev-1", "dev-2", "dev-3"):
        r = register(coap, gw, ident)
        assert r.code == "2.01", "%s locked out after a plain-CoAP flood %s: %r" % (
            ident, codes, r)
    accepted = codes.count("2.01")
    assert 0 < accepted < 6, codes
    stats_until(mqtt, gw, lambda d: sec.counter(
        d, "registrations_refused_unauthenticated") == 10 - accepted)


@pytest.mark.timeout(90)
def test_plain_coap_share_is_configured_and_freed(make_gateway, coap, mqtt):
    """rd.max_unauthenticated = 2: exactly two plain-CoAP ids fit; one of
    them may register again; once they are forgotten the share is free."""
    gw = plain_gateway(make_gateway, rd={"max_devices": 4, "max_unauthenticated": 2,
                                         "forget_after": 1},
                       coap={"session_timeout": 10})
    assert plain_register(gw, "lab-a", lt=2).code == "2.01"
    assert plain_register(gw, "lab-b", lt=2).code == "2.01"
    r = plain_register(gw, "lab-c")
    assert r.code == "5.03", r
    # Already registered: a re-registration is not a new entry.
    assert plain_register(gw, "lab-a", lt=2).code == "2.01"
    assert register(coap, gw, "dev-1").code == "2.01"
    assert register(coap, gw, "dev-2").code == "2.01"
    # Both expire (lt 2), their sessions idle out (10 s), then are forgotten.
    stats_until(mqtt, gw, lambda d: sec.counter(d, "devices_forgotten") >= 2
                and d["devices"] == 2, timeout=30)
    assert plain_register(gw, "lab-c").code == "2.01"


@pytest.mark.timeout(90)
def test_plain_coap_flood_is_forgotten(make_gateway, mqtt):
    """300 plain-CoAP ids, each from an address of its own, registered for
    1 s: once their sessions idle out (coap.session_timeout = 10) every one
    is forgotten (rd.forget_after = 1) and the share is free again.
    libcoap 4.3.1 can lose its own wake-up while freeing many idle sessions
    at once; then the rest of them, and their records, would stay."""
    n = 300
    gw = plain_gateway(make_gateway, rd={"max_devices": 1000, "forget_after": 1},
                       coap={"session_timeout": 10, "max_request_rate": 0})
    codes = set()
    for i in range(n):
        c = rawcoap.Client("127.0.0.1", gw.plain_port,
                           local="127.%d.%d.%d" % (150 + i // 62500, i // 250 % 250,
                                                   i % 250 + 1))
        try:
            r = c.register("flood-%d" % i, lifetime=1)
            codes.add(r.code if r else None)
        finally:
            c.close()
    assert codes == {"2.01"}, codes
    try:
        stats_until(mqtt, gw, lambda d: d["devices"] == 0 and d["sessions"] == 0,
                    timeout=40)
    except c2m.Timeout:
        doc = mqtt.received(gw.topic("bridge", "stats"))[-1].json()
        pytest.fail("not all forgotten: devices %d, sessions %d, forgotten %d" % (
            doc["devices"], doc["sessions"], sec.counter(doc, "devices_forgotten")))


@pytest.mark.timeout(60)
def test_forgotten_certificate_id_stays_owned(make_gateway, tmp_path, mqtt):
    """Item 7 across forgetting: once an X.509 device's record is freed,
    plain CoAP still may not register its id (4.03), nor take its share."""
    pki = sec.Pki(str(tmp_path / "pki"))
    pki.gateway = pki.issue("gateway", "/CN=coap2mqtt-gateway", dns=["gateway.test"])
    gw = plain_gateway(make_gateway, rd={"forget_after": 1},
                       coap={"ca_file": pki.ca_crt, "cert_file": pki.gateway.cert,
                             "key_file": pki.gateway.key})
    dev = pki.issue("meter-x9", "/CN=meter-x9")
    r = sec.cert_client("%s/rd?ep=meter-x9&lt=1" % gw.uri, dev, local=c2m.peer_addr(),
                        **sec.register_links("</valve>;ct=0"))
    assert r.code == "2.01", r
    stats_until(mqtt, gw, lambda d: sec.counter(d, "devices_forgotten") >= 1 and
                d["devices"] == 0)
    r = plain_register(gw, "meter-x9")
    assert r.code == "4.03", "plain CoAP took a forgotten certificate id: %r" % r
    assert plain_register(gw, "lab-9").code == "2.01"
