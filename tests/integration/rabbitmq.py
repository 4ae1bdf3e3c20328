"""A real RabbitMQ node (Debian's rabbitmq-server with its MQTT plugin) on
free ports, for the tests of brokers that speak MQTT 3.1.1 only.

RabbitMQ 3.10 closes the connection on an MQTT v5 CONNECT without a
CONNACK.  The node keeps everything (mnesia, logs, Erlang cookie, HOME) in
its own directory, so it never touches a system installation."""

import os
import shutil
import signal
import socket
import subprocess
import time

import c2m

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"


def available():
    return os.access(SERVER, os.X_OK) and os.access(CTL, os.X_OK)


class Node:
    """One node: .host, .port (MQTT), .log (its stdout, a c2m.LineLog)."""

    def __init__(self, tmpdir, name="c2m", erlang_cookie=None, epmd_port=None):
        self.name = "%s%d@localhost" % (name, os.getpid())
        self.dir = os.path.join(tmpdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = c2m.free_port()
        self.mqtt_protocol = "3.1.1"    # what conftest's MQTT clients speak
        amqp, dist = c2m.free_port(), c2m.free_port()
        # epmd is shared by the Erlang nodes of this machine; a free port of
        # its own keeps the test's epmd apart from any other.
        self.epmd_port = epmd_port or c2m.free_port()
        with open(os.path.join(self.dir, "rabbitmq.conf"), "w") as f:
            f.write("listeners.tcp.default = %d\n" % amqp)
            f.write("mqtt.listeners.tcp.default = %d\n" % self.port)
            f.write("mqtt.allow_anonymous = true\n")
            f.write("loopback_users = none\n")
            f.write("management_agent.disable_metrics_collector = true\n")
        with open(os.path.join(self.dir, "enabled_plugins"), "w") as f:
            f.write("[rabbitmq_mqtt].\n")
        cookie = os.path.join(self.dir, ".erlang.cookie")
        with open(cookie, "w") as f:
            f.write((erlang_cookie or "C2MTESTCOOKIE%d" % os.getpid()) + "\n")
        os.chmod(cookie, 0o400)
        self.env = dict(os.environ,
                        RABBITMQ_NODENAME=self.name,
                        RABBITMQ_CONFIG_FILE=os.path.join(self.dir, "rabbitmq"),
                        RABBITMQ_MNESIA_BASE=os.path.join(self.dir, "mnesia"),
                        RABBITMQ_LOG_BASE=os.path.join(self.dir, "log"),
                        RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(self.dir, "enabled_plugins"),
                        RABBITMQ_DIST_PORT=str(dist),
                        RABBITMQ_PID_FILE=os.path.join(self.dir, "pid"),
                        ERL_EPMD_PORT=str(self.epmd_port),
                        HOME=self.dir)
        self.proc = None
        self.log = None

    def start(self, timeout=120):
        self.proc = subprocess.Popen([SERVER], env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     close_fds=True, start_new_session=True)
        self.log = c2m.LineLog(self.proc.stdout, os.path.join(self.dir, "out.log"),
                               "rabbitmq")
        deadline = time.monotonic() + timeout
        # Up once the MQTT listener takes a connection; the plugin starts
        # last, after the node has booted.
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("rabbitmq-server exited %s:\n%s"
                                   % (self.proc.returncode, self.log.text()[-3000:]))
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    raise c2m.Timeout("RabbitMQ's MQTT listener not up in %d s" % timeout)
                time.sleep(0.2)

    def ctl(self, *args, timeout=120):
        r = subprocess.run([CTL, "-n", self.name] + list(args), env=self.env,
                           timeout=timeout, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("rabbitmqctl %s: %s%s" % (" ".join(args), r.stdout, r.stderr))
        return r.stdout

    def wait_mqtt(self, timeout=120):
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise c2m.Timeout("RabbitMQ's MQTT listener not up in %d s" % timeout)
                time.sleep(0.2)

    def stop(self, kill_epmd=True):
        if self.proc is None:
            return
        subprocess.run([CTL, "-n", self.name, "stop"], env=self.env, timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        # The server's process group: beam and the epmd it started.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        # epmd daemonised itself out of that group; it has no node left.
        if kill_epmd:
            kill_epmd_on(self.epmd_port)
        self.proc.wait(timeout=10)
        self.proc = None

    def kill(self):
        self.stop()
        shutil.rmtree(os.path.join(self.dir, "mnesia"), ignore_errors=True)


def kill_epmd_on(port):
    epmd = shutil.which("epmd") or "/usr/bin/epmd"
    subprocess.run([epmd, "-port", str(port), "-kill"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Cluster:
    """n RabbitMQ nodes on this machine, one Erlang cookie and one epmd,
    the second and later joined to the first (rabbitmqctl join_cluster):
    a message published on one node reaches subscribers on every node.
    .nodes[i].host/.port are each node's MQTT listener."""

    def __init__(self, tmpdir, n=2):
        cookie = "C2MCLUSTER%d" % os.getpid()
        epmd = c2m.free_port()
        self.nodes = [Node(tmpdir, "c2m%s" % chr(ord("a") + i), cookie, epmd)
                      for i in range(n)]
        self.epmd_port = epmd

    def start(self, timeout=180):
        import threading
        errors = []

        def boot(node):
            try:
                node.start(timeout)
            except Exception as e:      # reported below, in this thread
                errors.append(e)
        threads = [threading.Thread(target=boot, args=(nd,)) for nd in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        first = self.nodes[0].name
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first)
            node.ctl("start_app")
            node.wait_mqtt(timeout)
        status = self.nodes[0].ctl("cluster_status")
        for node in self.nodes:
            if node.name not in status:
                raise RuntimeError("%s not in the cluster:\n%s" % (node.name, status))
        return self

    def stop(self):
        for node in reversed(self.nodes):
            node.stop(kill_epmd=False)
        kill_epmd_on(self.epmd_port)
