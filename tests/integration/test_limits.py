"""The configured bounds (CONFIG.md): max_devices, commands.max_queued and
queue.max_messages refuse the excess at once, visibly, and lose nothing
they accepted."""

import re
import uuid

import pytest


def register(coap, gw, ident):
    return coap(gw, ident, "rd?ep=%s&lt=60" % ident, method="post", ct=40, payload="</t>")


def test_max_devices(make_gateway, coap, mqtt):
    gw = make_gateway(overrides={"rd": {"max_devices": 2}})
    assert register(coap, gw, "dev-1").code == "2.01"
    assert register(coap, gw, "dev-2").code == "2.01"
    r = register(coap, gw, "dev-3")
    assert r.code == "5.03", r
    assert r.options("Max-Age") == ["10"], r
    # Known devices keep working; the refusal is counted.
    assert register(coap, gw, "dev-1").code == "2.01"
    mqtt.wait_for(gw.topic("bridge", "stats"),
                  lambda m: m.json().get("rejected_capacity", 0) >= 1, timeout=5)


@pytest.mark.mqtt5("Response Topic")
def test_command_queue_bound(make_gateway, sim, mqtt):
    gw = make_gateway(overrides={"commands": {"max_queued": 2}})
    setpoint = gw.topic("hvac-1", "setpoint")
    replies = "test-replies/%s" % uuid.uuid4().hex
    mqtt.subscribe(replies)
    s = sim("hvac", extra_args=["--lifetime", "60", "--sleep-after", "1",
                                "--sleep-for", "4", "--interval", "60000"])
    s.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=15)
    _, pos = s.out.wait_line(r"^SLEEP hvac-1$", timeout=10)
    values = ["11.0", "12.0", "13.0", "14.0"]
    for i, v in enumerate(values):
        mqtt.publish(setpoint + "/set", v.encode(), response_topic=replies,
                     correlation_data=b"c%d" % i)
    # The last one cannot be queued: refused at once, while it sleeps.
    r = mqtt.wait_for(replies, lambda m: m.prop("CorrelationData") == b"c3", timeout=5)
    assert "error" in r.json(), r
    assert not s.out.find(r"^WAKE ", pos), "refusal came only after the wake-up"
    # Every command is answered once; the accepted ones reach the device.
    mqtt.wait_for(replies, lambda m: len(mqtt.received(replies)) >= 4, timeout=20)
    results = {m.prop("CorrelationData"): m.json() for m in mqtt.received(replies)}
    assert len(mqtt.received(replies)) == 4 and len(results) == 4, mqtt.received(replies)
    ok = [values[i] for i in range(4) if results[b"c%d" % i].get("code") == "2.04"]
    assert ok, results
    # The simulator prints PUT before it answers, but its stdout is read by
    # another thread than the broker's messages: await the last line.
    s.out.wait_for(r"^PUT hvac-1 setpoint \d+ %s$" % re.escape(ok[-1]), timeout=5, start=pos)
    put = [m.string.split()[-1] for m in s.out.find(r"^PUT hvac-1 setpoint ", pos)]
    assert put == ok, (results, put)


def test_queue_full_refuses_con_push(make_gateway, coap, broker, mqtt_factory):
    """Without the disk spool, queue.max_messages bounds what waits for the
    broker: a CON push beyond it gets 5.03 + Max-Age (keep it, retry)."""
    gw = make_gateway(overrides={"queue": {"max_messages": 3, "spool": False}})
    topic = gw.topic("dev-1", "count")
    watch = mqtt_factory(clean_start=False, session_expiry=600)
    watch.subscribe(topic)
    assert coap(gw, "dev-1", "ps/count", method="post", ct=0, payload="0").code == "2.04"
    assert broker.stop() == 0
    codes = []
    for i in range(1, 6):
        r = coap(gw, "dev-1", "ps/count", method="post", ct=0, payload=str(i), wait=4)
        codes.append(r.code)
        if r.code == "5.03":
            assert r.options("Max-Age") == ["10"], r
            break
    assert "5.03" in codes, "no push refused with a queue of 3: %s" % codes
    broker.start()
    # What was acknowledged is delivered.
    acked = {str(i + 1).encode() for i, c in enumerate(codes) if c == "2.04"}
    watch.wait_for(topic, lambda m: acked <= {x.payload for x in watch.received(topic)},
                   timeout=20)
