"""Resource-directory registration (RFC 9176 style) from two independent
device implementations: coap-client-openssl and the simulator."""

import time

import pytest

import c2m


def register(coap, gw, ident, lt=60, links="</temp>;ct=0", ep=None, **kw):
    return coap(gw, ident, "rd?ep=%s&lt=%d" % (ep or ident, lt), method="post",
                ct=40, payload=links, **kw)


def device_entries(doc):
    """{id: entry} from bridge/devices, whatever its exact shape: a list of
    objects with an id field, or an object keyed by id (maybe wrapped)."""
    if isinstance(doc, dict) and isinstance(doc.get("devices"), (list, dict)):
        doc = doc["devices"]
    out = {}
    if isinstance(doc, list):
        for e in doc:
            if isinstance(e, str):
                out[e] = {}
            elif isinstance(e, dict):
                ident = e.get("id") or e.get("ep") or e.get("name")
                if ident:
                    out[ident] = e
    elif isinstance(doc, dict):
        out = dict(doc)
    return out


def has_devices(*ids):
    def pred(m):
        try:
            entries = device_entries(m.json())
        except ValueError:
            return False
        return all(i in entries for i in ids)
    return pred


def test_register_returns_location(gateway, coap, mqtt, mqtt_factory):
    avail = gateway.topic("dev-1", "availability")
    mqtt.subscribe(avail)
    r = register(coap, gateway, "dev-1")
    assert r.code == "2.01", r
    assert r.options("Location-Path") == ["rd", "dev-1"], r
    mqtt.wait_payload(avail, "online", timeout=5)
    m = mqtt_factory().wait_for(avail, timeout=5)
    assert (m.payload, m.retain) == (b"online", True)


def test_ep_must_equal_identity(gateway, coap, mqtt):
    devices = gateway.topic("bridge", "devices")
    r = register(coap, gateway, "dev-2", ep="dev-3")
    assert r.code == "4.03", r
    # The refused one never shows up; a later good registration is the fence.
    mark = mqtt.mark()
    mqtt.subscribe(devices)
    assert register(coap, gateway, "dev-2").code == "2.01"
    m = mqtt.wait_for(devices, has_devices("dev-2"), timeout=5, start=mark)
    assert "dev-3" not in device_entries(m.json())
    assert not mqtt.received(gateway.topic("dev-3", "availability"))


def test_sim_with_foreign_ep_is_refused(gateway, sim):
    s = sim("hvac", extra_args=["--ep", "hvac-2"])
    m = s.wait_for(r"^(REGISTERED|ERROR) hvac-1 (.*)$", timeout=15)
    assert "4.03" in m.group(2).split(), m.group(0)


def test_deregister(gateway, coap, mqtt):
    avail = gateway.topic("dev-4", "availability")
    mqtt.subscribe(avail)
    assert register(coap, gateway, "dev-4").code == "2.01"
    mqtt.wait_payload(avail, "online", timeout=5)
    # Someone else may not remove dev-4's registration.
    r = coap(gateway, "dev-5", "rd/dev-4", method="delete")
    assert r.code is not None and r.code.startswith("4."), r
    mark = mqtt.mark()
    r = coap(gateway, "dev-4", "rd/dev-4", method="delete")
    assert r.code == "2.02", r
    mqtt.wait_payload(avail, "offline", timeout=5, start=mark)
    assert [x.payload for x in mqtt.received(avail, mark)] == [b"offline"]


def test_lifetime_expiry(gateway, coap, mqtt):
    avail = gateway.topic("dev-6", "availability")
    mqtt.subscribe(avail)
    t0 = time.monotonic()
    assert register(coap, gateway, "dev-6", lt=2).code == "2.01"
    mqtt.wait_payload(avail, "online", timeout=5)
    mqtt.wait_payload(avail, "offline", timeout=8)
    took = time.monotonic() - t0
    assert took >= 1.9, "offline after %.2fs, lifetime was 2 s" % took


def test_refresh_keeps_device_online(gateway, sim, mqtt):
    avail = gateway.topic("hvac-1", "availability")
    mqtt.subscribe(avail)
    s = sim("hvac", extra_args=["--lifetime", "2"])
    s.wait_for(r"^REGISTERED hvac-1 2\.01$", timeout=15)
    mqtt.wait_payload(avail, "online", timeout=5)
    # Three refreshes (at 80 % of 2 s) span more than one lifetime.
    pos = s.mark()
    for _ in range(3):
        _, pos = s.out.wait_line(r"^REGISTERED hvac-1 2\.0[14]$", timeout=5, start=pos)
    assert b"offline" not in [m.payload for m in mqtt.received(avail)]


def test_refresh_by_coap_client(gateway, coap):
    assert register(coap, gateway, "dev-7", lt=30).code == "2.01"
    r = coap(gateway, "dev-7", "rd/dev-7?lt=30", method="post")
    assert r.code == "2.04", r


def test_devices_list(gateway, sim, mqtt, mqtt_factory):
    devices = gateway.topic("bridge", "devices")
    mqtt.subscribe(devices)
    s = sim("meter", count=3)
    for i in (1, 2, 3):
        s.wait_for(r"^REGISTERED meter-%d 2\.01$" % i, timeout=15)
    m = mqtt.wait_for(devices, has_devices("meter-1", "meter-2", "meter-3"), timeout=10)
    entry = device_entries(m.json())["meter-2"]
    res = {r["path"]: r for r in entry["resources"]}
    assert set(res) == {"energy", "power"}, entry
    assert (res["energy"]["ct"], res["power"]["ct"]) == (50, 0), entry
    assert res["energy"]["obs"] and res["power"]["obs"], entry
    assert abs(entry["last_seen"] - time.time()) < 120, entry
    # A newcomer gets it retained.
    late = mqtt_factory()
    m = late.wait_for(devices, timeout=5)
    assert m.retain
    assert has_devices("meter-1", "meter-2", "meter-3")(m), m


@pytest.mark.skipif(not c2m.ipv6_loopback_available(), reason="no ::1")
def test_ipv6_listener(make_gateway, coap, mqtt):
    gw = make_gateway(listen_host="::1")
    avail = gw.topic("dev-8", "availability")
    mqtt.subscribe(avail)
    r = register(coap, gw, "dev-8", local=None)
    assert r.code == "2.01", r
    mqtt.wait_payload(avail, "online", timeout=5)


def test_refused_registrations(gateway, coap):
    """The error answers of DEVICE-API.md's summary table for /rd."""
    cases = [
        ("lifetime below rd.min_lifetime", "rd?ep=dev-9&lt=0", 40, "</t>", "4.00"),
        ("lifetime above rd.max_lifetime", "rd?ep=dev-9&lt=999999999", 40, "</t>", "4.00"),
        ("body not link-format", "rd?ep=dev-9&lt=60", 0, "</t>", "4.15"),
        ("link-format that does not parse", "rd?ep=dev-9&lt=60", 40, "<t;obs", "4.00"),
        ("resource path that is a command topic", "rd?ep=dev-9&lt=60", 40, "</x/set>;obs", "4.00"),
    ]
    for why, path, ct, body, want in cases:
        r = coap(gateway, "dev-9", path, method="post", ct=ct, payload=body)
        assert r.code == want, "%s: %r" % (why, r)


def test_refresh_and_delete_of_unknown_or_foreign_registration(gateway, coap):
    r = coap(gateway, "dev-9", "rd/dev-9", method="post")
    assert r.code == "4.04", r
    assert register(coap, gateway, "dev-10").code == "2.01"
    r = coap(gateway, "dev-9", "rd/dev-10", method="post")
    assert r.code == "4.03", r
    r = coap(gateway, "dev-9", "rd/dev-10", method="delete")
    assert r.code == "4.03", r
    r = coap(gateway, "dev-9", "rd/dev-9", method="delete")
    assert r.code == "4.04", r


def test_ep_defaults_to_identity(gateway, coap, mqtt):
    avail = gateway.topic("dev-9", "availability")
    mqtt.subscribe(avail)
    r = coap(gateway, "dev-9", "rd?lt=60", method="post", ct=40, payload="</t>")
    assert r.code == "2.01", r
    assert r.options("Location-Path") == ["rd", "dev-9"], r
    mqtt.wait_payload(avail, "online", timeout=5)


def test_deleted_device_stays_listed_offline(gateway, coap, mqtt):
    devices = gateway.topic("bridge", "devices")
    mqtt.subscribe(devices)
    assert register(coap, gateway, "dev-10").code == "2.01"
    mqtt.wait_for(devices, has_devices("dev-10"), timeout=5)
    mark = mqtt.mark()
    assert coap(gateway, "dev-10", "rd/dev-10", method="delete").code == "2.02"
    mqtt.wait_payload(gateway.topic("dev-10", "availability"), "offline", timeout=5)
    # Its entry stays (commands still queue for it), marked offline.
    m = mqtt.wait_for(devices, lambda m: has_devices("dev-10")(m) and
                      device_entries(m.json())["dev-10"].get("online") is False,
                      timeout=5, start=mark)
    assert device_entries(m.json())["dev-10"].get("online") is False


@pytest.mark.skipif(not c2m.ipv6_loopback_available(), reason="no ::1")
def test_ipv6_sensor_observed_and_commanded(make_gateway, sim, mqtt):
    gw = make_gateway(listen_host="::1")
    setpoint = gw.topic("hvac-1", "setpoint")
    mqtt.subscribe(setpoint + "/set/result")
    s = sim("hvac", bind=False)            # ::1 is the only v6 loopback address
    s.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=15)
    mqtt.wait_for(gw.topic("hvac-1", "temperature"), timeout=10)
    mqtt.publish(setpoint + "/set", b"22.0")
    s.wait_for(r"^PUT hvac-1 setpoint 4 22\.0$", timeout=10)
    assert mqtt.wait_for(setpoint + "/set/result", timeout=10).json()["code"] == "2.04"


def test_reregistration_replaces_resources(gateway, coap, mqtt):
    devices = gateway.topic("bridge", "devices")
    mqtt.subscribe(devices)

    def paths(m):
        e = device_entries(m.json()).get("dev-9")
        return e and sorted(r["path"] for r in e["resources"])

    assert register(coap, gateway, "dev-9", links="</a>;ct=0,</b>;ct=0").code == "2.01"
    mqtt.wait_for(devices, lambda m: paths(m) == ["a", "b"], timeout=5)
    assert register(coap, gateway, "dev-9", links="</c/d>;ct=50").code == "2.01"
    m = mqtt.wait_for(devices, lambda m: paths(m) == ["c/d"], timeout=5, start=mqtt.mark())
    assert device_entries(m.json())["dev-9"]["resources"][0]["ct"] == 50
