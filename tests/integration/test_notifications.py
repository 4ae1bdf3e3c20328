"""Observe notifications to MQTT: topic, order, QoS by CoAP message type,
content type from the Content-Format, and block-wise bodies."""

import json
import c2m


def seq_of(m):
    return json.loads(m.payload)["seq"]


def test_meter_energy_in_order_qos1_json(gateway, sim, mqtt):
    topic = gateway.topic("meter-1", "energy")
    mqtt.subscribe(topic, qos=1)
    s = sim("meter", extra_args=["--interval", "100"])
    s.wait_for(r"^OBSERVED meter-1 energy$", timeout=15)
    # Ten readings, then check all of them.
    mqtt.wait_for(topic, lambda m: len(mqtt.received(topic)) >= 10, timeout=15)
    msgs = mqtt.received(topic)
    seqs = [seq_of(m) for m in msgs]
    assert all(a < b for a, b in zip(seqs, seqs[1:])), "not strictly increasing: %s" % seqs
    for m in msgs:
        assert m.qos == 1, "CON resource published at QoS %d" % m.qos
        assert m.content_type == c2m.ct("application/json"), m
        assert not m.retain
        assert "kwh" in json.loads(m.payload)
    # What the sensor says it sent is what arrived.
    sent = [int(x.group(1)) for x in s.out.find(r"^NOTIFY meter-1 energy (\d+)$")]
    assert set(seqs) <= set(sent) | {0}, (seqs, sent)


def test_meter_power_text(gateway, sim, mqtt):
    topic = gateway.topic("meter-2", "power")
    mqtt.subscribe(topic, qos=1)
    sim("meter", extra_args=["--first", "2", "--interval", "200"])
    m = mqtt.wait_for(topic, timeout=15)
    assert m.content_type == c2m.ct("text/plain;charset=utf-8"), m
    assert m.qos == 1
    float(m.payload.decode())     # a plain number


def test_hvac_temperature_qos0_text(gateway, sim, mqtt):
    topic = gateway.topic("hvac-1", "temperature")
    mqtt.subscribe(topic, qos=1)
    sim("hvac", extra_args=["--interval", "100"])
    mqtt.wait_for(topic, lambda m: len(mqtt.received(topic)) >= 4, timeout=15)
    msgs = mqtt.received(topic)
    for m in msgs:
        assert m.content_type == c2m.ct("text/plain;charset=utf-8"), m
        float(m.payload.decode())
    # The first is the answer to the gateway's CON GET (piggybacked on its
    # ACK); the NON notifications that follow are QoS 0.
    assert [m.qos for m in msgs[1:]] == [0] * (len(msgs) - 1), msgs


def test_industrial_vibration_cbor(gateway, sim, mqtt):
    topic = gateway.topic("industrial-1", "vibration")
    mqtt.subscribe(topic, qos=1)
    sim("industrial", extra_args=["--interval", "200"])
    mqtt.wait_for(topic, timeout=15)
    m = mqtt.wait_for(topic, timeout=5, start=mqtt.mark())   # a NON notification
    assert m.content_type == c2m.ct("application/cbor"), m
    assert m.qos == 0
    # A CBOR map (major type 5) holding the keys "seq" and "rms".
    assert m.payload[0] >> 5 == 5, m.payload[:16]
    assert b"seq" in m.payload and b"rms" in m.payload


def test_many_sensors_each_on_its_own_topic(gateway, sim, mqtt):
    mqtt.subscribe(gateway.topic("+", "energy"), qos=1)
    sim("meter", count=10, extra_args=["--interval", "300"])
    want = {gateway.topic("meter-%d" % i, "energy") for i in range(1, 11)}
    mqtt.wait_for(gateway.topic("+", "energy"),
                  lambda m: want <= {x.topic for x in mqtt.received(gateway.topic("+", "energy"))},
                  timeout=20)
    by_topic = {}
    for m in mqtt.received(gateway.topic("+", "energy")):
        by_topic.setdefault(m.topic, []).append(seq_of(m))
    for t, seqs in by_topic.items():
        assert all(a < b for a, b in zip(seqs, seqs[1:])), (t, seqs)


def test_blockwise_4k_notification(gateway, sim, mqtt):
    topic = gateway.topic("meter-1", "energy")
    mqtt.subscribe(topic, qos=1)
    sim("meter", extra_args=["--payload-size", "4096", "--interval", "500"])
    msgs = [mqtt.wait_for(topic, timeout=20)]
    msgs.append(mqtt.wait_for(topic, timeout=10, start=mqtt.mark()))
    for m in msgs:
        assert len(m.payload) == 4096, "got %d bytes" % len(m.payload)
        doc = json.loads(m.payload)     # intact: still valid JSON end to end
        assert isinstance(doc["seq"], int)
        assert m.content_type == c2m.ct("application/json")
    assert seq_of(msgs[0]) < seq_of(msgs[1])


def test_silent_resource_registered_again_non_same_token(gateway, sim, mqtt):
    """A resource that stops notifying, on a device that still answers, is
    registered again once it has been silent for several of its intervals:
    with a NON GET (which no other CON to the device can hold up) and the
    same token (RFC 7641 3.3.1), and the answer is published."""
    topic = gateway.topic("hvac-1", "temperature")
    mqtt.subscribe(topic, qos=1)
    # Three readings every 0.5 s, then silence; the gateway learns the pace.
    s = sim("hvac", extra_args=["--interval", "500", "--count-readings", "3"])
    get = r"^OBSERVE_GET hvac-1 temperature (CON|NON) ([0-9a-f]+)$"
    first, pos = s.out.wait_line(get, timeout=15)
    assert first.group(1) == "CON", first.group(0)
    mqtt.wait_for(topic, lambda m: len(mqtt.received(topic)) >= 3, timeout=15)
    mark = mqtt.mark()
    again = s.wait_for(get, timeout=30, start=pos)
    assert again.group(1) == "NON", again.group(0)
    assert again.group(2) == first.group(2), "token changed: %s, then %s" % (
        first.group(2), again.group(2))
    # The device's answer to it (the current value) reaches the broker.
    mqtt.wait_for(topic, timeout=10, start=mark)
