"""Regression tests for the libcoap 4.3.1 CVEs Debian 12 leaves unpatched
(analysis in docs/SECURITY.md, "Known libcoap CVEs"):

- CVE-2023-30362: heap overflow in coap_send_internal() when libcoap sends
  a 5.08 (Hop Limit reached) response.  Any request carrying Hop-Limit 1
  makes libcoap 4.3.1 answer 5.08 by itself, before any handler runs.
- CVE-2025-65493..65501 (libcoap PR #1750, fixed in 4.3.5a): unchecked
  OpenSSL return values in coap_openssl.c; the certificate path
  (get_san_or_cn_from_cert, tls_verify_call_back) is what a peer can reach,
  with any certificate, signed by our CA or not.

The gateway fixture fails a test whose daemon printed a sanitizer report or
did not exit cleanly.  Only the gateway's own code is instrumented by
C2M_BIN's ASan; to instrument libcoap too, point C2M_LIBCOAP_SAN at a
directory holding an ASan build of libcoap 4.3.1 as libcoap-3-openssl.so.3
(docs/SECURITY.md says how) and it is put first in LD_LIBRARY_PATH.
"""

import pytest

import c2m
import sec
from sec import libcoap_san  # noqa: F401 (autouse fixture)


def hop_limit(value):
    """A raw Hop-Limit option (RFC 8768), any value, any length."""
    return (sec.HOP_LIMIT, "0x" + value.to_bytes(max(1, (value.bit_length() + 7) // 8),
                                                 "big").hex())


def alive(gw, coap, mqtt, ident):
    topic = gw.topic(ident, "after")
    mqtt.subscribe(topic)
    r = coap(gw, ident, "ps/after", method="post", ct=0, payload="ok")
    assert r.code == "2.04", r
    mqtt.wait_for(topic, timeout=5)
    assert gw.running()


# --------------------------------------------------------------------------
# CVE-2023-30362: Hop-Limit -> 5.08

HOP_CASES = [
    # (path, method, hop limit, answers libcoap 4.3.1 may give)
    ("ps/x", "post", 1, ("5.08",)),
    ("rd?ep=dev-1&lt=60", "post", 1, ("5.08",)),
    ("nowhere", "get", 1, ("5.08", "4.04")),
    ("ps/x", "post", 0, ("4.00",)),
    ("ps/x", "post", 2, ("2.04",)),
]


def test_cve_2023_30362_hop_limit_from_device(gateway, coap, mqtt):
    """An authenticated device: libcoap builds and sends the 5.08 itself."""
    mqtt.subscribe(gateway.topic("dev-1", "#"))
    for path, method, hl, want in HOP_CASES:
        # Large tokens and payloads make the response PDU as big as the
        # request allows: the overflow was a write past its end.
        for token in ("01", "0102030405060708"):
            r = coap(gateway, "dev-1", path, method=method, ct=0, payload="p" * 64,
                     options=[hop_limit(hl)], wait=3)
            assert r.code in want, (path, hl, r)
    got = [m.topic for m in mqtt.received(gateway.topic("dev-1", "#"))
           if not m.topic.endswith("/availability")]
    # Only the Hop-Limit 2 pushes were handled (and published).
    assert set(got) <= {gateway.topic("dev-1", "x")}, got
    alive(gateway, coap, mqtt, "dev-1")


def test_cve_2023_30362_hop_limit_unauthenticated(make_gateway, coap, mqtt):
    """An unauthenticated peer reaches it only where the gateway speaks
    plain CoAP (coap.plain_listen); over DTLS nothing is parsed as CoAP
    before the handshake has authenticated the peer."""
    plain = c2m.free_port(c2m.socket.SOCK_DGRAM)
    gw = make_gateway(overrides={"coap": {"plain_listen": ["127.0.0.1:%d" % plain]}})
    for path in ("ps/x", "rd?ep=lab-1&lt=60", ".well-known/core"):
        r = c2m.coap_client("coap://127.0.0.1:%d/%s" % (plain, path), None, None,
                            method="post", ct=0, payload="q" * 64,
                            options=[hop_limit(1)], local=c2m.peer_addr(), wait=3)
        assert r.code == "5.08", r
    # Over DTLS, a peer without a key never gets that far.
    r = coap(gw, "nobody-1", "ps/x", key="no-such-key", method="post", ct=0,
             payload="x", options=[hop_limit(1)], wait=3)
    assert r.code is None, r
    alive(gw, coap, mqtt, "dev-2")


# --------------------------------------------------------------------------
# CVE-2025-65493..65501: the certificate paths of coap_openssl.c

@pytest.fixture
def pki_gateway(make_gateway, tmp_path):
    pki = sec.Pki(str(tmp_path / "pki"))
    gwcert = pki.issue("gateway", "/CN=coap2mqtt-gateway")
    gw = make_gateway(overrides={"coap": {"ca_file": pki.ca_crt, "cert_file": gwcert.cert,
                                          "key_file": gwcert.key}})
    return gw, pki


ODD_CERTS = [
    # (name, subject, SAN extension value or None)
    ("no-subject", "/", None),
    ("ip-san-only", "/CN=odd-1", "IP:127.0.0.1"),
    ("email-uri-san", "/CN=odd-2", "email:a@b.c,URI:coap://x/,IP:::1"),
    ("dns-after-others", "/CN=odd-3", "email:a@b.c,IP:10.0.0.1,DNS:odd-3-san"),
    ("many-dns", "/CN=odd-4", ",".join("DNS:n%d.example" % i for i in range(150))),
    ("long-subject", "/O=%s/OU=%s/CN=odd-5" % ("o" * 60, "u" * 60), None),
    ("subject-over-256", "/O=%s/OU=%s/CN=odd-6" % ("o" * 64, "u" * 64) +
     "".join("/OU=%s" % ("v" * 60) for _ in range(3)), None),
    ("lowercase-cn-in-o", "/O=xcn=odd-7/CN=odd-8", None),
    ("utf8-cn", "/CN=odd-\u00e9", None),
]


def issue_odd(pki, tmp_path, name, subject, san, self_signed):
    key = str(tmp_path / (name + ".key"))
    crt = str(tmp_path / (name + ".crt"))
    argv = ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-utf8",
            "-subj", subject, "-config", pki.cnf]
    if san:
        argv += ["-addext", "subjectAltName=" + san]
    if self_signed:
        sec.run(argv + ["-x509", "-days", "30", "-out", crt])
        return sec.Cert(name, crt, key, None)
    csr = str(tmp_path / (name + ".csr"))
    sec.run(argv + ["-out", csr])
    sec.run(["openssl", "ca", "-batch", "-config", pki.cnf, "-notext", "-utf8",
             "-extensions", "v3_leaf", "-days", "30", "-in", csr, "-out", crt])
    return sec.Cert(name, crt, key, None)


@pytest.mark.parametrize("signed", ["by-our-ca", "self-signed"])
def test_cve_2025_odd_certificates(pki_gateway, coap, mqtt, tmp_path, signed):
    """Certificates whose names take the unusual branches of
    get_san_or_cn_from_cert(): self-signed ones reach it unauthenticated
    (libcoap extracts the name before the verdict), CA-signed ones reach
    the gateway's validate_cn callback as well."""
    gw, pki = pki_gateway
    outcomes = {}
    for name, subject, san in ODD_CERTS:
        cert = issue_odd(pki, tmp_path, "%s-%s" % (signed, name), subject, san,
                         signed == "self-signed")
        r = sec.cert_client("%s/rd?ep=%s&lt=60" % (gw.uri, "odd"), cert,
                            local=c2m.peer_addr(), wait=3, **sec.register_links())
        outcomes[name] = r.code
        assert gw.running(), "gateway died on %s: %s" % (name, gw.log.lines[-20:])
    print("\n%s: %s" % (signed, outcomes))
    if signed == "self-signed":
        assert all(c is None for c in outcomes.values()), outcomes
    else:
        # ep=odd is nobody's id: a 4.03 means the handshake passed.
        assert all(c in (None, "4.03") for c in outcomes.values()), outcomes
    alive(gw, coap, mqtt, "dev-3")
