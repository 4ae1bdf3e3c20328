"""Identity and authorisation (issue 12, items 6-9): a forged ClientHello
must not end a device's DTLS session; a plain-CoAP peer must not take the
id of an authenticated device; SIGHUP must close the sessions of removed
PSK identities and of revoked certificates; an MQTT v5 Response Topic must
not make the gateway publish under its own base topic."""

import socket
import struct
import time

import pytest

import c2m
import sec
from sec import libcoap_san  # noqa: F401 (autouse fixture)


# --------------------------------------------------------------------------
# helpers

def spoof_udp(src, dst, payload):
    """Sends one UDP datagram with a forged IPv4 source (src = (addr, port)):
    what an off-path attacker can do.  Needs CAP_NET_RAW."""
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64,
                     socket.IPPROTO_UDP, 0, socket.inet_aton(src[0]),
                     socket.inet_aton(dst[0]))
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as s:
        s.sendto(ip + udp, (dst[0], 0))


def raw_sockets_allowed():
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW).close()
        return True
    except PermissionError:
        return False


# --------------------------------------------------------------------------
# item 6: a forged ClientHello from a device's address and port

@pytest.mark.skipif(not raw_sockets_allowed(), reason="needs CAP_NET_RAW to spoof")
@pytest.mark.timeout(60)
def test_spoofed_hello_keeps_the_session(gateway, sim, mqtt):
    """An off-path attacker sends ClientHellos with a device's source
    address and port (no cookie, and one with a made-up cookie).  The
    device's established session must stay: its readings keep coming."""
    addr = c2m.peer_addr()
    port = c2m.free_port(socket.SOCK_DGRAM, addr)
    s = sim("meter", bind=addr, extra_args=["--port", port, "--interval", "200"])
    s.wait_for(r"^OBSERVED meter-1 ", timeout=15)
    readings = gateway.topic("meter-1", "+")
    mqtt.wait_for(readings, timeout=10)
    hello = sec.capture_client_hello()
    mark = gateway.log.mark()
    # One at a time: the gateway looks at the first datagram waiting on
    # the socket; one behind it would go to the live session (dropped).
    # Each is answered with a cookie request (a HelloVerifyRequest).
    for i, forged in enumerate((hello, sec.hello_with_cookie(hello, bytes(range(32))))):
        spoof_udp((addr, port), ("127.0.0.1", gateway.port), forged)
        sec.stats(mqtt, gateway, lambda d, n=i + 1: sec.counter(d, "rehandshake_cookies") >= n
                  or sec.counter(d, "sessions_reset") > 0)
    # Readings still come in through the device's session: twenty more (two
    # seconds of them, so not only those on their way already).
    start = mqtt.mark()
    seen = []
    mqtt.wait_for(readings, lambda m: not m.topic.endswith("/availability") and
                  seen.append(m) is None and len(seen) >= 20, timeout=6, start=start)
    # The device never saw its session end (libcoap devices get a
    # close_notify and handshake again: "ERROR meter-1 dtls-closed").
    assert not s.out.find(r"^ERROR "), s.out.tail(30)
    assert not gateway.log.find(r"retiring the old session", mark), \
        gateway.log.tail(20)


# --------------------------------------------------------------------------
# item 7: plain CoAP must not take the id of an authenticated device

@pytest.fixture
def pki(tmp_path):
    p = sec.Pki(str(tmp_path / "pki"))
    p.gateway = p.issue("gateway", "/CN=coap2mqtt-gateway", dns=["gateway.test"])
    return p


def plain_coap(port, path, **kw):
    kw.setdefault("local", c2m.peer_addr())
    return c2m.coap_client("coap://127.0.0.1:%d/%s" % (port, path), None, None, **kw)


def test_plain_coap_cannot_take_a_certificate_id(make_gateway, pki, mqtt):
    """With coap.plain_listen on, POST /rd?ep=<id of an X.509 device> from
    plain CoAP is refused (4.03), whether that device is registered now or
    has left: the id belongs to an authenticated identity."""
    plain = c2m.free_port(socket.SOCK_DGRAM)
    gw = make_gateway(overrides={"coap": {
        "ca_file": pki.ca_crt, "cert_file": pki.gateway.cert,
        "key_file": pki.gateway.key, "plain_listen": ["127.0.0.1:%d" % plain]}})
    dev = pki.issue("meter-x7", "/CN=meter-x7")
    avail = gw.topic("meter-x7", "availability")
    mqtt.subscribe(gw.topic("meter-x7", "#"))
    r = sec.cert_client("%s/rd?ep=meter-x7&lt=120" % gw.uri, dev, local=c2m.peer_addr(),
                        **sec.register_links("</valve>;ct=0"))
    assert r.code == "2.01", r
    mqtt.wait_payload(avail, "online", timeout=5)
    start = mqtt.mark()
    thief = c2m.peer_addr()
    r = plain_coap(plain, "rd?ep=meter-x7&lt=60", local=thief, **sec.register_links("</evil>"))
    assert r.code == "4.03", "plain CoAP took the certificate device's id: %r" % r
    # Nor can it push under that id on the same address afterwards.
    r = plain_coap(plain, "ps/evil", local=thief, method="post", ct=0, payload="forged")
    assert r.code in ("4.01", "4.03"), r
    # The device left (DELETE): its id is still not free for plain CoAP.
    r = sec.cert_client("%s/rd/meter-x7" % gw.uri, dev, local=c2m.peer_addr(),
                        method="delete")
    assert r.code == "2.02", r
    r = plain_coap(plain, "rd?ep=meter-x7&lt=60", **sec.register_links("</evil>"))
    assert r.code == "4.03", "plain CoAP took a certificate device's id after it left: %r" % r
    # Fence: an id no authenticated device ever used still works there.
    assert plain_coap(plain, "rd?ep=lab-7&lt=60", **sec.register_links()).code == "2.01"
    got = [(m.topic, m.payload) for m in mqtt.received(gw.topic("meter-x7", "#"), start)
           if not m.topic.endswith("/availability")]
    assert got == [], got


# --------------------------------------------------------------------------
# item 8: SIGHUP closes the sessions of removed keys and revoked certificates

class Pusher:
    """coap-client-openssl pushing POST /ps/<path> once a second, 'count'
    times, on one DTLS session (-G): a device that keeps talking."""

    def __init__(self, tmpdir, gw, path, psk=None, cert=None, count=60):
        if cert is not None:
            argv = c2m.coap_argv("%s/ps/%s" % (gw.uri, path), None, None, method="post",
                                 ct=0, payload="1", local=c2m.peer_addr(), wait=count + 5)
            argv = argv[:1] + ["-c", cert.cert, "-j", cert.key, "-n"] + argv[1:]
        else:
            argv = c2m.coap_argv("%s/ps/%s" % (gw.uri, path), psk[0], psk[1], method="post",
                                 ct=0, payload="1", local=c2m.peer_addr(), wait=count + 5)
        self.argv = argv[:1] + ["-G", str(count)] + argv[1:]
        self.proc = c2m.subprocess.Popen(self.argv, stdin=c2m.subprocess.DEVNULL,
                                         stdout=c2m.subprocess.PIPE,
                                         stderr=c2m.subprocess.STDOUT)
        self.log = c2m.LineLog(self.proc.stdout, "%s/pusher-%d.log" % (tmpdir, self.proc.pid),
                               "pusher " + path)

    def stop(self):
        c2m.stop_process(self.proc, timeout=3)
        self.log.join()


def hup(gw, what):
    mark = gw.log.mark()
    gw.proc.send_signal(c2m.signal.SIGHUP)
    gw.log.wait_for(what, timeout=5, start=mark)


def goes_silent(mqtt, gone, alive, within=8):
    """True once 'gone' publishes nothing while 'alive' publishes two
    readings (about two seconds), trying for 'within' seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        start = mqtt.mark()
        seen = []
        mqtt.wait_for(alive, lambda m: seen.append(m) is None and len(seen) >= 2,
                      timeout=5, start=start)
        if not mqtt.received(gone, start):
            return True
    return False


@pytest.mark.timeout(90)
def test_hup_closes_sessions_of_removed_psk_identities(gateway, mqtt, psk_file, tmp_path):
    """dev-8's identity leaves the PSK file and dev-10 gets a new key: after
    SIGHUP both sessions end; dev-9 (unchanged) goes on."""
    topic = {i: gateway.topic(i, "x") for i in ("dev-8", "dev-9", "dev-10")}
    pushers = [Pusher(str(tmp_path), gateway, "x", psk=(i, psk_file[i])) for i in topic]
    try:
        for t in topic.values():
            mqtt.wait_for(t, timeout=10)
        del psk_file.keys["dev-8"]
        psk_file.add("dev-10")              # a new secret
        hup(gateway, r"reload: \d+ PSK identities")
        for gone in ("dev-8", "dev-10"):
            assert goes_silent(mqtt, topic[gone], topic["dev-9"]), \
                "%s still publishes on its session after its key was taken back" % gone
            assert gateway.log.find(r"closing the session of \"%s\"" % gone)
    finally:
        for p in pushers:
            p.stop()


@pytest.mark.timeout(90)
def test_hup_closes_sessions_of_revoked_certificates(make_gateway, pki, mqtt, tmp_path):
    gw = make_gateway(overrides={"coap": {
        "ca_file": pki.ca_crt, "cert_file": pki.gateway.cert,
        "key_file": pki.gateway.key, "crl_file": pki.write_crl()}})
    bad, good = pki.issue("cert-r1", "/CN=cert-r1"), pki.issue("cert-r2", "/CN=cert-r2")
    gone, alive = gw.topic("cert-r1", "x"), gw.topic("cert-r2", "x")
    pushers = [Pusher(str(tmp_path), gw, "x", cert=c) for c in (bad, good)]
    try:
        mqtt.wait_for(gone, timeout=10)
        mqtt.wait_for(alive, timeout=10)
        pki.revoke(bad)
        pki.write_crl(gw.cfg["coap"]["crl_file"])
        hup(gw, r"reload: certificates reloaded")
        assert goes_silent(mqtt, gone, alive), \
            "cert-r1 still publishes on its session after its certificate was revoked"
        assert gw.log.find(r"cert-r1.*(closed|closing)|(closed|closing).*cert-r1")
    finally:
        for p in pushers:
            p.stop()


# --------------------------------------------------------------------------
# item 9: an MQTT v5 Response Topic must not make the gateway publish
# under its own base topic (a forged reading, state or result)

def hvac_ready(gw, sim, mqtt):
    s = sim("hvac", extra_args=["--interval", "60000"])
    s.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=15)
    return s, gw.topic("hvac-1", "setpoint")


@pytest.mark.parametrize("forged", [
    ("hvac-2", "temperature"),          # another device's reading
    ("hvac-1", "temperature"),          # the same device's other reading
    ("bridge", "state"),                # the gateway's own state
])
@pytest.mark.mqtt5("Response Topic")
def test_response_topic_under_base_refused(gateway, sim, mqtt, forged):
    s, setpoint = hvac_ready(gateway, sim, mqtt)
    target = gateway.topic(*forged)
    mqtt.subscribe(target)
    mqtt.subscribe(setpoint + "/get/result")
    start, smark = mqtt.mark(), s.mark()
    mqtt.publish(setpoint + "/get", b"", response_topic=target, correlation_data=b"c9")
    res = mqtt.wait_for(gateway.topic("#"), lambda m: m.topic in (target, setpoint +
                        "/get/result") and m.prop("CorrelationData") == b"c9",
                        timeout=10, start=start)
    assert res.topic == setpoint + "/get/result", \
        "the GET answer was published on %s: %r" % (res.topic, res)
    assert "error" in res.json(), res
    fresh = [m for m in mqtt.received(target, start) if not m.retain]
    assert not fresh, fresh
    # The device was never asked.
    assert not s.out.find(r"^(GET|PUT) hvac-1 setpoint", smark)


@pytest.mark.mqtt5("Response Topic")
def test_response_topic_outside_base_still_works(gateway, sim, mqtt):
    s, setpoint = hvac_ready(gateway, sim, mqtt)
    replies = "app/replies/%d" % id(s)
    mqtt.subscribe(replies)
    mqtt.publish(setpoint + "/get", b"", response_topic=replies, correlation_data=b"ok")
    m = mqtt.wait_for(replies, timeout=10)
    assert m.prop("CorrelationData") == b"ok" and float(m.payload) > 0, m


@pytest.mark.mqtt5("Response Topic")
def test_response_topic_prefix(make_gateway, sim, mqtt):
    """mqtt.response_topic_prefix: Response Topics must be at or below it
    (it may be under the base topic); every other one is refused."""
    prefix = c2m.BASE + "/replies"
    gw = make_gateway(overrides={"mqtt": {"response_topic_prefix": prefix}})
    s, setpoint = hvac_ready(gw, sim, mqtt)
    mqtt.subscribe(setpoint + "/get/result")
    ok = prefix + "/app-1"
    mqtt.subscribe(ok)
    mqtt.publish(setpoint + "/get", b"", response_topic=ok, correlation_data=b"1")
    assert mqtt.wait_for(ok, timeout=10).prop("CorrelationData") == b"1"
    for bad in ("app/replies/x", gw.topic("hvac-2", "temperature"), prefix + "-x/y"):
        start = mqtt.mark()
        mqtt.subscribe(bad)
        mqtt.publish(setpoint + "/get", b"", response_topic=bad, correlation_data=b"2")
        res = mqtt.wait_for(setpoint + "/get/result", timeout=10, start=start)
        assert "error" in res.json(), (bad, res)
        assert not mqtt.received(bad, start), bad
