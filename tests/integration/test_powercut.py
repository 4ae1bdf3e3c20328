"""
Power cuts (issue 13): with queue.durability = "power" (the default) a
reading a device was answered 2.04 for is on stable storage, and survives
the power going away at any moment.

The gateway runs with tests/powercut/pcut.c preloaded: the real files of
its state_dir play the page cache, and a shadow directory holds only what
was fsync'ed/fdatasync'ed (data) and what the directory fsyncs made
durable (names).  A cut is a SIGKILL, either by the library itself at the
Nth event of a kind (a segment created, a record written, the acked
position written, before or after a file's sync, before a directory's, an
unlink, a rename) or from outside after some acknowledged readings; then
state_dir is rebuilt from the shadow (tests/powercut/restore.py) and the
gateway restarted on what survived.  Each round has its own fleet of
meters (many 127.x addresses) pushing CON readings; after the last round
every reading acknowledged before any cut must be on the broker, in order
per device, and duplicates are counted (at least once).

Figures: "FAULTS powercut-... {json}" lines (pytest -s), and
$C2M_FAULTS_REPORT; docs/RELIABILITY.md quotes them.
"""

import os
import random
import signal
import sys
import time

import pytest

import c2m
import faults

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "powercut"))
import restore  # noqa: E402

SENSORS = 8
RATE = 10

# Cut points: (kind, N).  "time" cuts from outside after N acknowledged
# readings of the round.  Each kind is counted from the moment the round's
# load runs (the first 10 readings acknowledged), not from the start,
# which opens the spool and rewrites the command journal (a create, a
# sync, a rename, a directory sync) before any reading arrives.
SHORT_POINTS = [
    ("create", 3), ("create", 6), ("create", 11),           # a new segment (rotation)
    ("write", 30), ("write", 120), ("write", 260),          # a record, not yet synced
    ("acked", 2), ("acked", 5), ("acked", 9),               # the position, not yet synced
    ("presync", 8), ("presync", 20),                        # before a sync
    ("sync", 6), ("sync", 15), ("sync", 40),                # synced, the caller not told
    ("dirsync", 3), ("dirsync", 6),                         # before a directory's fsync
    ("unlink", 2), ("unlink", 5),                           # a segment deleted
    ("time", 40), ("time", 90), ("time", 160), ("time", 250),
]


# Points that need deliveries (segments deleted, the position moving) run
# with the broker up; the others with the broker away, so that what the
# devices were told about lives in the spool alone when the power goes.
UP_KINDS = {"create", "acked", "unlink", "dirsync"}


def pcut_lib():
    tools = os.environ.get("C2M_TOOLS") or os.path.dirname(os.environ.get("C2M_BIN", ""))
    for d in (tools, os.path.join(HERE, "..", "..", "build", "san"),
              os.path.join(HERE, "..", "..", "build")):
        p = os.path.join(d or ".", "libc2m-pcut.so")
        if os.path.exists(p):
            return os.path.abspath(p)
    pytest.skip("libc2m-pcut.so not built (make SAN=1 pcut)")


def arm(gw, shadow, point):
    env = {"LD_PRELOAD": pcut_lib(), "C2M_PCUT_DIR": os.path.abspath(gw.state_dir),
           "C2M_PCUT_SHADOW": shadow,
           # the library is preloaded ahead of the sanitizer's runtime
           "ASAN_OPTIONS": "detect_leaks=0:verify_asan_link_order=0:abort_on_error=0:exitcode=23"}
    if point and point[0] != "time":
        env["C2M_PCUT_AT"] = "%s:%d" % point
        env["C2M_PCUT_ARM"] = shadow + ".arm"
    if os.path.exists(shadow + ".arm"):
        os.unlink(shadow + ".arm")
    gw.extra_env = env


def wait_dead(gw, timeout):
    """Whether the gateway's process exits (its own cut) within 'timeout'."""
    try:
        gw.proc.wait(timeout=timeout)
    except c2m.subprocess.TimeoutExpired:
        return False
    return True


def acks_of(sims):
    acked = set()
    for s in sims:
        acked |= faults.device_acks(s)[0]
    return acked


def one_round(r, point, gw, sim, broker, shadow, sims, load_timeout):
    """Load, then the cut; returns how it happened and the round's acks."""
    prefix = "pc%d-" % r
    if point[0] not in UP_KINDS:
        assert broker.stop() == 0
    s = sim("meter", count=SENSORS,
            extra_args=["--prefix", prefix, "--push", "--con", "--rate", str(RATE),
                        "--lifetime", "3600"])
    s.expect_death = False
    sims.append(s)
    kind, n = point
    how = "self"
    # the points count from here: 10 readings acknowledged in this round
    pos = 0
    for _ in range(10):
        _, pos = s.out.wait_line(faults_acked(), timeout=load_timeout, start=pos)
    open(shadow + ".arm", "w").close()
    if kind == "time":
        pos = s.mark()
        deadline = time.monotonic() + load_timeout
        for _ in range(n):
            _, pos = s.out.wait_line(faults_acked(), timeout=max(0.1, deadline - time.monotonic()),
                                     start=pos)
        # anywhere within the next 100 ms
        time.sleep(random.uniform(0, 0.1))
        how = "outside"
        gw.stop(signal.SIGKILL)
    elif not wait_dead(gw, load_timeout):
        how = "outside (point not reached)"
        gw.stop(signal.SIGKILL)
    gw.stop(signal.SIGKILL)             # collects its exit
    gw.expect_death = True
    s.stop()
    if point[0] not in UP_KINDS:
        broker.start()
    cut_line = [l for l in gw.log.lines if "pcut: power cut" in l]
    return how, (cut_line[0] if cut_line else ""), len(faults.device_acks(s)[0])


def faults_acked():
    return r"^PUSH \S+ energy \d+ 2\.04$"


def power_cuts(make_gateway, sim, broker, mqtt_factory, psk_file, tmp_path, points, name):
    for r in range(len(points)):
        for i in range(1, SENSORS + 1):
            psk_file.add("pc%d-%d" % (r, i))
    faults.unlimit_broker(broker)           # applies when the broker comes back
    shadow = str(tmp_path / "pcut-shadow")
    # C2M_PCUT_DURABILITY=process shows what the old behaviour loses
    mode = os.environ.get("C2M_PCUT_DURABILITY", "power")
    gw = make_gateway(wait=False, overrides={"queue": {"durability": mode}})
    gw.stop()                               # the first start only wrote the config
    gw.expect_death = True
    watch = mqtt_factory(clean_start=False, session_expiry=3600)
    watch.subscribe(gw.topic("+", "energy"))
    sims, rounds = [], []
    for r, point in enumerate(points):
        arm(gw, shadow, point)
        gw.respawn()
        gw.log.wait_for(r"ready:", timeout=30)
        how, line, acked = one_round(r, point, gw, sim, broker, shadow, sims, 25)
        restore.restore(shadow, gw.state_dir)
        rounds.append({"point": "%s:%d" % point, "cut": how, "acked": acked,
                       "broker": "up" if point[0] in UP_KINDS else "away"})
        print("FAULTS %s round %d: %s" % (name, r, rounds[-1]))
    gw.extra_env = {}
    gw.respawn()
    gw.log.wait_for(r"ready:", timeout=30)
    gw.expect_death = False
    acked = acks_of(sims)
    deadline = time.monotonic() + 90
    while True:
        v = faults.Verdict(acked, faults.broker_readings(watch, gw))
        if not v.lost or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    self_cuts = sum(1 for x in rounds if x["cut"] == "self")
    doc = v.report(name, cut_points=len(points), cuts_at_event=self_cuts,
                   cuts_from_outside=len(points) - self_cuts, sensors_per_round=SENSORS,
                   rate_per_sensor=RATE)
    print("FAULTS %s rounds %s" % (name, rounds))
    v.check()
    # at least once, and no more than what was in flight around the cuts
    assert v.n_duplicates <= max(50, len(acked) // 4), doc
    # every kind of point took place at least once where the library cut
    kinds = {x["point"].split(":")[0] for x in rounds if x["cut"] == "self"}
    assert {"create", "write", "acked", "sync", "unlink"} <= kinds, rounds
    return doc


@pytest.mark.timeout(300)
def test_power_cuts_short(make_gateway, sim, broker, mqtt_factory, psk_file, tmp_path):
    power_cuts(make_gateway, sim, broker, mqtt_factory, psk_file, tmp_path, SHORT_POINTS,
               "powercut-short")


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_power_cuts_soak(make_gateway, sim, broker, mqtt_factory, psk_file, tmp_path):
    rng = random.Random(13)
    points = list(SHORT_POINTS)
    for kind, top in (("create", 40), ("write", 2000), ("acked", 40), ("presync", 80),
                      ("sync", 80), ("dirsync", 30), ("unlink", 30), ("time", 800)):
        points += [(kind, rng.randint(1, top)) for _ in range(8)]
    power_cuts(make_gateway, sim, broker, mqtt_factory, psk_file, tmp_path, points,
               "powercut-soak")


# --------------------------------------------------------------------------
# A full disk (item 4): a tmpfs state_dir filled to the brim

def test_disk_full_refuses_then_recovers(make_gateway, sim, broker, mqtt_factory, psk_file,
                                         tmp_path):
    """With the disk full the gateway answers CON pushes 5.03 (Max-Age),
    says so once in the log and in bridge/stats (spool_fault), never
    answers 2.04 for what it could not store, and takes readings again by
    itself when space comes back; every 2.04 is on the broker."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    for i in range(1, 5):
        psk_file.add("df-%d" % i)
    gw = make_gateway(wait=False)
    gw.stop()
    gw.expect_death = True
    c2m_mount = ["mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", gw.state_dir]
    faults.run(c2m_mount)
    try:
        watch = mqtt_factory()
        watch.subscribe(gw.topic("+", "energy"))
        watch.subscribe(gw.topic("bridge", "stats"))
        gw.respawn()
        gw.log.wait_for(r"ready:", timeout=30)
        gw.expect_death = False
        # the broker away: what is acknowledged waits in the spool
        assert broker.stop() == 0
        s = sim("meter", count=4, extra_args=["--prefix", "df-", "--push", "--con", "--rate", "20",
                                              "--payload-size", "400", "--lifetime", "3600"])
        s.out.wait_for(r"^PUSH df-\d+ energy \d+ 5\.03$", timeout=60)
        gw.log.wait_for(r"spool: cannot store readings \(No space left on device\)", timeout=10)
        mark = s.mark()
        s.out.wait_line(r"^PUSH df-\d+ energy \d+ 5\.03$", timeout=10, start=mark)
        # room again: the spool is the only file that grew, so free its space
        # by bringing the broker back (it drains and deletes segments)
        broker.start()
        gw.log.wait_for(r"spool: storing readings again", timeout=60)
        mark = s.mark()
        s.out.wait_line(r"^PUSH df-\d+ energy \d+ 2\.04$", timeout=30, start=mark)
        stats = faults.fresh_stats(watch, gw, timeout=10)
        assert stats.get("spool_fault") is None, stats
        assert stats.get("spool_faults", 0) >= 1, stats
        assert s.stop() == 0
        v = faults.wait_delivered(watch, gw, s, timeout=60)
        v.report("disk-full", sensors=4, refused=faults.device_acks(s)[1].get("5.03", 0))
        v.check()
        log = gw.log.text()
        assert log.count("cannot store readings") == 1, "said more than once"
    finally:
        gw.stop()
        faults.run(["umount", "-l", gw.state_dir], check=False)


# --------------------------------------------------------------------------
# CON notifications: their ACK waits for the sync (held by the gateway,
# transport_acks.c), so one acknowledged is on stable storage too.

NOTIFY_POINTS = [("presync", 3), ("sync", 5), ("write", 25), ("presync", 12)]
OBSERVE = 6


def observed_device(rc, gw, port, ep):
    """A raw plain-CoAP device "ep" serving an observable /t: registered,
    and the gateway's observation answered.  Returns (client, token)."""
    c = rc.Client("127.0.0.1", port, c2m.peer_addr())
    r = c.register(ep, lifetime=3600, links="</t>;obs;ct=0")
    assert r is not None and r.code == "2.01", r
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        get = c.recv(1)
        if get and get.code == "0.01" and get.option(OBSERVE) is not None:
            c.send(rc.encode(rc.ACK, 0x45, get.mid, get.token,
                             [(OBSERVE, rc.uint(1)), (rc.CONTENT_FORMAT, b"")], b"0"))
            return c, get.token
    raise c2m.Timeout("the gateway did not observe %s/t" % ep)


def notify_until_cut(rc, c, token, gw):
    """CON notifications 1, 2, ... each sent once its predecessor was
    acknowledged (NSTART = 1), until the gateway dies.  Returns the
    payloads acknowledged."""
    acked, n = [], 1
    while gw.running() and n < 5000:
        n += 1
        mid = c.next_mid()
        c.send(rc.encode(rc.CON, 0x45, mid, token,
                         [(OBSERVE, rc.uint(n)), (rc.CONTENT_FORMAT, b"")], b"%d" % n))
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            p = c.recv(max(0.01, deadline - time.monotonic()))
            if p is not None and p.type == rc.ACK and p.mid == mid:
                acked.append(b"%d" % n)
                break
            if p is not None and p.type == rc.CON:      # a GET or anything: ACK it
                c.send(rc.encode(rc.ACK, 0, p.mid))
        if len(acked) == 10:
            open(gw.arm_path, "w").close()
    return acked


@pytest.mark.timeout(300)
def test_power_cuts_con_notifications(make_gateway, broker, mqtt_factory, tmp_path):
    """A CON notification is acknowledged only once its record is synced:
    cut the power before a sync, after one, and in the middle of writes,
    with the broker away, and every notification the device saw an ACK
    for is on the broker after the restart, in order."""
    import rawcoap as rc
    port = c2m.free_port(c2m.socket.SOCK_DGRAM)
    gw = make_gateway(wait=False, overrides={"coap": {"plain_listen": ["127.0.0.1:%d" % port]},
                                             "queue": {"durability": os.environ.get("C2M_PCUT_DURABILITY", "power")}})
    gw.stop()
    gw.expect_death = True
    shadow = str(tmp_path / "pcut-shadow")
    gw.arm_path = shadow + ".arm"
    watch = mqtt_factory(clean_start=False, session_expiry=3600)
    watch.subscribe(gw.topic("+", "t"))
    acked = {}
    for r, point in enumerate(NOTIFY_POINTS):
        arm(gw, shadow, point)
        gw.respawn()
        gw.log.wait_for(r"ready:", timeout=30)
        assert broker.stop() == 0
        c, token = observed_device(rc, gw, port, "nt-%d" % r)
        acked["nt-%d" % r] = notify_until_cut(rc, c, token, gw)
        c.close()
        gw.stop(signal.SIGKILL)
        broker.start()
        assert any("pcut: power cut" in l for l in gw.log.lines), "the cut %s:%d did not " \
            "happen" % point
        assert len(acked["nt-%d" % r]) >= 10, acked
        restore.restore(shadow, gw.state_dir)
    gw.extra_env = {}
    gw.respawn()
    gw.log.wait_for(r"ready:", timeout=30)
    gw.expect_death = False
    for ep, payloads in acked.items():
        topic = gw.topic(ep, "t")
        watch.wait_payload(topic, payloads[-1], timeout=60)
        got = [m.payload for m in watch.received(topic)]
        lost = [p for p in payloads if p not in got]
        assert not lost, "%s: %d acknowledged notifications lost: %r" % (ep, len(lost), lost)
        firsts = [got.index(p) for p in payloads]
        assert firsts == sorted(firsts), "%s: out of order: %r" % (ep, got)
    print("FAULTS powercut-notifications %s" % {ep: len(p) for ep, p in acked.items()})
