"""MQTT commands to devices: /set -> CON PUT, /get -> GET, results, MQTT v5
request/response, unknown devices, block-wise bodies, sleeping devices and
the gateway not hearing its own publications."""

import json
import uuid

import pytest

import c2m


def ready_hvac(gateway, sim, mqtt, extra=()):
    """hvac-1 registered and its setpoint observed (initial value seen)."""
    setpoint = gateway.topic("hvac-1", "setpoint")
    mqtt.subscribe(setpoint)
    mqtt.subscribe(setpoint + "/set/result")
    s = sim("hvac", extra_args=list(extra))
    s.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=15)
    mqtt.wait_for(setpoint, timeout=10)
    return s, setpoint


def test_set_round_trip(gateway, sim, mqtt):
    s, setpoint = ready_hvac(gateway, sim, mqtt)
    mark, smark = mqtt.mark(), s.mark()
    mqtt.publish(setpoint + "/set", b"23.5")
    s.wait_for(r"^PUT hvac-1 setpoint 4 23\.5$", timeout=10, start=smark)
    res = mqtt.wait_for(setpoint + "/set/result", timeout=10, start=mark)
    doc = res.json()
    assert doc["code"] == "2.04", doc
    assert isinstance(doc["rtt_ms"], (int, float)) and 0 <= doc["rtt_ms"] < 10000, doc
    m = mqtt.wait_for(setpoint, timeout=10, start=mark)
    assert float(m.payload) == 23.5, m
    assert m.qos == 1       # setpoint notifications are CON


@pytest.mark.mqtt5("Response Topic, Correlation Data")
def test_set_with_response_topic_and_correlation(gateway, sim, mqtt):
    s, setpoint = ready_hvac(gateway, sim, mqtt)
    resp = "test-replies/%s" % uuid.uuid4().hex
    corr = uuid.uuid4().bytes
    mqtt.subscribe(resp)
    mark = mqtt.mark()
    mqtt.publish(setpoint + "/set", b"18.0", response_topic=resp, correlation_data=corr)
    r = mqtt.wait_for(resp, timeout=10, start=mark)
    assert r.json()["code"] == "2.04", r
    assert r.prop("CorrelationData") == corr, r.properties
    # Without a response topic the result goes to /set/result again; being
    # later from the same publisher, it also proves the first result was
    # not published there as well.
    mqtt.publish(setpoint + "/set", b"19.0")
    mqtt.wait_for(setpoint + "/set/result", timeout=10, start=mark)
    assert len(mqtt.received(setpoint + "/set/result", mark)) == 1
    s.wait_for(r"^PUT hvac-1 setpoint 4 18\.0$", timeout=1)


def test_get_publishes_current_value(gateway, sim, mqtt):
    # Readings only every 60 s, so the value seen after /get is its answer.
    s, setpoint = ready_hvac(gateway, sim, mqtt, extra=["--interval", "60000"])
    mqtt.publish(setpoint + "/set", b"24.0")
    mqtt.wait_for(setpoint + "/set/result", timeout=10)
    mqtt.wait_for(setpoint, lambda m: float(m.payload) == 24.0, timeout=10)
    mark = mqtt.mark()
    humidity = gateway.topic("hvac-1", "humidity")
    mqtt.subscribe(humidity)
    mqtt.publish(setpoint + "/get", b"")
    m = mqtt.wait_for(setpoint, timeout=10, start=mark)
    assert float(m.payload) == 24.0
    assert m.content_type == c2m.ct("text/plain;charset=utf-8")


def test_command_to_unknown_device(gateway, mqtt):
    topic = gateway.topic("nosuch-9", "setpoint", "set")
    mqtt.subscribe(topic + "/result")
    mqtt.publish(topic, b"1")
    doc = mqtt.wait_for(topic + "/result", timeout=10).json()
    assert "error" in doc and "code" not in doc, doc
    assert isinstance(doc["error"], str) and doc["error"]


def test_invalid_command_topics_ignored_safely(gateway, sim, mqtt):
    """Hostile topics (empty levels, '..') must neither crash the gateway
    nor reach a device; a valid command afterwards still works."""
    s, setpoint = ready_hvac(gateway, sim, mqtt)
    smark = s.mark()
    for bad in ("hvac-1//set", "hvac-1/../setpoint/set", "/set", "hvac-1/set"):
        mqtt.publish(gateway.topic(*bad.split("/")), b"99")
    mqtt.publish(setpoint + "/set", b"20.5")
    s.wait_for(r"^PUT hvac-1 setpoint 4 20\.5$", timeout=10, start=smark)
    assert not s.out.find(r"^PUT .* 99$", smark)
    assert gateway.running()


def test_blockwise_2k_command(gateway, sim, mqtt):
    config = gateway.topic("industrial-1", "config")
    mqtt.subscribe(config)
    mqtt.subscribe(config + "/set/result")
    s = sim("industrial", extra_args=["--interval", "60000"])
    s.wait_for(r"^OBSERVED industrial-1 config$", timeout=15)
    filler = 2048 - len('{"pad":""}')
    body = json.dumps({"pad": "".join(chr(ord("a") + i % 26) for i in range(filler))},
                      separators=(",", ":")).encode()
    assert len(body) == 2048
    mark, smark = mqtt.mark(), s.mark()
    mqtt.publish(config + "/set", body)
    s.wait_for(r"^PUT industrial-1 config 2048 ", timeout=15, start=smark)
    assert mqtt.wait_for(config + "/set/result", timeout=10, start=mark).json()["code"] == "2.04"
    # The device notifies its new value: the same 2048 bytes come back.
    m = mqtt.wait_for(config, lambda m: len(m.payload) == 2048, timeout=10, start=mark)
    assert m.payload == body
    assert m.content_type == c2m.ct("application/json")


def test_sleeping_device_gets_command_on_wake(gateway, sim, mqtt):
    setpoint = gateway.topic("hvac-1", "setpoint")
    mqtt.subscribe(setpoint + "/set/result")
    s = sim("hvac", extra_args=["--lifetime", "30", "--sleep-after", "2",
                                "--sleep-for", "4"])
    s.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=15)
    smark = s.mark()
    s.wait_for(r"^SLEEP hvac-1$", timeout=10, start=smark)
    mark = mqtt.mark()
    mqtt.publish(setpoint + "/set", b"17.5")
    _, after_wake = s.out.wait_line(r"^WAKE hvac-1$", timeout=10, start=smark)
    # Delivered after it woke up, not lost while it slept.
    s.wait_for(r"^PUT hvac-1 setpoint 4 17\.5$", timeout=15, start=after_wake)
    assert not [l for l in s.out.lines[smark:after_wake] if l.startswith("PUT ")]
    assert mqtt.wait_for(setpoint + "/set/result", timeout=10, start=mark).json()["code"] == "2.04"


@pytest.mark.mqtt5("Response Topic")
def test_gateway_ignores_its_own_publications(make_gateway, sim, mqtt):
    """A requester may name a command topic as its MQTT v5 Response Topic
    (allowed here by mqtt.response_topic_prefix; under the base topic it is
    refused by default): the gateway then publishes its result on a topic
    it subscribes to.  With No Local that is not a command (else the
    result JSON would be PUT to the device, whose answer would be published
    there again, ...)."""
    gateway = make_gateway(overrides={"mqtt": {"response_topic_prefix": c2m.BASE + "/hvac-1"}})
    s, setpoint = ready_hvac(gateway, sim, mqtt)
    smark, mark = s.mark(), mqtt.mark()
    mqtt.subscribe(setpoint + "/set")
    mqtt.publish(setpoint + "/set", b"23.0", response_topic=setpoint + "/set",
                 correlation_data=b"loop?")
    s.wait_for(r"^PUT hvac-1 setpoint 4 23\.0$", timeout=10, start=smark)
    # The result lands on the command topic.  Once the broker routed it to
    # us it also routed it to the gateway, were it subscribed without No
    # Local; so a later command from us is the fence: a reaction to the
    # result would have been queued before it.
    res = mqtt.wait_for(setpoint + "/set", lambda m: m.payload.startswith(b"{"),
                        timeout=10, start=mark)
    assert res.json()["code"] == "2.04" and res.prop("CorrelationData") == b"loop?", res
    mqtt.publish(setpoint + "/set", b"22.5")
    s.wait_for(r"^PUT hvac-1 setpoint 4 22\.5$", timeout=10, start=smark)
    puts = [m.string for m in s.out.find(r"^PUT hvac-1 ", smark)]
    assert puts == ["PUT hvac-1 setpoint 4 23.0", "PUT hvac-1 setpoint 4 22.5"], puts


def test_device_error_code_is_the_result(gateway, sim, mqtt):
    """temperature is read-only on the simulated hvac: its 4.05 answer is
    the result, with the round-trip time."""
    s, setpoint = ready_hvac(gateway, sim, mqtt)
    topic = gateway.topic("hvac-1", "temperature", "set")
    mqtt.subscribe(topic + "/result")
    mqtt.publish(topic, b"30")
    doc = mqtt.wait_for(topic + "/result", timeout=10).json()
    assert doc["code"].startswith("4."), doc
    assert isinstance(doc["rtt_ms"], (int, float)), doc


def test_commands_delivered_in_order(gateway, sim, mqtt):
    s, setpoint = ready_hvac(gateway, sim, mqtt)
    smark = s.mark()
    values = ["20.1", "20.2", "20.3", "20.4", "20.5"]
    for v in values:
        mqtt.publish(setpoint + "/set", v.encode())
    s.wait_for(r"^PUT hvac-1 setpoint 4 20\.5$", timeout=15, start=smark)
    got = [m.string.split()[-1] for m in s.out.find(r"^PUT hvac-1 setpoint ", smark)]
    assert got == values
    mqtt.wait_for(setpoint + "/set/result",
                  lambda m: len(mqtt.received(setpoint + "/set/result")) >= 5, timeout=10)
    assert [m.json().get("code") for m in mqtt.received(setpoint + "/set/result")] == ["2.04"] * 5


@pytest.mark.mqtt5("Message Expiry")
def test_message_expiry_bounds_a_queued_command(gateway, sim, mqtt):
    """MQTT v5 Message Expiry is the command's time to live: a command for
    a sleeping device that expires is answered with an error, never sent."""
    setpoint = gateway.topic("hvac-1", "setpoint")
    mqtt.subscribe(setpoint + "/set/result")
    s = sim("hvac", extra_args=["--lifetime", "60", "--sleep-after", "1",
                                "--sleep-for", "5", "--interval", "60000"])
    s.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=15)
    _, pos = s.out.wait_line(r"^SLEEP hvac-1$", timeout=10)
    props = c2m.Properties(c2m.PacketTypes.PUBLISH)
    props.MessageExpiryInterval = 1
    info = mqtt.client.publish(setpoint + "/set", b"28.5", qos=1, properties=props)
    info.wait_for_publish(5)
    doc = mqtt.wait_for(setpoint + "/set/result", timeout=10).json()
    assert "error" in doc and "code" not in doc, doc
    s.wait_for(r"^WAKE hvac-1$", timeout=10, start=pos)
    mqtt.publish(setpoint + "/set", b"29.5")
    s.wait_for(r"^PUT hvac-1 setpoint 4 29\.5$", timeout=15, start=pos)
    assert not s.out.find(r"^PUT hvac-1 setpoint 4 28\.5$", pos)


def test_311_gets_commands_and_never_its_own_readings(make_gateway, sim, mqtt, broker):
    """MQTT 3.1.1 has no No Local: the gateway subscribes to the command
    topics only, so the broker sends it commands and none of the readings it
    publishes (with '<base>/#' it would get every one of them back)."""
    gw = make_gateway(overrides={"mqtt": {"protocol": "3.1.1"}})
    gw.log.wait_for(r"mqtt: connected to .* \(MQTT 3\.1\.1", timeout=1)
    s, setpoint = ready_hvac(gw, sim, mqtt)
    mark = mqtt.mark()
    mqtt.subscribe(setpoint + "/set/result")
    mqtt.publish(setpoint + "/set", b"17.5")
    assert mqtt.wait_for(setpoint + "/set/result", timeout=10,
                         start=mark).json()["code"] == "2.04"
    mqtt.wait_for(setpoint, lambda m: m.payload.startswith(b"17.5"), timeout=10, start=mark)
    to_gw = [m.group(1) for m in
             broker.log.find(r"Sending PUBLISH to %s \(.*'([^']*)'" % gw.client_id)]
    assert to_gw == [setpoint + "/set"], to_gw
    assert not broker.log.find(r"^\S+ \S+ %s 1 %s/#$" % (gw.client_id, c2m.BASE))
