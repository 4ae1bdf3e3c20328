"""coap-client-openssl as an independent device implementation: register,
then push readings with POST|PUT /ps/<path>."""

import pytest

import c2m


def register(coap, gw, ident, links="</valve>;ct=0"):
    r = coap(gw, ident, "rd?ep=%s&lt=120" % ident, method="post", ct=40, payload=links)
    assert r.code == "2.01", r
    return r


def test_con_push_published_qos1(gateway, coap, mqtt):
    register(coap, gateway, "dev-1")
    topic = gateway.topic("dev-1", "temp")
    mqtt.subscribe(topic, qos=1)
    r = coap(gateway, "dev-1", "ps/temp", method="post", ct=0, payload="21.75")
    assert r.code == "2.04", r
    m = mqtt.wait_for(topic, timeout=5)
    assert m.payload == b"21.75"
    assert m.qos == 1
    assert m.content_type == c2m.ct("text/plain;charset=utf-8")
    assert not m.retain


def test_non_push_published_qos0(gateway, coap, mqtt):
    register(coap, gateway, "dev-2")
    topic = gateway.topic("dev-2", "temp")
    mqtt.subscribe(topic, qos=1)
    coap(gateway, "dev-2", "ps/temp", method="put", ct=0, payload="19.0", non=True)
    m = mqtt.wait_for(topic, timeout=5)
    assert (m.payload, m.qos) == (b"19.0", 0)


@pytest.mark.parametrize("ct", sorted(c2m.CONTENT_TYPES))
def test_content_format_to_content_type(gateway, coap, mqtt, ct):
    register(coap, gateway, "dev-3")
    topic = gateway.topic("dev-3", "ct%d" % ct)
    mqtt.subscribe(topic, qos=1)
    payload = {0: "1.5", 40: "</x>", 42: "0x00", 50: '{"a":1}', 60: "%A1%61%01",
               110: '[{"n":"t","v":1}]', 112: "%81%A2%00%61t%02%01"}[ct]
    r = coap(gateway, "dev-3", "ps/ct%d" % ct, method="post", ct=ct, payload=payload)
    assert r.code == "2.04", r
    m = mqtt.wait_for(topic, timeout=5)
    assert m.content_type == c2m.ct(c2m.CONTENT_TYPES[ct]), m


def test_multi_level_path(gateway, coap, mqtt):
    register(coap, gateway, "dev-4")
    topic = gateway.topic("dev-4", "floor1", "room2", "co2")
    mqtt.subscribe(topic)
    assert coap(gateway, "dev-4", "ps/floor1/room2/co2", method="post", ct=0,
                payload="412").code == "2.04"
    assert mqtt.wait_for(topic, timeout=5).payload == b"412"


def test_push_stays_under_own_identity(gateway, coap, mqtt):
    register(coap, gateway, "dev-5")
    everything = gateway.topic("#")
    mqtt.subscribe(everything)
    r = coap(gateway, "dev-5", "ps/dev-6/temp", method="post", ct=0, payload="99")
    assert r.code == "2.04", r
    mqtt.wait_for(gateway.topic("dev-5", "dev-6", "temp"), timeout=5)
    assert not mqtt.received(gateway.topic("dev-6", "#"))


URI_PATH = 11


@pytest.mark.parametrize("segment", ["a+b", "a#", "..", ""])
def test_hostile_path_refused(gateway, coap, mqtt, segment):
    register(coap, gateway, "dev-7")
    mqtt.subscribe(gateway.topic("dev-7", "#"))
    # Raw Uri-Path options: coap-client would normalise ".." in a URI.
    path = [(URI_PATH, seg) for seg in ("ps", "x", segment, "y")]
    r = coap(gateway, "dev-7", "", method="post", ct=0, payload="1", options=path)
    assert "Uri-Path:%s," % segment in r.out, r
    assert r.code is not None and r.code.startswith("4."), r
    # Fence: a good push after it is the first and only reading published.
    assert coap(gateway, "dev-7", "ps/ok", method="post", ct=0, payload="2").code == "2.04"
    mqtt.wait_for(gateway.topic("dev-7", "ok"), timeout=5)
    got = [m.topic for m in mqtt.received(gateway.topic("dev-7", "#"))
           if not m.topic.endswith("/availability")]
    assert got == [gateway.topic("dev-7", "ok")], got


def test_blockwise_push(gateway, coap, mqtt, tmp_path):
    register(coap, gateway, "dev-8")
    body = bytes((i * 7) % 256 for i in range(3000))
    f = tmp_path / "body.bin"
    f.write_bytes(body)
    topic = gateway.topic("dev-8", "blob")
    mqtt.subscribe(topic)
    r = coap(gateway, "dev-8", "ps/blob", method="post", ct=42, file=str(f), block=256)
    assert r.code == "2.04", r
    m = mqtt.wait_for(topic, timeout=10)
    assert m.payload == body
    assert m.content_type == c2m.ct("application/octet-stream")


def test_con_push_during_broker_outage_not_lost(gateway, coap, broker, mqtt_factory,
                                                tmp_path, psk_file):
    """The end-to-end promise: a CON push accepted (empty ACK) while the
    broker is down gets its 2.04 once the reading is safe, and the reading
    reaches the broker."""
    register(coap, gateway, "dev-9")
    topic = gateway.topic("dev-9", "meter")
    watch = mqtt_factory(clean_start=False, session_expiry=600)
    watch.subscribe(topic)
    assert broker.stop() == 0
    push = c2m.CoapClientRun(str(tmp_path), gateway.uri + "/ps/meter", "dev-9",
                             psk_file["dev-9"], method="post", ct=0, payload="1234.5",
                             local=c2m.peer_addr(), wait=40)
    try:
        # The gateway has the reading: either its 2.04 (spooled) or the
        # empty ACK of a separate response to come.
        push.log.wait_for(r"t:ACK c:(0\.00|2\.04)", timeout=10)
        broker.start()
        r = push.wait(timeout=45)
    finally:
        push.kill()
    assert r.code == "2.04", r
    m = watch.wait_for(topic, timeout=20)
    assert m.payload == b"1234.5"
    assert m.qos == 1


def test_push_over_max_payload_refused(make_gateway, coap, mqtt, tmp_path):
    gw = make_gateway(overrides={"coap": {"max_payload": 1024}})
    f = tmp_path / "big.bin"
    f.write_bytes(b"x" * 2000)
    mqtt.subscribe(gw.topic("dev-1", "#"))
    r = coap(gw, "dev-1", "ps/big", method="post", ct=42, file=str(f), block=256)
    assert r.code == "4.13", r
    # Fence: a reading within the limit is the only one published.
    assert coap(gw, "dev-1", "ps/small", method="post", ct=0, payload="1").code == "2.04"
    mqtt.wait_for(gw.topic("dev-1", "small"), timeout=5)
    got = [m.topic for m in mqtt.received(gw.topic("dev-1", "#"))
           if not m.topic.endswith("/availability")]
    assert got == [gw.topic("dev-1", "small")], got


def test_push_without_registration_creates_device(gateway, coap, mqtt):
    avail = gateway.topic("dev-10", "availability")
    mqtt.subscribe(avail)
    r = coap(gateway, "dev-10", "ps/level", method="put", ct=0, payload="7")
    assert r.code == "2.04", r
    mqtt.wait_payload(avail, "online", timeout=5)
