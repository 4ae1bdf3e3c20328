"""
Fixtures of the coap2mqtt integration suite: a real mosquitto, the real
gateway (C2M_BIN, normally the ASan+UBSan build), the real sensor simulator
(C2M_SIM) and coap-client-openssl.  See README.md in this directory.
"""

import os
import signal
import sys

import pytest

try:
    import c2m
except ImportError as e:          # e.g. a pyenv/venv python without Debian's paho
    pytest.exit("%s: %s; run the tests with /usr/bin/python3 (python3-paho-mqtt)"
                % (sys.executable, e), returncode=4)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# Time budgets (s) of one test's phases; @pytest.mark.timeout(N) sets the
# budget of the test body.
SETUP_BUDGET = 40
CALL_BUDGET = 60
SLOW_CALL_BUDGET = 300
TEARDOWN_BUDGET = 40

# Identities in every test's PSK file; tests add more with psk_file.add()
# before they start a gateway.
DEFAULT_IDENTITIES = (["meter-%d" % i for i in range(1, 31)] +
                      ["hvac-%d" % i for i in range(1, 6)] +
                      ["industrial-%d" % i for i in range(1, 6)] +
                      ["dev-%d" % i for i in range(1, 11)])


def binary(var, default):
    path = os.environ.get(var) or os.path.join(ROOT, default)
    if not os.access(path, os.X_OK):
        pytest.fail("%s: %s is not an executable (build it: make SAN=1)" % (var, path),
                    pytrace=False)
    return path


# --------------------------------------------------------------------------
# markers, slow selection, hard time limits, logs in failure reports

def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long test, run with C2M_SLOW=1 or -m slow")
    config.addinivalue_line("markers", "soak: long fault-injection run (make soak: -m soak)")
    config.addinivalue_line("markers", "timeout(seconds): hard limit of the test body")
    config.addinivalue_line("markers", "mqtt5(why): uses an MQTT v5 feature the gateway "
                            "cannot have on 3.1.1; skipped when C2M_MQTT_PROTOCOL=3.1.1")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("C2M_MQTT_PROTOCOL") == "3.1.1":
        for item in items:
            m = item.get_closest_marker("mqtt5")
            if m:
                item.add_marker(pytest.mark.skip(
                    reason="MQTT v5 only (%s); 3.1.1 substitute in docs/CONFIG.md"
                    % (m.args[0] if m.args else "v5 feature")))
    # "make test" passes -m "not soak": only an expression naming "slow"
    # selects the slow tests.
    if os.environ.get("C2M_SLOW") == "1" or "slow" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="slow: set C2M_SLOW=1 or select with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


class HardTimeout(BaseException):
    """Raised by SIGALRM in the main thread; BaseException so that no
    'except Exception' in a test swallows it."""


def _alarm(signum, frame):
    raise HardTimeout("hard time limit of this test phase exceeded")


def _budget(item, phase):
    if phase == "setup":
        return SETUP_BUDGET
    if phase == "teardown":
        return TEARDOWN_BUDGET
    m = item.get_closest_marker("timeout")
    if m:
        return int(m.args[0])
    return SLOW_CALL_BUDGET if "slow" in item.keywords else CALL_BUDGET


def _limited(item, phase):
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(_budget(item, phase))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    yield from _limited(item, "setup")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    yield from _limited(item, "call")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    yield from _limited(item, "teardown")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    for name, log, n in getattr(item, "c2m_logs", []):
        if log is not None:
            lines = log.tail(n)
            rep.sections.append(("%s (last %d lines of %s)" % (name, len(lines), log.path),
                                 "\n".join(lines)))


def _register_log(request, name, log, n=80):
    request.node.c2m_logs = getattr(request.node, "c2m_logs", [])
    request.node.c2m_logs.append((name, log, n))


# --------------------------------------------------------------------------
# processes

@pytest.fixture
def c2m_bin():
    return binary("C2M_BIN", "build/san/coap2mqtt")


@pytest.fixture
def c2m_sim():
    return binary("C2M_SIM", "build/san/coap2mqtt-sim")


@pytest.fixture
def broker(request, tmp_path):
    """A real mosquitto on a free port; .stop()/.start() restart it on the
    same port with its persistence kept."""
    d = tmp_path / "broker"
    d.mkdir()
    b = c2m.Broker(str(d))
    _register_log(request, "mosquitto", b.log, 40)
    yield b
    b.kill()


@pytest.fixture
def mqtt_factory(broker):
    clients = []

    def make(**kw):
        # A broker that speaks 3.1.1 only (RabbitMQ) says so.
        kw.setdefault("protocol", getattr(broker, "mqtt_protocol", "5"))
        c = c2m.Mqtt(broker.host, broker.port, **kw)
        clients.append(c)
        return c
    yield make
    for c in clients:
        c.close()


@pytest.fixture
def mqtt(mqtt_factory):
    """A paho MQTT v5 client: mqtt.wait_for(filter, predicate, timeout)."""
    return mqtt_factory()


@pytest.fixture
def psk_file(tmp_path):
    return c2m.PskFile(str(tmp_path / "psk.keys"), DEFAULT_IDENTITIES)


def await_online(gw, client, timeout=15):
    """Waits for a *live* bridge/state "online" (the client subscribed
    before the daemon started), failing early if the daemon dies."""
    deadline = c2m.time.monotonic() + timeout
    while True:
        try:
            return client.wait_for(gw.topic("bridge", "state"),
                                   lambda m: m.payload == b"online", timeout=0.25)
        except c2m.Timeout:
            if not gw.running():
                gw.stop()
                raise AssertionError("gateway exited with %s during start-up:\n%s"
                                     % (gw.exit_code, gw.log.text())) from None
            if c2m.time.monotonic() > deadline:
                raise


@pytest.fixture
def make_gateway(request, tmp_path, broker, mqtt_factory, psk_file, c2m_bin):
    """make_gateway(listen_host="127.0.0.1", overrides={...}, wait=True,
    wrapper=[argv before the daemon's, which must exec it])
    starts a daemon and awaits bridge/state "online".  At teardown each one
    gets SIGTERM and must exit 0 within 5 s with no sanitizer report."""
    gateways = []
    watcher = mqtt_factory()

    def make(listen_host="127.0.0.1", overrides=None, wait=True, wrapper=()):
        gw = c2m.Gateway(c2m_bin, str(tmp_path), broker, psk_file,
                         listen_host=listen_host, overrides=overrides,
                         name="gw%d" % (len(gateways) + 1))
        gw.wrapper = list(wrapper)
        start = watcher.mark()
        watcher.subscribe(gw.topic("bridge", "state"))
        gw.start()
        gateways.append(gw)
        _register_log(request, "gateway %s stderr" % gw.name, gw.log)
        if wait:
            await_online(gw, watcher)
        gw.started_mark = start
        return gw

    make.gateways = gateways
    yield make
    problems = []
    for gw in gateways:
        rc = gw.stop(signal.SIGTERM, timeout=5)
        if not gw.expect_death and rc != 0:
            problems.append("%s exited %s (want 0 within 5 s after SIGTERM)" % (gw.name, rc))
        reports = gw.sanitizer_reports()
        if reports:
            problems.append("%s sanitizer report:\n%s" % (gw.name, "\n".join(reports[:20])))
    if problems:
        pytest.fail("\n".join(problems) + "\n--- log tail ---\n" +
                    "\n".join(gateways[-1].log.lines[-60:]), pytrace=False)


@pytest.fixture
def gateway(make_gateway):
    """The daemon with the default test config, already "online"."""
    return make_gateway()


@pytest.fixture
def sim(request, tmp_path, make_gateway, psk_file, c2m_sim):
    """sim(kind, count=1, bind=None, extra_args=(), gw=None) starts the
    simulator against 'gw' (default: the last gateway started).  At teardown
    each gets SIGTERM and must exit 0."""
    sims = []

    def make(kind, count=1, bind=None, extra_args=(), gw=None):
        gw = gw or make_gateway.gateways[-1]
        s = c2m.Sim(c2m_sim, str(tmp_path), gw, psk_file, kind, count, bind,
                    extra_args, name="sim%d-%s" % (len(sims) + 1, kind))
        sims.append(s)
        _register_log(request, "%s stdout" % s.name, s.out, 40)
        return s

    yield make
    problems = []
    for s in sims:
        rc = s.stop(signal.SIGTERM, timeout=5)
        if rc != 0 and not s.expect_death:
            with open(s.stderr_path, errors="replace") as f:
                err = f.read()[-3000:]
            problems.append("%s exited %s (want 0 after SIGTERM); stderr:\n%s"
                            % (s.name, rc, err))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def coap(psk_file):
    """coap(gw, identity, path_and_query, **kw): coap-client-openssl as an
    independent device, with its own loopback address per call unless
    local= is given; returns c2m.CoapResult."""
    def run(gw, identity, path, key=None, **kw):
        kw.setdefault("local", c2m.peer_addr())
        if key is None:
            key = psk_file[identity]
        return c2m.coap_client("%s/%s" % (gw.uri, path.lstrip("/")), identity, key, **kw)
    return run
