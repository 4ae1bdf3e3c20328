"""The broker connection (issue 5 part 4): TLS verified against
mqtt.tls_ca_file with hostname verification, an optional client
certificate, a minimum TLS version, and username + password_file.  A
broker that cannot be verified is never talked to: the gateway keeps
retrying and says why."""

import os
import socket
import ssl
import threading

import pytest

import c2m
import sec
from sec import libcoap_san  # noqa: F401 (autouse fixture)


@pytest.fixture
def pki(tmp_path):
    return sec.Pki(str(tmp_path / "mqtt-pki"), name="broker CA")


@pytest.fixture
def tls_broker(tmp_path):
    """tls_broker(pki, server_cert, **kw) -> sec.TlsBroker, stopped after
    the gateways (this fixture is set up first, so torn down last)."""
    brokers = []

    def make(pki, server, **kw):
        b = sec.TlsBroker(str(tmp_path / ("tls-broker%d" % len(brokers))), pki, server, **kw)
        brokers.append(b)
        return b
    yield make
    for b in brokers:
        b.stop()


@pytest.fixture(autouse=True)
def tls_supported(c2m_bin, tmp_path, pki):
    ok, out = sec.config_supported(c2m_bin, str(tmp_path), {
        "coap": {"listen": ["127.0.0.1:5684"]},
        "mqtt": {"tls_ca_file": pki.ca_crt, "tls_version": "tlsv1.2",
                 "tls_ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256"}})
    if not ok:
        pytest.skip("this build has no mqtt.tls_* settings:\n" + out)


def start(make_gateway, broker, host="localhost", port=None, **mqtt):
    cfg = {"host": host, "port": port or broker.tls_port}
    cfg.update(mqtt)
    return make_gateway(overrides={"mqtt": cfg}, wait=False)


def await_online(gw, broker, timeout=15):
    watch = c2m.Mqtt(broker.host, broker.plain_port)
    try:
        return watch.wait_payload(gw.topic("bridge", "state"), "online", timeout=timeout)
    finally:
        watch.close()


def assert_never_online(gw, broker, why_rx, attempts=2, timeout=8):
    """Not online, the reason in the log, and still trying."""
    watch = c2m.Mqtt(broker.host, broker.plain_port)
    try:
        watch.subscribe(gw.topic("bridge", "state"))
        mark = gw.log.mark()
        for _ in range(attempts):
            _, mark = gw.log.wait_line(why_rx, timeout=timeout, start=mark)
        # Retained messages are what an earlier gateway left; live ones
        # would be this gateway's.
        live = [m for m in watch.received(gw.topic("bridge", "state")) if not m.retain]
        assert not live, live
        assert gw.running()
    finally:
        watch.close()


def server_cert(pki, *names):
    return pki.issue("broker-" + "-".join(names), "/CN=%s" % names[0],
                     dns=[n for n in names if not n[0].isdigit()])


def test_tls_verified_broker(tls_broker, make_gateway, pki, coap):
    b = tls_broker(pki, server_cert(pki, "localhost"))
    gw = start(make_gateway, b, tls_ca_file=pki.ca_crt)
    await_online(gw, b)
    # Readings flow through the TLS connection.
    watch = c2m.Mqtt(b.host, b.plain_port)
    try:
        watch.subscribe(gw.topic("dev-1", "t"))
        assert coap(gw, "dev-1", "ps/t", method="post", ct=0, payload="tls").code == "2.04"
        assert watch.wait_for(gw.topic("dev-1", "t"), timeout=5).payload == b"tls"
    finally:
        watch.close()
    assert b.log.find(r"New client connected .*%s" % gw.client_id) or \
        b.log.find(gw.client_id)


TLS_FAIL = r"(?i)(certificate verify failed|tls|ssl|verif)"


def test_tls_wrong_hostname_refused(tls_broker, make_gateway, pki):
    # A certificate from the right CA, for another host name.
    b = tls_broker(pki, server_cert(pki, "other.example"))
    gw = start(make_gateway, b, tls_ca_file=pki.ca_crt)
    assert_never_online(gw, b, TLS_FAIL)


def test_tls_wrong_ca_refused(tls_broker, make_gateway, pki, tmp_path):
    b = tls_broker(pki, server_cert(pki, "localhost"))
    other = sec.Pki(str(tmp_path / "other-ca"), name="not the broker's CA")
    gw = start(make_gateway, b, tls_ca_file=other.ca_crt)
    assert_never_online(gw, b, TLS_FAIL)


def test_tls_client_certificate(tls_broker, make_gateway, pki):
    b = tls_broker(pki, server_cert(pki, "localhost"), require_certificate=True)
    client = pki.issue("mqtt-client", "/CN=coap2mqtt")
    gw = start(make_gateway, b, tls_ca_file=pki.ca_crt, tls_cert_file=client.cert,
               tls_key_file=client.key)
    await_online(gw, b)
    # Without one, the broker refuses the gateway.
    gw2 = start(make_gateway, b, tls_ca_file=pki.ca_crt)
    assert_never_online(gw2, b, r"(?i)(tls|ssl|connection|lost|error|refused)")


def test_username_and_password_file(tls_broker, make_gateway, pki, tmp_path):
    pw = sec.mosquitto_passwd(str(tmp_path / "broker.passwd"), "gw-user", "s3cret-pw")
    b = tls_broker(pki, server_cert(pki, "localhost"), password_file=pw)
    good = tmp_path / "mqtt.password"
    good.write_text("s3cret-pw\n")
    os.chmod(good, 0o600)
    gw = start(make_gateway, b, tls_ca_file=pki.ca_crt, username="gw-user",
               password_file=str(good))
    await_online(gw, b)
    assert "s3cret-pw" not in gw.log.text()
    bad = tmp_path / "wrong.password"
    bad.write_text("not-it\n")
    os.chmod(bad, 0o600)
    gw2 = start(make_gateway, b, tls_ca_file=pki.ca_crt, username="gw-user",
                password_file=str(bad))
    assert_never_online(gw2, b, r"(?i)(not authori[sz]ed|refused|bad user|password)")
    assert "not-it" not in gw2.log.text()


class Tls12Server:
    """A TLS server that speaks at most TLS 1.2 and records what happened
    to each connection: 'ok' (handshake done) or the error."""

    def __init__(self, pki, cert):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert.cert, cert.key)
        self.ctx = ctx
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.5)
        self.tls_port = self.sock.getsockname()[1]
        self.results = []
        self.cv = threading.Condition()
        self.stop_flag = False
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while not self.stop_flag:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.settimeout(3)
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as s:
                    res = "ok " + s.version()
            except (ssl.SSLError, OSError) as e:
                res = "error %s" % e
            with self.cv:
                self.results.append(res)
                self.cv.notify_all()

    def wait(self, n, timeout=10):
        with self.cv:
            self.cv.wait_for(lambda: len(self.results) >= n, timeout)
            return list(self.results)

    def close(self):
        self.stop_flag = True
        self.sock.close()


@pytest.mark.parametrize("version,ok", [("tlsv1.2", True), ("tlsv1.3", False)])
def test_minimum_tls_version(make_gateway, pki, version, ok):
    srv = Tls12Server(pki, server_cert(pki, "localhost"))
    try:
        make_gateway(overrides={"mqtt": {"host": "localhost", "port": srv.tls_port,
                                         "tls_ca_file": pki.ca_crt,
                                         "tls_version": version}}, wait=False)
        res = srv.wait(1)
        assert res, "the gateway never connected"
        assert res[0].startswith("ok") == ok, (version, res)
    finally:
        srv.close()
