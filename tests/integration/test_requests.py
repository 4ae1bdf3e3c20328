"""The broker request API (issue 17, item 6), zigbee2mqtt's convention:
<base>/bridge/request/<name> -> <base>/bridge/response/<name>, JSON, the
"transaction" echoed back; errors are responses too, never a crash."""

import json

import pytest

import c2m


class Api:
    """Requests and their responses through one MQTT client."""

    def __init__(self, gateway, mqtt):
        self.gw, self.mqtt = gateway, mqtt
        self.n = 0
        mqtt.subscribe(gateway.topic("bridge", "response", "#"))

    def raw(self, name, payload, timeout=10):
        """Publishes 'payload' (bytes) and returns the next response."""
        mark = self.mqtt.mark()
        self.mqtt.publish(self.gw.topic("bridge", "request", name), payload)
        # Through the one subscription made above: a second, overlapping
        # one would have the broker deliver every response twice.
        want = self.gw.topic("bridge", "response", name)
        m = self.mqtt.wait_for(self.gw.topic("bridge", "response", "#"),
                               lambda m: m.topic == want, timeout=timeout, start=mark)
        assert not m.retain, m
        return m.json()

    def __call__(self, name, **args):
        self.n += 1
        tx = "tx-%d" % self.n
        doc = self.raw(name, json.dumps(dict(args, transaction=tx)).encode())
        assert doc.get("transaction") == tx, doc
        return doc


@pytest.fixture
def api(gateway, mqtt):
    return Api(gateway, mqtt)


def test_health_check(api):
    doc = api("health_check")
    assert doc["status"] == "ok", doc
    assert doc["data"]["healthy"] is True and doc["data"]["mqtt_connected"] is True, doc
    assert doc["data"]["devices"] == 0, doc
    # An empty payload is a request without arguments (and no transaction).
    doc = api.raw("health_check", b"")
    assert doc["status"] == "ok" and "transaction" not in doc, doc
    # Any JSON value is echoed as the transaction, as zigbee2mqtt does.
    doc = api.raw("health_check", b'{"transaction": 42}')
    assert doc["transaction"] == 42, doc


def test_devices_and_stats(gateway, sim, api):
    s = sim("meter")
    s.wait_for(r"^OBSERVED meter-1 power$", timeout=15)
    doc = api("devices")
    assert doc["status"] == "ok", doc
    assert [d["id"] for d in doc["data"]] == ["meter-1"], doc
    assert doc["data"][0]["online"] is True, doc
    doc = api("stats")
    assert doc["status"] == "ok" and doc["data"]["registrations"] == 1, doc


@pytest.mark.parametrize("payload,error", [
    (b"{not json", "invalid JSON"),
    (b"[1, 2]", "the request must be a JSON object"),
    (b'"meter-1"', "the request must be a JSON object"),
    (b'{"a":1,"a":2}', "invalid JSON"),
    (b"\xff\xfe", "invalid JSON"),
    (b"{}" + b" " * 70000, "request too large"),
])
def test_bad_json_is_an_error_response(gateway, api, payload, error):
    doc = api.raw("health_check", payload)
    assert doc == {"status": "error", "error": error, "data": {}}, doc
    assert api("health_check")["status"] == "ok"     # still serving


def test_unknown_requests_and_bad_arguments(api):
    for name, args, error in [
        ("nonsense", {}, "unknown request"),
        ("device/nonsense", {}, "unknown request"),
        ("device/remove", {}, '"id" (a device id string) is required'),
        ("device/remove", {"id": 7}, '"id" (a device id string) is required'),
        ("device/remove", {"id": "a/b"}, '"id" is not a valid device id'),
        ("device/remove", {"id": "nobody"}, "unknown device"),
        ("device/commands/cancel", {"id": "nobody"}, "unknown device"),
        ("options/log_level", {}, '"level" is required: error, warning, notice, info or debug'),
        ("log_level", {"level": "loud"}, 'unknown "level": use error, warning, notice, info or debug'),
    ]:
        doc = api(name, **args)
        assert doc["status"] == "error" and doc["error"] == error, (name, args, doc)
        assert doc["data"] == {}, doc


def test_retained_request_is_ignored(make_gateway, mqtt):
    """A retained request would be carried out again at every start (the
    broker hands it over with each subscription): it is ignored."""
    topic = c2m.BASE + "/bridge/request/device/remove"
    mqtt.publish(topic, b'{"id":"x"}', retain=True)
    gw = make_gateway()
    gw.log.wait_for(r"request on .*/bridge/request/device/remove ignored: retained")
    mqtt.publish(topic, b"", retain=True)       # clears it (and is answered)
    assert Api(gw, mqtt)("health_check")["status"] == "ok"


def test_log_level(gateway, api):
    """Lowered to warning, an info line (the log of an unknown request) is
    no longer written; back at info it is."""
    assert api("options/log_level", level="warning")["data"] == {"level": "warning"}
    mark = gateway.log.mark()
    api("quiet-please")
    assert api("log_level", level="info")["status"] == "ok"
    api("loud-again")
    gateway.log.wait_for(r"request loud-again: unknown request", start=mark)
    assert not gateway.log.find(r"request quiet-please", mark)
    assert api("log_level", level="debug")["data"] == {"level": "debug"}


def queue_for_silent_device(gateway, sim, mqtt, values):
    """hvac-1 registered, then silent (asleep: the gateway still holds its
    session and registration), and one command published
    for it per value: the first goes out on the wire and waits there for
    an answer that never comes (in flight), the others wait in its queue."""
    setpoint = gateway.topic("hvac-1", "setpoint")
    mqtt.subscribe(setpoint + "/set/result")
    s = sim("hvac", extra_args=["--sleep-after", "1", "--sleep-for", "120"])
    s.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=15)
    s.wait_for(r"^SLEEP hvac-1$", timeout=10)
    for v in values:
        mqtt.publish(setpoint + "/set", v.encode())
    return setpoint


def results(mqtt, topic, start):
    return [m.json() for m in mqtt.received(topic, start)]


def test_cancel_queued_commands(gateway, sim, mqtt, api):
    mark = mqtt.mark()
    setpoint = queue_for_silent_device(gateway, sim, mqtt, ["20.1", "20.2", "20.3"])
    doc = api("device/commands/cancel", id="hvac-1")
    # The one in flight is not taken back: the device may have it already.
    assert doc["status"] == "ok" and doc["data"] == {"id": "hvac-1", "cancelled": 2}, doc
    # Each one got its result: nothing is dropped silently.
    mqtt.wait_for(setpoint + "/set/result",
                  lambda m: len(results(mqtt, setpoint + "/set/result", mark)) >= 2,
                  timeout=10, start=mark)
    assert results(mqtt, setpoint + "/set/result", mark) == [{"error": "cancelled"}] * 2
    assert api("device/commands/cancel", id="hvac-1")["data"]["cancelled"] == 0
    # The device is still known.
    assert [d["id"] for d in api("devices")["data"]] == ["hvac-1"]


def test_remove_device(gateway, sim, mqtt, api):
    mark = mqtt.mark()
    setpoint = queue_for_silent_device(gateway, sim, mqtt, ["21.1", "21.2"])
    devices = gateway.topic("bridge", "devices")
    mqtt.subscribe(devices)
    doc = api("device/remove", id="hvac-1")
    assert doc["status"] == "ok", doc
    # The one in flight too: its answer would have nowhere to go.
    assert doc["data"] == {"id": "hvac-1", "commands_cancelled": 2}, doc
    mqtt.wait_for(setpoint + "/set/result",
                  lambda m: len(results(mqtt, setpoint + "/set/result", mark)) >= 2,
                  timeout=10, start=mark)
    assert results(mqtt, setpoint + "/set/result", mark) == [{"error": "device removed"}] * 2
    mqtt.wait_for(devices, lambda m: m.json() == [], timeout=10, start=mark)
    assert api("devices")["data"] == []
    assert api("health_check")["data"]["devices"] == 0
    # Gone: a command for it is refused, and it cannot be removed twice.
    m2 = mqtt.mark()
    mqtt.publish(setpoint + "/set", b"22")
    assert mqtt.wait_for(setpoint + "/set/result", timeout=10, start=m2).json() == \
        {"error": "unknown device"}
    assert api("device/remove", id="hvac-1")["error"] == "unknown device"


def test_remove_online_device_then_it_comes_back(gateway, sim, mqtt, api):
    """Removing a device that is online cancels its observations on the wire;
    should it come back (a new simulator, a new session) it registers as a
    new device."""
    s = sim("meter")
    s.wait_for(r"^OBSERVED meter-1 power$", timeout=15)
    mqtt.subscribe(gateway.topic("meter-1", "availability"))
    mark = mqtt.mark()
    assert api("device/remove", id="meter-1")["data"]["commands_cancelled"] == 0
    mqtt.wait_payload(gateway.topic("meter-1", "availability"), b"offline", start=mark)
    assert api("devices")["data"] == []
    assert s.stop() == 0
    s2 = sim("meter")
    s2.wait_for(r"^OBSERVED meter-1 power$", timeout=15)
    assert [d["id"] for d in api("devices")["data"]] == ["meter-1"]
