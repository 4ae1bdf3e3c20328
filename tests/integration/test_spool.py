"""The end-to-end promise across a crash: a reading the gateway has
acknowledged (a CON push answered 2.04) while the broker was away is on
disk in state_dir, and a gateway restarted after kill -9 still delivers it."""

import signal

import pytest


def test_acknowledged_pushes_survive_kill9(make_gateway, sim, broker, mqtt_factory):
    gw = make_gateway()
    topic = gw.topic("meter-1", "energy")
    watch = mqtt_factory(clean_start=False, session_expiry=600)
    watch.subscribe(topic)
    s = sim("meter", extra_args=["--push", "--con", "--interval", "200"])
    s.wait_for(r"^PUSH meter-1 energy \d+ 2\.04$", timeout=15)

    assert broker.stop() == 0
    mark = s.mark()
    try:
        s.wait_for(r"^PUSH meter-1 energy \d+ 2\.04$", timeout=6, start=mark)
    except AssertionError:
        pytest.skip("CON pushes are answered only after PUBACK (no disk spool)")
    # A few more acknowledged while the broker is away, then the crash.
    for _ in range(3):
        _, mark = s.out.wait_line(r"^PUSH meter-1 energy \d+ 2\.04$", timeout=6, start=mark)
    gw.expect_death = True
    assert gw.stop(signal.SIGKILL) == -signal.SIGKILL
    acked = {int(m.group(1)) for m in s.out.find(r"^PUSH meter-1 energy (\d+) 2\.04$")}

    gw.respawn()
    broker.start()

    def all_there(_):
        got = {int(m.json()["seq"]) for m in watch.received(topic)}
        return acked <= got
    try:
        watch.wait_for(topic, all_there, timeout=20)
    except AssertionError:
        got = {int(m.json()["seq"]) for m in watch.received(topic)}
        raise AssertionError("acknowledged but lost: %s" % sorted(acked - got)) from None
