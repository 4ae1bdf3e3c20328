"""X.509 devices (DESIGN.md, issue 5 part 1): certificates made here with
openssl (ECDSA P-256, an "openssl ca" database), coap-client-openssl as the
device.  The device id is the first DNS subjectAltName, else the subject
CN; expired, not-yet-valid, wrong-CA and revoked certificates are refused;
PSK and certificate devices share one port; SIGHUP re-reads the CRL."""

import os
import signal
import time

import pytest

import c2m
import sec
from sec import libcoap_san  # noqa: F401 (autouse fixture)


@pytest.fixture
def pki(tmp_path):
    p = sec.Pki(str(tmp_path / "pki"))
    p.gateway = p.issue("gateway", "/CN=coap2mqtt-gateway", dns=["gateway.test"])
    return p


@pytest.fixture
def x509_gateway(make_gateway, pki):
    """A gateway with PSK devices and X.509 devices of 'pki' on one port;
    crl=True: revocation checked against pki's CRL (as it is at start)."""
    def make(crl=False, **coap):
        cfg = {"ca_file": pki.ca_crt, "cert_file": pki.gateway.cert,
               "key_file": pki.gateway.key}
        if crl:
            cfg["crl_file"] = pki.write_crl()
        cfg.update(coap)
        return make_gateway(overrides={"coap": cfg})
    return make


def register(gw, cert, ep, ca=None, **kw):
    return sec.cert_client("%s/rd?ep=%s&lt=60" % (gw.uri, ep), cert, ca=ca,
                           local=c2m.peer_addr(), **sec.register_links(), **kw)


def push(gw, cert, path, payload, **kw):
    return sec.cert_client("%s/ps/%s" % (gw.uri, path), cert, local=c2m.peer_addr(),
                           method="post", ct=0, payload=payload, **kw)


def test_device_id_is_the_cn(x509_gateway, pki, mqtt):
    gw = x509_gateway()
    dev = pki.issue("meter-x1", "/O=Plant 4/CN=meter-x1")
    avail = gw.topic("meter-x1", "availability")
    mqtt.subscribe(avail)
    # The gateway's certificate is verified by the device too (-C).
    r = register(gw, dev, "meter-x1", ca=pki.ca_crt)
    assert r.code == "2.01", r
    assert r.options("Location-Path") == ["rd", "meter-x1"] or "meter-x1" in r.out, r
    mqtt.wait_payload(avail, "online", timeout=5)
    # ep must be the certificate's identity, not any other.
    r = register(gw, dev, "meter-x2")
    assert r.code == "4.03", r
    mqtt.subscribe(gw.topic("meter-x1", "energy"))
    r = push(gw, dev, "energy", "12.5")
    assert r.code == "2.04", r
    assert mqtt.wait_for(gw.topic("meter-x1", "energy"), timeout=5).payload == b"12.5"


def test_device_id_is_the_first_dns_san(x509_gateway, pki, mqtt):
    gw = x509_gateway()
    dev = pki.issue("san", "/CN=cn-not-the-id", dns=["san-id-1", "san-id-2"])
    assert register(gw, dev, "cn-not-the-id").code == "4.03"
    assert register(gw, dev, "san-id-2").code == "4.03"
    avail = gw.topic("san-id-1", "availability")
    mqtt.subscribe(avail)
    r = register(gw, dev, "san-id-1")
    assert r.code == "2.01", r
    mqtt.wait_payload(avail, "online", timeout=5)


def refused(gw, mqtt, cert, ep, ca=None):
    """Asserts that 'cert' gets no answer, that the failure is logged with
    the peer's address and counted, and that nothing is published."""
    mqtt.subscribe(gw.topic(ep, "#"))
    before = sec.stats(mqtt, gw)
    mark = gw.log.mark()
    addr = c2m.peer_addr()
    r = sec.cert_client("%s/rd?ep=%s&lt=60" % (gw.uri, ep), cert, ca=ca, local=addr,
                        wait=3, **sec.register_links())
    assert r.code is None, "answered despite the bad certificate: %r" % r
    line = gw.log.wait_for(r"%s\b" % addr.replace(".", r"\."), timeout=10, start=mark)
    assert line.string.startswith(("<3>", "<4>")), line.string
    sec.stats(mqtt, gw, lambda d: sec.counter(d, "handshakes_failed") >
              sec.counter(before, "handshakes_failed"))
    assert not mqtt.received(gw.topic(ep, "#")), mqtt.received(gw.topic(ep, "#"))
    return r


def test_expired_certificate_refused(x509_gateway, pki, mqtt):
    gw = x509_gateway()
    now = time.time()
    dev = pki.issue("old", "/CN=old-1", not_before=now - 400 * 86400,
                    not_after=now - 30 * 86400)
    r = refused(gw, mqtt, dev, "old-1")
    assert "expired" in r.out or "alert" in r.out.lower(), r


def test_not_yet_valid_certificate_refused(x509_gateway, pki, mqtt):
    gw = x509_gateway()
    now = time.time()
    dev = pki.issue("future", "/CN=future-1", not_before=now + 30 * 86400,
                    not_after=now + 400 * 86400)
    refused(gw, mqtt, dev, "future-1")


def test_wrong_ca_refused(x509_gateway, pki, mqtt, tmp_path):
    gw = x509_gateway()
    other = sec.Pki(str(tmp_path / "other-pki"), name="someone else's CA")
    # Same subject as a device the gateway's CA could have issued.
    dev = other.issue("meter-x1", "/CN=meter-x1")
    refused(gw, mqtt, dev, "meter-x1")


def test_self_signed_refused(x509_gateway, mqtt, tmp_path):
    gw = x509_gateway()
    key, crt = str(tmp_path / "self.key"), str(tmp_path / "self.crt")
    sec.run(["openssl", "req", "-x509", "-new", "-newkey", "ec",
             "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
             "-out", crt, "-days", "30", "-subj", "/CN=meter-x1"])
    refused(gw, mqtt, sec.Cert("self", crt, key, None), "meter-x1")


def test_revoked_certificate_refused(x509_gateway, pki, mqtt):
    dev = pki.issue("revoked", "/CN=revoked-1")
    pki.revoke(dev)
    gw = x509_gateway(crl=True)     # the CRL written at start lists it
    refused(gw, mqtt, dev, "revoked-1")
    good = pki.issue("good", "/CN=good-1")
    assert register(gw, good, "good-1").code == "2.01"


def test_psk_and_certificates_on_one_port(x509_gateway, pki, mqtt, psk_file, tmp_path):
    gw = x509_gateway()
    assert len(gw.cfg["coap"]["listen"]) == 1
    dev = pki.issue("meter-x3", "/CN=meter-x3")
    mqtt.subscribe(gw.topic("+", "level"))
    # Both kinds at the same time: a PSK device in the background while a
    # certificate device registers and pushes.
    bg = c2m.CoapClientRun(str(tmp_path), gw.uri + "/ps/level", "dev-1", psk_file["dev-1"],
                           method="post", ct=0, payload="psk", local=c2m.peer_addr())
    try:
        r = push(gw, dev, "level", "x509")
        assert r.code == "2.04", r
        assert bg.wait(15).code == "2.04"
    finally:
        bg.kill()
    got = {m.topic: m.payload for m in
           [mqtt.wait_for(gw.topic("dev-1", "level"), timeout=5),
            mqtt.wait_for(gw.topic("meter-x3", "level"), timeout=5)]}
    assert got == {gw.topic("dev-1", "level"): b"psk",
                   gw.topic("meter-x3", "level"): b"x509"}, got
    # A PSK identity cannot be claimed with a certificate of that name,
    # nor the other way round: each kind answers for itself.
    assert register(gw, dev, "dev-1").code == "4.03"


def test_sighup_reloads_the_crl(x509_gateway, pki, mqtt):
    a = pki.issue("dev-a", "/CN=cert-a")
    b = pki.issue("dev-b", "/CN=cert-b")
    gw = x509_gateway(crl=True)
    assert register(gw, a, "cert-a").code == "2.01"
    assert register(gw, b, "cert-b").code == "2.01"
    pki.revoke(a)
    pki.write_crl(gw.cfg["coap"]["crl_file"])
    mark = gw.log.mark()
    gw.proc.send_signal(signal.SIGHUP)
    gw.log.wait_for(r"reload: certificates reloaded", timeout=5, start=mark)
    # The revoked device is refused on its next handshake; the other not.
    r = register(gw, a, "cert-a", wait=3)
    assert register(gw, b, "cert-b").code == "2.01"
    if r.code == "2.01":
        # libcoap keeps one X509_STORE per SSL_CTX: the reloaded CRL is
        # added next to the old one, and OpenSSL keeps using the old one.
        pytest.xfail("GATEWAY BUG: revoked certificate still accepted after SIGHUP "
                     "(old CRL stays in libcoap's store; see docs/SECURITY.md)")
    assert r.code is None, r


def test_sighup_reloads_the_ca(x509_gateway, pki, mqtt, tmp_path):
    """A CA rotation: devices of a new CA get in once ca_file names it
    and the gateway got SIGHUP; those of the old CA no longer do."""
    gw = x509_gateway(crl=False)
    new = sec.Pki(str(tmp_path / "new-pki"), name="rotated CA")
    old_dev = pki.issue("old-dev", "/CN=rot-old")
    new_dev = new.issue("new-dev", "/CN=rot-new")
    assert register(gw, old_dev, "rot-old").code == "2.01"
    assert register(gw, new_dev, "rot-new", wait=3).code is None
    os.replace(new.ca_crt, gw.cfg["coap"]["ca_file"] + ".new")
    os.replace(gw.cfg["coap"]["ca_file"] + ".new", gw.cfg["coap"]["ca_file"])
    mark = gw.log.mark()
    gw.proc.send_signal(signal.SIGHUP)
    gw.log.wait_for(r"reload: certificates reloaded", timeout=5, start=mark)
    assert register(gw, new_dev, "rot-new").code == "2.01"
    r = register(gw, old_dev, "rot-old", wait=3)
    if r.code == "2.01":
        # SSL_CTX_load_verify_locations() adds to libcoap's store: a CA
        # once loaded stays trusted until the process restarts.
        pytest.xfail("GATEWAY BUG: the replaced CA is still trusted after SIGHUP "
                     "(libcoap adds CAs to its store, never removes; see docs/SECURITY.md)")
    assert r.code is None, r


@pytest.mark.parametrize("subject,real_cn,claimed", [
    # Another subject field that contains "CN=" comes first in libcoap's
    # X509_NAME_oneline() text, which libcoap 4.3.1 searches for "CN=".
    ("/O=CN=meter-2/CN=evil-1", "evil-1", "meter-2"),
    # A '/' inside the CN is escaped as "\\/" in that text and ends it:
    # CN "meter-3/evil" (not a valid id) became the id "meter-3\\".
    ("/CN=meter-3\\/evil", "meter-3/evil", "meter-3\\"),
])
def test_identity_is_the_real_cn(x509_gateway, pki, mqtt, subject, real_cn, claimed):
    """A CA-signed certificate must not obtain another device's id through
    the text form of its subject (libcoap 4.3.1 get_san_or_cn_from_cert()
    hands the validate_cn callback the first "CN=" in X509_NAME_oneline)."""
    gw = x509_gateway()
    dev = pki.issue("confused", subject)
    r = register(gw, dev, claimed)
    if r.code == "2.01":
        pytest.xfail("gateway takes libcoap's CN text: %r registered as %r "
                     "(src/transport_dtls.c cert_cn must parse the DER itself)"
                     % (subject, claimed))
    assert r.code in (None, "4.03"), r
