"""What real fleets do to a gateway: sensors that reboot onto the same
source port, sleep past a command's lifetime, or all dial in at once."""

import selectors
import socket
import threading
import time

import pytest

import c2m
import rawcoap as rc
import sec


def command_carried(gateway, s, mqtt, value):
    """A setpoint command reaches hvac-1 (the simulator 's') on its current
    session and is answered 2.04."""
    setpoint = gateway.topic("hvac-1", "setpoint")
    mqtt.subscribe(setpoint + "/set/result")
    smark = s.mark()
    mqtt.publish(setpoint + "/set", value.encode())
    s.wait_for(r"^PUT hvac-1 setpoint \d+ %s$" % value.replace(".", "\\."), timeout=10,
               start=smark)
    assert mqtt.wait_for(setpoint + "/set/result", timeout=10).json()["code"] == "2.04"


def test_reboot_from_same_source_port_recovers_fast(gateway, sim, mqtt):
    """OpenSSL lacks RFC 6347 4.2.8: without the gateway noticing, a sensor
    rebooting onto its old source port is stuck about 31 s."""
    port = c2m.free_port(c2m.socket.SOCK_DGRAM)
    s = sim("hvac", extra_args=["--port", str(port), "--reboot-after", "2",
                                "--interval", "500"])
    s.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=15)
    _, pos = s.out.wait_line(r"^REBOOT hvac-1$", timeout=10)
    t0 = time.monotonic()
    s.wait_for(r"^REGISTERED hvac-1 2\.01$", timeout=15, start=pos)
    s.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=10, start=pos)
    took = time.monotonic() - t0
    assert took < 10, "back after %.1fs" % took
    # And the new session carries commands.
    command_carried(gateway, s, mqtt, "16.5")


def test_command_expires_while_device_sleeps(make_gateway, sim, mqtt):
    gw = make_gateway(overrides={"commands": {"ttl": 1}})
    setpoint = gw.topic("hvac-1", "setpoint")
    mqtt.subscribe(setpoint + "/set/result")
    s = sim("hvac", extra_args=["--lifetime", "60", "--sleep-after", "1",
                                "--sleep-for", "5", "--interval", "60000"])
    s.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=15)
    _, pos = s.out.wait_line(r"^SLEEP hvac-1$", timeout=10)
    mqtt.publish(setpoint + "/set", b"26.5")
    doc = mqtt.wait_for(setpoint + "/set/result", timeout=10).json()
    assert "error" in doc and "code" not in doc, doc
    # Once awake the sensor must not get the stale command; a fresh one is
    # the fence.
    s.wait_for(r"^WAKE hvac-1$", timeout=10, start=pos)
    s.wait_for(r"^(REGISTERED|OBSERVED|NOTIFY|PUSH) hvac-1\b", timeout=15, start=pos)
    mqtt.publish(setpoint + "/set", b"27.5")
    s.wait_for(r"^PUT hvac-1 setpoint 4 27\.5$", timeout=15, start=pos)
    assert not s.out.find(r"^PUT hvac-1 setpoint 4 26\.5$", pos)


@pytest.mark.slow
def test_burst_of_200_sensors(make_gateway, sim, mqtt, psk_file):
    """All at once, as after a gateway restart: every one gets in."""
    n = 200
    for i in range(1, n + 1):
        psk_file.add("burst-%d" % i)
    gw = make_gateway()
    t0 = time.monotonic()
    s = sim("meter", count=n, extra_args=["--prefix", "burst-", "--interval", "5000"])
    for i in range(1, n + 1):
        s.wait_for(r"^REGISTERED burst-%d 2\.01$" % i, timeout=max(5, 90 - (time.monotonic() - t0)))
    # Every sensor's readings reach the broker.
    energy = gw.topic("+", "energy")
    mqtt.subscribe(energy)
    want = {gw.topic("burst-%d" % i, "energy") for i in range(1, n + 1)}
    mqtt.wait_for(energy, lambda m: want <= {x.topic for x in mqtt.received(energy)},
                  timeout=60)


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_command_to_vanished_device_times_out(gateway, sim, mqtt):
    """RFC 7252 backoff: up to ~93 s of retransmissions, then a timeout."""
    setpoint = gateway.topic("hvac-1", "setpoint")
    mqtt.subscribe(setpoint + "/set/result")
    s = sim("hvac", extra_args=["--interval", "60000"])
    s.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=15)
    s.expect_death = True
    s.stop(c2m.signal.SIGKILL)
    t0 = time.monotonic()
    mqtt.publish(setpoint + "/set", b"25.0")
    doc = mqtt.wait_for(setpoint + "/set/result", timeout=150).json()
    took = time.monotonic() - t0
    assert doc.get("error") == "timeout", doc
    assert 40 < took < 120, "timeout reported after %.0fs" % took


def test_device_on_a_new_session_is_reassociated_at_once(gateway, sim, mqtt):
    """A registered device that comes back on a new DTLS session from
    another source port (a NAT rebinding, a tracker changing networks)
    and does not register again is re-associated as soon as its handshake
    ends: its observations are re-established on the new session and its
    commands delivered there, not after the old state times out."""
    s = sim("hvac", extra_args=["--roam-after", "3", "--interval", "500"])
    s.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=15)
    _, pos = s.out.wait_line(r"^ROAM hvac-1$", timeout=10)
    t0 = time.monotonic()
    # every observable resource observed again, on the new session
    s.wait_for(r"^OBSERVED hvac-1 temperature$", timeout=10, start=pos)
    s.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=10, start=pos)
    took = time.monotonic() - t0
    assert not s.out.find(r"^REGISTERED hvac-1", start=pos), "the sensor registered again"
    command_carried(gateway, s, mqtt, "17.5")
    doc = sec.stats(mqtt, gateway, lambda d: d.get("sessions_reassociated", 0) >= 1, timeout=15)
    assert doc["sessions_reassociated"] == 1, doc
    print("REASSOCIATED after %.2f s" % took)


def _recv_queue(addr, port):
    """Bytes waiting in the UDP socket bound to addr:port (ss -uan)."""
    out = c2m.subprocess.run(["ss", "-uanH", "src", "%s:%d" % (addr, port)],
                             capture_output=True, text=True, check=True).stdout
    return sum(int(line.split()[1]) for line in out.splitlines() if line.split())


def test_old_session_of_a_device_back_elsewhere_is_ended(gateway, sim, mqtt):
    """A device asleep with a command in flight comes back authenticated
    from another address (a reboot onto a new port, a NAT rebinding): its
    old session is dead to it.  The command moves to the new session, and
    the old address gets no second copy: libcoap would retransmit it there
    for up to 93 s (and every such CON lengthens the one list libcoap
    walks for each CON sent or acknowledged: in a reconnect storm those
    walks stalled the gateway)."""
    setpoint = gateway.topic("hvac-1", "setpoint")
    mqtt.subscribe(setpoint + "/set/result")
    port = c2m.free_port(c2m.socket.SOCK_DGRAM)
    old = sim("hvac", extra_args=["--port", str(port), "--interval", "60000"])
    old.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=15)
    addr = old.bind                     # the first sensor's address
    old.proc.send_signal(c2m.signal.SIGSTOP)
    before = _recv_queue(addr, port)
    mqtt.publish(setpoint + "/set", b"18.5")
    # The command's CON has reached the old (stopped) device's socket.
    deadline = time.monotonic() + 10
    while _recv_queue(addr, port) == before:
        assert time.monotonic() < deadline, "the command never reached the old session"
        time.sleep(0.05)
    new = sim("hvac", extra_args=["--interval", "60000"])
    new.wait_for(r"^PUT hvac-1 setpoint \d+ 18\.5$", timeout=15)
    assert mqtt.wait_for(setpoint + "/set/result", timeout=10).json()["code"] == "2.04"
    # The old device is gone for good; whatever the gateway still sends to
    # its address now arrives here.  Retransmissions of the CON would come
    # 2-3 s after it was sent, then 4-6 s later.
    old.expect_death = True
    old.stop(c2m.signal.SIGKILL)
    with c2m.socket.socket(c2m.socket.AF_INET, c2m.socket.SOCK_DGRAM) as s:
        s.bind((addr, port))
        s.settimeout(0.5)
        got = []
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                got.append(s.recv(2048))
            except c2m.socket.timeout:
                pass
    assert not got, "%d datagrams to the old session's address after the device left it" % len(got)


def test_data_on_a_session_lost_in_a_restart_is_dropped_as_read(gateway, sim, mqtt):
    """After kill -9 and a restart the gateway holds no session for a
    device still writing on its old one.  Its DTLS records are dropped as
    they are read, counted (dtls_no_session) and logged once, before
    libcoap would walk every session of the endpoint for each; the device
    is back as soon as it notices (an unanswered CON)."""
    s = sim("hvac", extra_args=["--interval", "300", "--con", "--max-retransmit", "1"])
    s.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=15)
    gateway.expect_death = True
    gateway.stop(c2m.signal.SIGKILL)
    mark = s.mark()
    gateway.respawn()
    gateway.log.wait_for(r"dtls: data from 127\.[0-9.]+, which has no session here", timeout=15)
    sec.stats(mqtt, gateway, lambda d: d.get("dtls_no_session", 0) >= 1, timeout=15)
    s.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=30, start=mark)


def test_a_clienthello_that_waited_over_a_second_is_shed(gateway, sim, mqtt):
    """Overload: a ClientHello read more than 1 s after it arrived was
    already sent again (or given up) by its device, so answering it only
    adds work.  Such hellos are dropped as they are read, counted
    (handshakes_shed) and logged; a fresh hello behind them is answered and
    its device registers as usual."""
    stale_from = ("127.0.7.9", c2m.free_port(c2m.socket.SOCK_DGRAM, "127.0.7.9"))
    # DTLS record: handshake (22), DTLS 1.2, epoch 0, ClientHello (1).
    hello = bytes([22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 60, 1]) + bytes(59)
    gateway.proc.send_signal(c2m.signal.SIGSTOP)
    try:
        with c2m.socket.socket(c2m.socket.AF_INET, c2m.socket.SOCK_DGRAM) as s:
            s.bind(stale_from)
            s.sendto(hello, ("127.0.0.1", gateway.port))
        # Not a wait for an event: the hello's age is what is under test.
        time.sleep(1.5)
        s = sim("hvac", extra_args=["--interval", "300"])
    finally:
        gateway.proc.send_signal(c2m.signal.SIGCONT)
    gateway.log.wait_for(r"dtls: ClientHello from 127\.0\.7\.9 waited [0-9]+ ms to be read "
                         r"\(overloaded\): dropped", timeout=15)
    s.wait_for(r"^REGISTERED hvac-1 2\.01$", timeout=30)
    doc = sec.stats(mqtt, gateway, lambda d: d.get("handshakes_shed", 0) >= 1, timeout=15)
    assert doc["handshakes_shed"] == 1, "only the stale hello is shed: %r" % doc


def _server_hello(sock, timeout=5):
    """The random of the next ServerHello the socket receives."""
    deadline = time.monotonic() + timeout
    while True:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(4096)
        except c2m.socket.timeout:
            raise c2m.Timeout("no ServerHello in %s s" % timeout)
        random = sec.server_hello_random(data)
        if random:
            return random


def test_a_handshake_under_way_survives_a_stall_and_its_own_copy(gateway):
    """A ClientHello with our cookie is the second step of a handshake
    under way: read after a stall of 1.5 s it is answered all the same (a
    stale hello without one is shed, above).  A copy of it (the device's
    retransmission) goes to the handshake it started, which answers with
    the same ServerHello: starting over would send the device a second one
    it ignores, and its Finished, made with the first, would fail."""
    hello = sec.capture_client_hello()
    with c2m.socket.socket(c2m.socket.AF_INET, c2m.socket.SOCK_DGRAM) as s:
        s.bind((c2m.peer_addr(), 0))
        s.settimeout(5)
        s.sendto(hello, ("127.0.0.1", gateway.port))
        cookie = sec.hello_verify_cookie(s.recv(4096))
        assert cookie, "no HelloVerifyRequest"
        second = sec.hello_with_cookie(hello, cookie)
        mark = gateway.log.mark()
        gateway.proc.send_signal(c2m.signal.SIGSTOP)
        try:
            s.sendto(second, ("127.0.0.1", gateway.port))
            # Not a wait for an event: the hello's age is what is under test.
            time.sleep(1.5)
        finally:
            gateway.proc.send_signal(c2m.signal.SIGCONT)
        first = _server_hello(s)
        copy = sec.hello_with_cookie(hello, cookie, record_seq=2)
        s.sendto(copy, ("127.0.0.1", gateway.port))       # the device's retransmission
        assert _server_hello(s) == first, "the copy started the handshake over"
    assert not gateway.log.find(r"waited [0-9]+ ms to be read", mark), gateway.log.tail(10)
    assert not gateway.log.find(r"starts a new handshake over its unfinished one", mark), \
        gateway.log.tail(10)



class _HelloRelay:
    """UDP between a device and the gateway, from an address of ours: the
    gateway sees the relay as the device.  Keeps the device's ClientHellos
    (the one that answered our HelloVerifyRequest carries the cookie)."""

    def __init__(self, gw_port):
        self.gw = ("127.0.0.1", gw_port)
        self.dev_side = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.dev_side.bind(("127.0.0.1", 0))
        self.gw_side = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.gw_side.bind((c2m.peer_addr(), 0))
        self.listen_host, self.port = "127.0.0.1", self.dev_side.getsockname()[1]
        self.device, self.hellos = None, []
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.dev_side, selectors.EVENT_READ)
        self.sel.register(self.gw_side, selectors.EVENT_READ)
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            for key, _ in self.sel.select(timeout=0.2):
                try:
                    data, addr = key.fileobj.recvfrom(4096)
                except OSError:
                    return
                if key.fileobj is self.dev_side:
                    self.device = addr
                    if len(data) > 60 and data[0] == 22 and data[13] == 1:
                        self.hellos.append(data)
                    self.gw_side.sendto(data, self.gw)
                elif self.device:
                    self.dev_side.sendto(data, self.device)

    def close(self):
        self.running = False
        self.thread.join(timeout=2)
        self.sel.close()
        self.dev_side.close()
        self.gw_side.close()


def test_a_late_copy_of_its_hello_leaves_a_session_up(gateway, sim, mqtt):
    """A copy of the ClientHello that opened a session, arriving after the
    session is up (it waited behind a storm in a socket), carries a valid
    cookie, but it is no new handshake: same random.  It used to retire the
    session; a device with nothing to send (nothing observed yet) never
    noticed, and one unit of a 10,000-unit reconnect storm stayed
    unobserved until its registration refresh.  The session stays."""
    relay = _HelloRelay(gateway.port)
    try:
        s = sim("hvac", gw=relay, extra_args=["--interval", "500"])
        s.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=15)
        with_cookie = [h for h in relay.hellos if h[60 + h[59]] > 0]
        assert with_cookie and len(relay.hellos) > len(with_cookie), \
            "no cookie exchange seen: %d hellos" % len(relay.hellos)
        before = sec.stats(mqtt, gateway)
        mark = gateway.log.mark()
        relay.gw_side.sendto(with_cookie[-1], relay.gw)     # the late copy
        # Then a hello with no cookie and another random, through the same
        # socket: a session that is up answers it with a HelloVerifyRequest
        # and counts it, so the copy before it has been dealt with.
        fence = bytearray(relay.hellos[0])
        fence[40] ^= 0xff                                   # in the random (27-58)
        relay.gw_side.sendto(bytes(fence), relay.gw)
        after = sec.stats(mqtt, gateway, lambda d: sec.counter(d, "rehandshake_cookies") >
                          sec.counter(before, "rehandshake_cookies") or
                          sec.counter(d, "sessions_reset") > sec.counter(before, "sessions_reset"),
                          timeout=10)
        assert sec.counter(after, "sessions_reset") == sec.counter(before, "sessions_reset"), \
            "the copy retired the session: %s" % gateway.log.tail(5)
        assert not gateway.log.find(r"new handshake", mark), gateway.log.tail(10)
        command_carried(gateway, s, mqtt, "17.5")           # the session is the same
    finally:
        relay.close()


def test_observe_gets_wait_for_a_place_in_the_window(make_gateway, mqtt):
    """300 devices register at once and none answers its observe GET yet
    (busy, or its answer still unread behind a storm).  libcoap walks its
    send queue on every insertion and every answer, so the gateway keeps
    at most 256 GETs sent in the last ACK_TIMEOUT (2 s) unanswered: the
    other 44 devices get theirs only when the first GETs are 2 s old.  As
    answers come every resource is observed, and then no place is held."""
    n, window = 300, 256
    plain = c2m.free_port(c2m.socket.SOCK_DGRAM)
    gw = make_gateway(overrides={"coap": {"plain_listen": ["127.0.0.1:%d" % plain]}})
    addr = c2m.peer_addr()
    devices = [rc.Client("127.0.0.1", plain, local=addr) for _ in range(n)]
    first_get = {}          # device -> when its first GET came
    registered = set()
    ready = selectors.DefaultSelector()
    for i, d in enumerate(devices):
        d.sock.setblocking(False)
        ready.register(d.sock, selectors.EVENT_READ, i)

    def poll(answer):
        for key, _ in ready.select(timeout=0.5):
            i, d = key.data, devices[key.data]
            while True:
                try:
                    pdu = rc.Pdu(d.sock.recv(2048))
                except BlockingIOError:
                    break
                if pdu.type == rc.ACK and pdu.code == "2.01":
                    registered.add(i)
                elif pdu.type == rc.CON and pdu.code == "0.01":
                    first_get.setdefault(i, time.monotonic())
                    if answer:
                        d.send(rc.encode(rc.ACK, 0x45, pdu.mid, pdu.token,
                                         [(6, rc.uint(1)), (rc.CONTENT_FORMAT, rc.uint(0))],
                                         b"1"))
    try:
        for i, d in enumerate(devices):     # all at once, answers read after
            d.send(rc.encode(rc.CON, rc.POST, d.next_mid(), b"r%d" % i,
                             rc.path_options("rd?ep=ow-%d&lt=600" % i) +
                             [(rc.CONTENT_FORMAT, rc.uint(40))], b"</t>;obs;ct=0"))
        deadline = time.monotonic() + 30
        while len(first_get) < n:           # nobody answers a GET yet
            assert time.monotonic() < deadline, \
                "%d of %d registered, %d got a GET" % (len(registered), n, len(first_get))
            poll(answer=False)
        assert len(registered) == n
        t0 = min(first_get.values())
        early = sum(1 for t in first_get.values() if t < t0 + 1.9)
        assert early <= window, "%d GETs unanswered in their first 2 s" % early
        late = sorted(t - t0 for t in first_get.values())[window:]
        assert late and late[0] >= 1.9, late[:5]
        # Now every device answers (2.05, Observe), and retransmissions too.
        deadline = time.monotonic() + 30
        while True:
            poll(answer=True)
            doc = sec.stats(mqtt, gw, timeout=5)
            if doc.get("observe_gets") == 0 and doc.get("observe_gets_waiting") == 0 and \
                    doc.get("notifications_in", 0) >= n:
                break
            assert time.monotonic() < deadline, doc
        assert doc["observations_started"] >= n, doc
    finally:
        ready.close()
        for d in devices:
            d.close()
