"""mqtt.json: CBOR (ct 60) and SenML (110/112) readings published as JSON
(DESIGN.md: "A JSON mode converts CBOR and SenML to JSON")."""

import json

import pytest
import c2m


@pytest.fixture
def json_gateway(make_gateway):
    return make_gateway(overrides={"mqtt": {"json": True}})


def test_cbor_notification_as_json(json_gateway, sim, mqtt):
    gw = json_gateway
    topic = gw.topic("industrial-1", "vibration")
    mqtt.subscribe(topic)
    s = sim("industrial", extra_args=["--interval", "200"])
    mqtt.wait_for(topic, lambda m: len(mqtt.received(topic)) >= 3, timeout=15)
    sent = {int(m.group(1)) for m in s.out.find(r"^NOTIFY industrial-1 vibration (\d+)$")}
    for m in mqtt.received(topic):
        doc = json.loads(m.payload)
        assert set(doc) == {"seq", "rms"}, doc
        assert isinstance(doc["seq"], int) and isinstance(doc["rms"], float), doc
        assert doc["seq"] in sent
        assert m.content_type == c2m.ct("application/json"), m


def test_senml_cbor_push_as_json(json_gateway, coap, mqtt):
    gw = json_gateway
    topic = gw.topic("dev-1", "senml")
    mqtt.subscribe(topic)
    # [{0: "t", 2: 1}]: SenML CBOR labels 0 = n, 2 = v (RFC 8428 6).
    r = coap(gw, "dev-1", "ps/senml", method="post", ct=112, payload="%81%A2%00%61t%02%01")
    assert r.code == "2.04", r
    m = mqtt.wait_for(topic, timeout=5)
    assert json.loads(m.payload) == [{"n": "t", "v": 1}], m
    assert m.content_type in c2m.ct_any("application/senml+json", "application/json"), m


def test_senml_json_push_stays_json(json_gateway, coap, mqtt):
    gw = json_gateway
    topic = gw.topic("dev-2", "senml")
    mqtt.subscribe(topic)
    body = '[ {"bn": "urn:dev:2:", "n": "temp", "u": "Cel", "v": 21.5} ]'
    assert coap(gw, "dev-2", "ps/senml", method="post", ct=110, payload=body).code == "2.04"
    m = mqtt.wait_for(topic, timeout=5)
    assert json.loads(m.payload) == json.loads(body)
    assert m.content_type in c2m.ct_any("application/senml+json", "application/json"), m


def test_invalid_cbor_published_as_sent(json_gateway, coap, mqtt):
    gw = json_gateway
    topic = gw.topic("dev-3", "raw")
    mqtt.subscribe(topic)
    assert coap(gw, "dev-3", "ps/raw", method="post", ct=60, payload="%FF%00").code == "2.04"
    m = mqtt.wait_for(topic, timeout=5)
    assert m.payload == b"\xff\x00"
    assert m.content_type == c2m.ct("application/cbor"), m


def test_text_untouched(json_gateway, coap, mqtt):
    gw = json_gateway
    topic = gw.topic("dev-4", "t")
    mqtt.subscribe(topic)
    assert coap(gw, "dev-4", "ps/t", method="post", ct=0, payload="21.5").code == "2.04"
    m = mqtt.wait_for(topic, timeout=5)
    assert (m.payload, m.content_type) == (b"21.5", c2m.ct("text/plain;charset=utf-8"))
