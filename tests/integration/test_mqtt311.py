"""MQTT 3.1.1 brokers: a real RabbitMQ node (3.10 refuses MQTT v5) and the
gateway with mqtt.protocol "auto" (its default) and "5".  The rest of the
suite runs again on 3.1.1 against mosquitto (C2M_MQTT_PROTOCOL=3.1.1 in
make test); this file covers what only a 3.1.1-only broker shows."""

import json

import pytest

import c2m
import rabbitmq

pytestmark = pytest.mark.skipif(
    not rabbitmq.available(),
    reason="SKIP: rabbitmq-server not installed (make deps installs it)")


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory):
    node = rabbitmq.Node(str(tmp_path_factory.mktemp("rabbitmq")))
    node.start()
    yield node
    node.stop()


# The suite's fixtures (make_gateway, sim, mqtt, ...) take this broker
# instead of mosquitto; their MQTT clients speak 3.1.1 to it
# (Node.mqtt_protocol).
@pytest.fixture
def broker(rabbit):
    return rabbit


def test_auto_falls_back_to_311_and_everything_works(make_gateway, sim, mqtt):
    gw = make_gateway()     # awaits bridge/state "online" through RabbitMQ
    gw.log.wait_for(r"closed the connection on an MQTT 5 CONNECT; trying 3\.1\.1",
                    timeout=1)
    gw.log.wait_for(r"mqtt: connected to .* \(MQTT 3\.1\.1", timeout=1)
    energy = gw.topic("meter-1", "energy")
    setpoint = gw.topic("hvac-1", "setpoint")
    mqtt.subscribe(gw.topic("+", "availability"))
    mqtt.subscribe(energy)
    mqtt.subscribe(setpoint)
    mqtt.subscribe(setpoint + "/set/result")
    sim("meter", bind="127.0.31.1")
    s = sim("hvac", bind="127.0.31.2")
    mqtt.wait_for(gw.topic("meter-1", "availability"), lambda m: m.payload == b"online",
                  timeout=15)
    # Readings in order, at QoS 1 (CON notifications), without properties.
    mqtt.wait_for(energy, lambda m: json.loads(m.payload)["seq"] >= 3, timeout=15)
    got = mqtt.received(energy)
    seqs = [json.loads(m.payload)["seq"] for m in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    assert all(m.qos == 1 for m in got), got
    # A command reaches the device and its result comes back.
    s.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=15)
    mark = mqtt.mark()
    mqtt.publish(setpoint + "/set", b"21.5")
    res = mqtt.wait_for(setpoint + "/set/result", timeout=15, start=mark).json()
    assert res["code"] == "2.04", res
    s.wait_for(r"^PUT hvac-1 setpoint \d+ 21\.5", timeout=5)
    m = mqtt.wait_for(setpoint, lambda m: m.payload.startswith(b"21.5"), timeout=10,
                      start=mark)
    assert m.qos == 1


def test_protocol_5_on_a_311_only_broker_says_why(make_gateway):
    """Pinned to v5, the gateway does not fall back: it keeps trying, and the
    log names the cause and the setting."""
    gw = make_gateway(overrides={"mqtt": {"protocol": "5"}}, wait=False)
    gw.log.wait_for(r"closed the connection on an MQTT 5 CONNECT before any CONNACK"
                    r".*mqtt\.protocol", timeout=20)
    assert gw.running()
    assert not gw.log.find(r"mqtt: connected to")


def test_protocol_311_skips_the_v5_attempt(make_gateway, mqtt):
    gw = make_gateway(overrides={"mqtt": {"protocol": "3.1.1"}})
    gw.log.wait_for(r"mqtt: connected to .* \(MQTT 3\.1\.1", timeout=1)
    assert not gw.log.find(r"MQTT 5 CONNECT")
