"""OSCORE (RFC 8613; issue 15, item 4): security contexts of the oscore list,
for devices that dial in (their protected pushes and registrations) and for
devices the gateway dials (devices[].oscore).  The peers are libcoap's own
examples, which the project did not write: coap-client-openssl -E and
coap-server-openssl -E (Debian 13's libcoap3-bin 4.3.4 "Have OSCORE").

A build whose libcoap has no OSCORE (Debian 12's 4.3.1) must refuse every
oscore setting with the reason (the first tests); the others skip there,
saying why.  tests/oscore/run-in-trixie.sh runs this file in a Debian 13
container, where they run."""

import json
import os
import re
import shutil
import socket
import subprocess
import time

import pytest

import c2m
from test_cli import EX_CONFIG, assert_clean, run
from test_dialout import free_udp_pair, online, peers  # noqa: F401 (fixture)

COAP_CLIENT = shutil.which("coap-client-openssl") or shutil.which("coap-client-notls")
COAP_SERVER = shutil.which("coap-server-openssl") or shutil.which("coap-server-notls")

SECRET = "0102030405060708090a0b0c0d0e0f10"
SALT = "9e7ca92223786340"
OTHER_SECRET = "f102030405060708090a0b0c0d0e0f10"
NEEDS = re.compile(r"(?:needs libcoap >= 4\.3\.2 built with OSCORE \(this build has libcoap "
                   r"\d+\.\d+\.\d+\S*\)|this build was made without OSCORE \(make OSCORE=0; "
                   r"libcoap \S+\))")


def dialin_ctx(id="soil-1", sender="01", recipient="02", secret=SECRET, **more):
    ctx = {"id": id, "master_secret": secret, "master_salt": SALT,
           "sender_id": sender, "recipient_id": recipient}
    ctx.update(more)
    return ctx


def conf_text(tmp_path, oscore, devices=None, plain=True):
    cfg = {"coap": {"plain_listen": ["127.0.0.1:%d" % c2m.free_port(socket.SOCK_DGRAM)]}
           if plain else {"listen": ["127.0.0.1:%d" % c2m.free_port(socket.SOCK_DGRAM)]},
           "state_dir": str(tmp_path),
           "mqtt": {"host": "127.0.0.1"}}
    if oscore is not None:
        cfg["oscore"] = oscore
    if devices:
        cfg["devices"] = devices
    path = str(tmp_path / "oscore.conf")
    with open(path, "w") as f:
        f.write(c2m.libconfig_text(cfg))
    return path


def line_of(path, text):
    with open(path) as f:
        return [i for i, l in enumerate(f, 1) if text in l][0]


def has_oscore(c2m_bin, tmp_path):
    """(True, None) when this build has OSCORE, else (False, its message)."""
    d = tmp_path / "probe"
    d.mkdir(exist_ok=True)
    rc, out, err = run([c2m_bin, "-t", "-c", conf_text(d, [dialin_ctx()])])
    m = NEEDS.search(out + err)
    return (False, m.group(0)) if m else (rc == 0, None if rc == 0 else out + err)


@pytest.fixture
def oscore_build(c2m_bin, tmp_path):
    ok, why = has_oscore(c2m_bin, tmp_path)
    if not ok:
        pytest.skip("this build has no OSCORE: %s" % why)


def client_ready():
    if not COAP_CLIENT:
        pytest.skip("coap-client-openssl is not installed (Debian libcoap3-bin)")
    out = subprocess.run([COAP_CLIENT], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=10).stdout.decode(errors="replace")
    if "Have OSCORE" not in out:
        pytest.skip("%s has no OSCORE (libcoap < 4.3.2, as Debian 12's)" % COAP_CLIENT)


# --------------------------------------------------------------------------
# a build without OSCORE: -t refuses the settings, with the reason


def saved_seq(path, timeout):
    """The sequence-number bound the gateway saved in 'path'.  The file
    appears when the gateway first protects a message of its own; no event
    says so, hence the poll."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < deadline, "no %s after %s s" % (path, timeout)
        time.sleep(0.2)
    with open(path) as f:
        return int(f.read().strip())

def test_without_oscore_t_refuses_the_list_and_the_device_member(c2m_bin, tmp_path):
    ok, _ = has_oscore(c2m_bin, tmp_path)
    if ok:
        pytest.skip("this build has OSCORE (the refusal is for builds without)")
    conf = conf_text(tmp_path, [dialin_ctx()],
                     devices=[{"id": "lab-1", "uri": "coap://127.0.0.1:5999",
                               "oscore": "lab-ctx"}])
    rc, out, err = run([c2m_bin, "-t", "-c", conf])
    assert rc == EX_CONFIG, (rc, out, err)
    text = out + err
    assert re.search(r"%s:%d: oscore: %s" % (re.escape(conf), line_of(conf, "oscore = ("),
                                             NEEDS.pattern), text), text
    assert re.search(r"%s:%d: devices\[0\]\.oscore: %s"
                     % (re.escape(conf), line_of(conf, 'oscore = "lab-ctx"'), NEEDS.pattern),
                     text), text
    # no key material in the diagnostics
    assert SECRET not in text
    assert_clean(err)


def test_without_oscore_the_daemon_does_not_start_either(c2m_bin, tmp_path):
    ok, _ = has_oscore(c2m_bin, tmp_path)
    if ok:
        pytest.skip("this build has OSCORE")
    conf = conf_text(tmp_path, [dialin_ctx()])
    rc, out, err = run([c2m_bin, "-c", conf])
    assert rc == EX_CONFIG, (rc, out, err)
    assert NEEDS.search(out + err), out + err
    assert_clean(err)


# --------------------------------------------------------------------------
# a build with OSCORE: the settings are checked where they are written

@pytest.mark.parametrize("ctx,where,why", [
    (dialin_ctx(master_secret="0102"), "master_secret", r"must be 16\.\.64 bytes"),
    (dialin_ctx(sender_id="0g"), "sender_id", r"must be hex digits"),
    (dialin_ctx(recipient_id="0102030405060708"), "recipient_id", r"must be 0\.\.7 bytes"),
    (dialin_ctx(aead="AES-GCM"), "aead", r"AES-CCM-16-64-128"),
    (dialin_ctx(replay_window=100), "replay_window", r"1\.\.63"),
    (dialin_ctx(sender="02"), None, r"sender_id and recipient_id must differ"),
    (dialin_ctx(colour="red"), "colour", r"unknown setting"),
    (dict((k, v) for k, v in dialin_ctx().items() if k != "recipient_id"), None,
     r"needs id, master_secret, sender_id and recipient_id"),
])
def test_t_checks_each_context(c2m_bin, tmp_path, oscore_build, ctx, where, why):
    conf = conf_text(tmp_path, [ctx])
    rc, out, err = run([c2m_bin, "-t", "-c", conf])
    assert rc == EX_CONFIG, (rc, out, err)
    name = r"oscore\[0\]" + (r"\." + where if where else "")
    assert re.search(r"%s:\d+: %s: .*%s" % (re.escape(conf), name, why), out + err), out + err
    assert SECRET not in out + err
    assert_clean(err)


def test_t_checks_across_contexts_and_devices(c2m_bin, tmp_path, oscore_build):
    # two dial-in devices with one recipient id; a device naming a context
    # that does not exist; two devices on one context; coaps with oscore
    conf = conf_text(tmp_path, [dialin_ctx("a"), dialin_ctx("b"), dialin_ctx("c", recipient="03")],
                     devices=[{"id": "d1", "uri": "coap://127.0.0.1:5999", "oscore": "nope"},
                              {"id": "d2", "uri": "coap://127.0.0.1:5998", "oscore": "c"},
                              {"id": "d3", "uri": "coap://127.0.0.1:5997", "oscore": "c"},
                              {"id": "d4", "uri": "coaps://127.0.0.1:5996", "oscore": "c",
                               "psk_identity": "x"}])
    rc, out, err = run([c2m_bin, "-t", "-c", conf])
    text = out + err
    assert rc == EX_CONFIG, (rc, text)
    assert re.search(r"oscore\[1\]\.recipient_id: \"02\" is also the recipient_id of \"a\"", text), text
    assert re.search(r"devices\[0\]\.oscore: \"nope\" is not the id of an entry", text), text
    assert re.search(r"devices\[2\]\.oscore: context \"c\" is already used by device \"d2\"", text), text
    assert re.search(r"devices\[3\]: oscore needs a coap:// uri", text), text


def test_t_dialin_needs_plain_listen(c2m_bin, tmp_path, oscore_build):
    conf = conf_text(tmp_path, [dialin_ctx()], plain=False)
    rc, out, err = run([c2m_bin, "-t", "-c", conf])
    assert rc == EX_CONFIG, (rc, out, err)
    assert re.search(r": oscore: devices that dial in with OSCORE need coap\.plain_listen",
                     out + err), out + err


# --------------------------------------------------------------------------
# devices that dial in: coap-client-openssl -E

def device_conf(path, sender="02", recipient="01", secret=SECRET, salt=SALT):
    """libcoap's OSCORE configuration text (coap-oscore-conf(5)) for the
    device's side: its Sender ID is the gateway's recipient_id."""
    with open(path, "w") as f:
        f.write('master_secret,hex,"%s"\nmaster_salt,hex,"%s"\n'
                'sender_id,hex,"%s"\nrecipient_id,hex,"%s"\n' % (secret, salt, sender, recipient))
    return path


class Device:
    """coap-client-openssl -E, its Sender Sequence Number kept in a file
    between runs (as a device keeps it across reboots), from one local
    port when asked."""

    def __init__(self, tmp_path, name, gw_port, **conf):
        self.conf = device_conf(str(tmp_path / ("%s.oscore" % name)), **conf)
        self.seq = str(tmp_path / ("%s.seq" % name))
        self.gw_port = gw_port

    def request(self, method, path, payload=None, port=None, protected=True, timeout=15):
        argv = [COAP_CLIENT, "-B", "4", "-m", method]
        if protected:
            argv += ["-E", "%s,%s" % (self.conf, self.seq)]
        if port:
            argv += ["-p", str(port)]
        if payload is not None:
            argv += ["-e", payload]
        argv.append("coap://127.0.0.1:%d/%s" % (self.gw_port, path))
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
        return p.stdout.decode(errors="replace")


def dialin_gateway(make_gateway, contexts):
    port = c2m.free_port(socket.SOCK_DGRAM)
    gw = make_gateway(overrides={"coap": {"plain_listen": ["127.0.0.1:%d" % port]},
                                 "oscore": contexts})
    gw.plain_port = port
    return gw


def stats(gw, mqtt, pred, timeout=10, start=0):
    return mqtt.wait_for(gw.topic("bridge", "stats"), lambda m: pred(m.json()),
                         timeout=timeout, start=start).json()


def test_dialin_push_and_registration(make_gateway, mqtt, tmp_path, oscore_build):
    client_ready()
    mqtt.subscribe(c2m.BASE + "/#")
    gw = dialin_gateway(make_gateway, [dialin_ctx("soil-1")])
    dev = Device(tmp_path, "soil-1", gw.plain_port)

    # a protected PUT /ps/moisture: the reading arrives under the context's id
    out = dev.request("put", "ps/moisture", "41")
    msg = mqtt.wait_payload(gw.topic("soil-1", "moisture"), "41", timeout=10)
    assert msg.qos == 1, msg.qos        # CON push: QoS 1
    assert "4." not in out and "5." not in out, out

    # a second one (the device's sequence number goes on from its file)
    dev.request("post", "ps/moisture", "42")
    mqtt.wait_payload(gw.topic("soil-1", "moisture"), "42", timeout=10)

    # registration under its own id: 2.01, online, listed
    out = dev.request("post", "rd?ep=soil-1&lt=60", "</moisture>;obs;ct=0")
    assert "4." not in out and "5." not in out, out
    mqtt.wait_for(gw.topic("soil-1", "availability"), lambda m: m.payload == b"online",
                  timeout=10)
    assert gw.log.wait_for(r"soil-1", timeout=5)

    # ... and under another id: 4.03 (ep must be the authenticated identity)
    out = dev.request("post", "rd?ep=other&lt=60", "</moisture>;obs")
    assert "4.03" in out, out

    # the gateway's sequence number is kept in state_dir/oscore/
    # (saved once the gateway sent a request of its own: the observe GET)
    assert saved_seq(os.path.join(gw.state_dir, "oscore", "soil-1.seq"), 10) > 0


def test_dialin_wrong_key_unknown_kid_and_unprotected_are_refused(make_gateway, mqtt,
                                                                  tmp_path, oscore_build):
    client_ready()
    mqtt.subscribe(c2m.BASE + "/#")
    gw = dialin_gateway(make_gateway, [dialin_ctx("soil-2")])
    good = Device(tmp_path, "good", gw.plain_port)
    wrong = Device(tmp_path, "wrong", gw.plain_port, secret=OTHER_SECRET)
    stranger = Device(tmp_path, "stranger", gw.plain_port, sender="07")
    pos = mqtt.mark()

    out = wrong.request("put", "ps/moisture", "666")
    assert "4.0" in out, out            # libcoap answers 4.00/4.01
    out = stranger.request("put", "ps/moisture", "667")
    assert "4.01" in out, out           # no context for kid 07
    s = stats(gw, mqtt, lambda s: s.get("oscore_refused", 0) >= 2, start=pos)
    assert s["pushes_in"] == 0, s

    # the good key from a fixed port, then an unprotected push from there
    port = c2m.free_port(socket.SOCK_DGRAM)
    good.request("put", "ps/moisture", "43", port=port)
    mqtt.wait_payload(gw.topic("soil-2", "moisture"), "43", timeout=10)
    pos2 = mqtt.mark()
    good.request("put", "ps/moisture", "668", port=port, protected=False, timeout=20)
    stats(gw, mqtt, lambda s: s.get("oscore_unprotected", 0) >= 1, start=pos2)
    for m in mqtt.received(c2m.BASE + "/#", pos):
        assert m.payload not in (b"666", b"667", b"668"), m
    assert gw.log.find(r"unprotected request from 127\.0\.0\.1:%d.*soil-2.*dropped" % port), \
        gw.log.tail(30)


def test_dialin_sequence_number_survives_a_restart(make_gateway, mqtt, tmp_path, oscore_build):
    """The gateway's Sender Sequence Number goes on from state_dir after a
    restart (RFC 8613 7.2.1): a nonce is never used twice."""
    client_ready()
    mqtt.subscribe(c2m.BASE + "/#")
    gw = dialin_gateway(make_gateway, [dialin_ctx("soil-3")])
    dev = Device(tmp_path, "soil-3", gw.plain_port)
    # registering makes the gateway send protected requests (observe GET)
    dev.request("post", "rd?ep=soil-3&lt=60", "</moisture>;obs")
    seq = os.path.join(gw.state_dir, "oscore", "soil-3.seq")
    first = saved_seq(seq, 15)
    assert first >= 1
    assert gw.stop() == 0
    gw.respawn()
    gw.log.wait_for(r"oscore soil-3: .*sequence number from %d\)" % first, timeout=10)
    # the device's replay window was reset by the restart: libcoap's
    # Echo round trip (RFC 8613 B.1.2) makes it send again, and it lands
    dev.request("put", "ps/moisture", "44")
    mqtt.wait_payload(gw.topic("soil-3", "moisture"), "44", timeout=15)


ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.fixture
def oscore_peer(tmp_path):
    """tests/oscore/peer.c built against this box's libcoap: a device that
    registers over OSCORE and then serves /moisture (observable) and
    /setpoint on that session (libcoap's code only)."""
    out = str(tmp_path / "oscore-peer")
    try:
        cflags = subprocess.run(["pkg-config", "--cflags", "--libs", "libcoap-3-openssl"],
                                stdout=subprocess.PIPE, check=True, timeout=10).stdout.split()
        subprocess.run(["cc", "-std=c11", "-D_GNU_SOURCE", "-o", out,
                        os.path.join(ROOT, "tests", "oscore", "peer.c")]
                       + [c.decode() for c in cflags],
                       check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip("cannot build tests/oscore/peer.c: %s" % e)
    return out


def test_dialin_observe_and_commands_back(make_gateway, mqtt, peers, tmp_path,  # noqa: F811
                                          oscore_build, oscore_peer):
    """A device that registers over OSCORE is observed and commanded on
    that session, every message protected with its context."""
    mqtt.subscribe(c2m.BASE + "/#")
    gw = dialin_gateway(make_gateway, [dialin_ctx("soil-4")])
    conf = device_conf(str(tmp_path / "soil-4.oscore"))
    dev = peers("oscore-peer", [oscore_peer, conf, str(tmp_path / "soil-4.seq"),
                                "127.0.0.1", str(gw.plain_port), "soil-4"]).start()
    dev.log.wait_for(r"^REGISTERED 2\.01$", timeout=10)
    online(gw, mqtt, "soil-4")
    dev.log.wait_for(r"^OBSERVED$", timeout=10)
    # notifications every second, in order, none taken as stale
    first = int(mqtt.wait_for(gw.topic("soil-4", "moisture"), timeout=10).payload)
    mqtt.wait_payload(gw.topic("soil-4", "moisture"), str(first + 2), timeout=10)
    s = stats(gw, mqtt, lambda s: s.get("notifications_in", 0) >= 3)
    assert s["notifications_stale"] == 0, s
    assert s["oscore_refused"] == 0, s
    # a command goes back on the device's session, protected
    pos = mqtt.mark()
    mqtt.publish(gw.topic("soil-4", "setpoint", "set"), b"23.5", qos=1)
    dev.log.wait_for(r"^PUT /setpoint 23\.5$", timeout=10)
    res = mqtt.wait_for(gw.topic("soil-4", "setpoint", "set", "result"), timeout=10, start=pos)
    assert res.json().get("code") == "2.04", res.payload


# --------------------------------------------------------------------------
# devices the gateway dials: coap-server-openssl -E

def server_conf(path, secret=SECRET):
    with open(path, "w") as f:
        f.write('master_secret,hex,"%s"\nmaster_salt,hex,"%s"\n'
                'sender_id,hex,"03"\nrecipient_id,hex,"04"\n' % (secret, SALT))
    return path


def oscore_server(peers, tmp_path, port, secret=SECRET, name="coap-server-oscore"):  # noqa: F811
    client_ready()
    if not COAP_SERVER:
        pytest.skip("coap-server-openssl is not installed (Debian libcoap3-bin)")
    conf = server_conf(str(tmp_path / ("%s.oscore" % name)), secret)
    seq = str(tmp_path / ("%s.seq" % name))
    return peers(name, [COAP_SERVER, "-A", "127.0.0.1", "-p", str(port), "-v", "7",
                        "-E", "%s,%s" % (conf, seq)]).start()


def dialout_ctx(secret=SECRET):
    return {"id": "lab-ctx", "master_secret": secret, "master_salt": SALT,
            "sender_id": "04", "recipient_id": "03"}


TIME_RE = re.compile(rb"^[A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d$")


def test_dialout_observe_notifications_and_set(make_gateway, mqtt, peers, tmp_path,  # noqa: F811
                                               oscore_build):
    port = free_udp_pair()
    srv = oscore_server(peers, tmp_path, port)
    mqtt.subscribe(c2m.BASE + "/#")
    gw = make_gateway(overrides={
        "oscore": [dialout_ctx()],
        "devices": [{"id": "lab-o", "uri": "coap://127.0.0.1:%d" % port,
                     "oscore": "lab-ctx", "observe": ["time"]}]})
    online(gw, mqtt, "lab-o")
    # /time notifies every second: several in order, none taken as stale
    first = mqtt.wait_for(gw.topic("lab-o", "time"), lambda m: TIME_RE.match(m.payload),
                          timeout=10)
    pos = mqtt.mark()
    for _ in range(3):
        m = mqtt.wait_for(gw.topic("lab-o", "time"), timeout=5, start=pos)
        pos = mqtt.mark()
        assert TIME_RE.match(m.payload) and m.payload != first.payload, m
    s = stats(gw, mqtt, lambda s: s.get("notifications_in", 0) >= 4)
    assert s["notifications_stale"] == 0, s
    # the server saw protected requests only
    assert srv.log.find(r"Decrypted PDU"), srv.log.tail(40)

    # a command: PUT /time reaches the server (decrypted there), 2.04 back
    pos = mqtt.mark()
    mqtt.publish(gw.topic("lab-o", "time", "set"), b"1000", qos=1)
    res = mqtt.wait_for(gw.topic("lab-o", "time", "set", "result"), timeout=10, start=pos)
    assert res.json().get("code") == "2.04", res.payload
    srv.log.wait_for(r"c:PUT .*Uri-Path:time.*'1000'", timeout=5)
    # the sequence number of the context is kept in state_dir/oscore/
    with open(os.path.join(gw.state_dir, "oscore", "lab-ctx.seq")) as f:
        assert int(f.read()) > 0


def test_dialout_wrong_key_never_comes_online(make_gateway, mqtt, peers, tmp_path,  # noqa: F811
                                              oscore_build):
    port = free_udp_pair()
    oscore_server(peers, tmp_path, port, secret=OTHER_SECRET)
    mqtt.subscribe(c2m.BASE + "/#")
    gw = make_gateway(overrides={
        "oscore": [dialout_ctx()],
        "devices": [{"id": "lab-w", "uri": "coap://127.0.0.1:%d" % port,
                     "oscore": "lab-ctx", "observe": ["time"]}]})
    # the server refuses with an unprotected 4.00/4.01: dropped and counted,
    # the device stays offline and is dialled again
    s = stats(gw, mqtt, lambda s: s.get("oscore_unprotected", 0) >= 1, timeout=15)
    assert s["dialout_up"] == 0, s
    gw.log.wait_for(r"device lab-w .*no answer to GET /.well-known/core", timeout=15)
    assert not mqtt.received(gw.topic("lab-w", "time"))
    assert not [m for m in mqtt.received(gw.topic("lab-w", "availability"))
                if m.payload == b"online"]


@pytest.mark.timeout(90)
def test_dialout_device_restart_is_dialled_again(make_gateway, mqtt, peers, tmp_path,  # noqa: F811
                                                 oscore_build):
    """The device restarts (its replay window empty, its sequence number
    kept): the gateway dials it again on a new session, from the sequence
    number it saved, and the notifications come back."""
    port = free_udp_pair()
    srv = oscore_server(peers, tmp_path, port)
    mqtt.subscribe(c2m.BASE + "/#")
    gw = make_gateway(overrides={
        "oscore": [dialout_ctx()],
        "devices": [{"id": "lab-r", "uri": "coap://127.0.0.1:%d" % port,
                     "oscore": "lab-ctx", "observe": ["time"], "keepalive": 1}]})
    online(gw, mqtt, "lab-r")
    mqtt.wait_for(gw.topic("lab-r", "time"), timeout=10)
    pos = mqtt.mark()
    srv.kill()
    mqtt.wait_for(gw.topic("lab-r", "availability"), lambda m: m.payload == b"offline",
                  timeout=10, start=pos)
    srv.start()
    pos = mqtt.mark()
    online(gw, mqtt, "lab-r", timeout=30, start=pos)
    mqtt.wait_for(gw.topic("lab-r", "time"), lambda m: TIME_RE.match(m.payload),
                  timeout=10, start=pos)
    s = stats(gw, mqtt, lambda s: s.get("dialout_up", 0) >= 2)
    assert s["dialout_lost"] >= 1, s



def test_damaged_sequence_number_file_stops_the_start(make_gateway, tmp_path, oscore_build):
    """A sequence number that cannot be read is not guessed (a guess could
    reuse nonces): the gateway refuses to start and says why."""
    seq_dir = tmp_path / "gw1-state" / "oscore"
    seq_dir.mkdir(parents=True)
    (seq_dir / "soil-5.seq").write_text("garbage\n")
    port = c2m.free_port(socket.SOCK_DGRAM)
    gw = make_gateway(overrides={"coap": {"plain_listen": ["127.0.0.1:%d" % port]},
                                 "oscore": [dialin_ctx("soil-5")]}, wait=False)
    gw.expect_death = True
    gw.proc.wait(15)
    assert gw.proc.returncode != 0
    gw.log.wait_for(r"oscore soil-5: .*soil-5\.seq is damaged; refusing to guess", timeout=5)
    assert not gw.sanitizer_reports(), gw.sanitizer_reports()
