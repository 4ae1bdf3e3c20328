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

    def __init__(self, tmpdir, name="c2m"):
        self.name = "%s%d@localhost" % (name, os.getpid())
        self.dir = os.path.join(tmpdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = c2m.free_port()
        self.mqtt_protocol = "3.1.1"    # what conftest's MQTT clients speak
        amqp, dist = c2m.free_port(), c2m.free_port()
        # epmd is shared by the Erlang nodes of this machine; a free port of
        # its own keeps the test's epmd apart from any other.
        self.epmd_port = c2m.free_port()
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
            f.write("C2MTESTCOOKIE%d\n" % os.getpid())
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

    def stop(self):
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
        epmd = shutil.which("epmd") or "/usr/bin/epmd"
        subprocess.run([epmd, "-port", str(self.epmd_port), "-kill"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.proc.wait(timeout=10)
        self.proc = None

    def kill(self):
        self.stop()
        shutil.rmtree(os.path.join(self.dir, "mnesia"), ignore_errors=True)
