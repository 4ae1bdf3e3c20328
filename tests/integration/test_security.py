"""DTLS-PSK failures: a wrong key or an unknown identity fails the
handshake; the gateway logs one warning naming source address and identity
(never a key) and counts it in bridge/stats."""

import re
import socket

import c2m
import sec


def failure_count(doc):
    return sum(c2m.find_counters(doc, r"(^|\.)(handshakes_failed)$").values())


def check_refused(gateway, coap, mqtt, identity, key, counter_rx):
    before = sec.stats(mqtt, gateway)
    mark = gateway.log.mark()
    addr = c2m.peer_addr()
    r = coap(gateway, identity, "rd?ep=%s&lt=60" % identity, key=key,
             method="post", ct=40, payload="</t>", local=addr, wait=3)
    assert r.code is None, "request answered despite the bad PSK: %r" % r

    line = gateway.log.wait_for(r"%s.*\b%s\b|\b%s\b.*%s"
                                % (re.escape(addr), re.escape(identity),
                                   re.escape(identity), re.escape(addr)),
                                timeout=10, start=mark).string
    assert re.match(r"^<[0-4]>", line), "not logged at warning level: " + line
    hits = [l for l in gateway.log.lines[mark:] if addr in l and identity in l]
    assert len(hits) == 1, "want one line, got:\n" + "\n".join(hits)

    after = sec.stats(mqtt, gateway,
                      lambda d: failure_count(d) > failure_count(before))
    rose = {k: v for k, v in c2m.find_counters(after, counter_rx).items()
            if v > c2m.find_counters(before, counter_rx).get(k, 0)}
    assert rose, "no %s counter rose: before %s after %s" % (counter_rx, before, after)
    return line


def test_wrong_key(gateway, coap, mqtt, psk_file):
    wrong = "not-the-key-0123456789"
    check_refused(gateway, coap, mqtt, "dev-1", wrong, r"handshakes_failed$")
    # Neither the offered nor the configured key ever reaches the log.
    text = gateway.log.text()
    assert wrong not in text
    assert psk_file["dev-1"] not in text


def test_unknown_identity(gateway, coap, mqtt, psk_file):
    check_refused(gateway, coap, mqtt, "nobody-42", "whatever-key-987",
                  r"psk_unknown_identity$")
    assert "whatever-key-987" not in gateway.log.text()


def test_good_device_unaffected_by_failures(gateway, coap, mqtt):
    coap(gateway, "dev-2", "rd?ep=dev-2&lt=60", key="bad-bad-bad", method="post",
         ct=40, payload="</t>", wait=3)
    avail = gateway.topic("dev-2", "availability")
    mqtt.subscribe(avail)
    r = coap(gateway, "dev-2", "rd?ep=dev-2&lt=60", method="post", ct=40, payload="</t>")
    assert r.code == "2.01", r
    mqtt.wait_payload(avail, "online", timeout=5)


def test_retry_from_the_same_port_after_an_unfinished_handshake(gateway, coap, mqtt):
    """A device with a fixed source port whose handshake stopped half-way
    (here a wrong key: the gateway drops its Finished silently, so the
    session stays half-open) handshakes again from the same address and
    port.  libcoap hands that ClientHello to the unfinished session, which
    drops it; without the guard the device was locked out until libcoap's
    30 s partial-session timeout (its 30 s retry failed outright)."""
    addr, port = c2m.peer_addr(), c2m.free_port(socket.SOCK_DGRAM)
    mark = gateway.log.mark()
    r = coap(gateway, "dev-2", "rd?ep=dev-2&lt=60", key="bad-bad-bad", method="post",
             ct=40, payload="</t>", local=addr, local_port=port, wait=3)
    assert r.code is None, r
    avail = gateway.topic("dev-2", "availability")
    mqtt.subscribe(avail)
    # The device gives up after 'wait': the retry gets less than the 30 s.
    r = coap(gateway, "dev-2", "rd?ep=dev-2&lt=60", method="post", ct=40, payload="</t>",
             local=addr, local_port=port, wait=10)
    assert r.code == "2.01", r
    mqtt.wait_payload(avail, "online", timeout=5)
    gateway.log.wait_for(r"%s:%d starts a new handshake over its unfinished one"
                         % (re.escape(addr), port), timeout=5, start=mark)


def test_plain_coap_has_no_identity(make_gateway, coap, mqtt):
    """With coap.plain_listen, /rd and /ps without DTLS are refused
    (DEVICE-API.md: 4.01 Unauthorized), and nothing is published."""
    plain = c2m.free_port(socket.SOCK_DGRAM)
    gw = make_gateway(overrides={"coap": {"plain_listen": ["127.0.0.1:%d" % plain]}})
    mqtt.subscribe(gw.topic("dev-1", "#"))
    for path in ("rd?ep=dev-1&lt=60", "rd?lt=60", "ps/temp"):
        r = c2m.coap_client("coap://127.0.0.1:%d/%s" % (plain, path), None, None,
                            method="post", ct=0, payload="1", local=c2m.peer_addr())
        assert r.code in ("4.01", "4.03"), r
    # Fence: a DTLS push from dev-1 is the first thing published for it.
    assert coap(gw, "dev-1", "ps/temp", method="post", ct=0, payload="2").code == "2.04"
    mqtt.wait_for(gw.topic("dev-1", "temp"), timeout=5)
    got = [(m.topic, m.payload) for m in mqtt.received(gw.topic("dev-1", "#"))
           if not m.topic.endswith("/availability")]
    assert got == [(gw.topic("dev-1", "temp"), b"2")], got
