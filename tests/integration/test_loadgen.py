"""The benchmark's load generator as a functional check (no timing is
asserted): its DTLS sensors through the real gateway and broker to its own
MQTT subscriber, which must count every reading once and in order.  This is
what `make bench` measures with; a subscriber that miscounts would make
every figure there wrong."""

import json
import os
import subprocess

import pytest

import c2m

SENSORS = 20


def loadgen(gw, broker, psk_file, tmp_path, *mode):
    tools = os.environ.get("C2M_TOOLS", "build/san")
    out = tmp_path / "loadgen.json"
    r = subprocess.run([os.path.join(tools, "coap2mqtt-loadgen"),
                        "--target", "127.0.0.1:%d" % gw.port, "--psk-file", psk_file.path,
                        "-n", str(SENSORS), "--bind", c2m.peer_addr(),
                        "--warmup", "1", "--duration", "2", "--drain", "5",
                        "--mqtt-port", str(broker.port), "--base", gw.base, "--json", str(out)] + list(mode),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr + r.stdout
    with open(out) as f:
        return json.load(f), r.stdout


@pytest.fixture
def fleet_keys(psk_file):
    for i in range(SENSORS):
        psk_file.add("lg-%d" % i)
    return psk_file


@pytest.mark.timeout(150)
@pytest.mark.parametrize("mode", [("--push", "--con", "--rate", "1000"),
                                  ("--push", "--non", "--rate", "1000"),
                                  ("--observe", "--non", "--rate", "1000")],
                         ids=["push-con", "push-non", "observe-non"])
def test_loadgen_counts_every_reading(make_gateway, broker, fleet_keys, tmp_path, mode):
    gw = make_gateway()
    j, text = loadgen(gw, broker, fleet_keys, tmp_path, *mode)
    assert j["handshakes"]["ok"] == SENSORS and j["handshakes"]["failed"] == 0, text
    assert j["coap"]["registered"] == SENSORS, text
    m = j["mqtt"]
    # Every reading sent in the window reached the subscriber, once, in order.
    assert j["coap"]["sent_window"] > 0, text
    assert m["in_window"] == j["coap"]["sent_window"], text
    assert (m["lost"], m["duplicates"], m["reordered"], m["unparsable"]) == (0, 0, 0, 0), text
    assert m["received"] == j["coap"]["sent"], text
    assert m["latency"]["samples"] == m["in_window"], text
    if "--observe" in mode:
        assert j["coap"]["observed"] == SENSORS, text
