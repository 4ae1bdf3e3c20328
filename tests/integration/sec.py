"""
Security test helpers (test_x509, test_hostile, test_cve, test_broker_tls):
a throw-away PKI made with the openssl command line (ECDSA P-256, an
"openssl ca" database so that certificates can be back- or forward-dated
and revoked into a CRL), coap-client-openssl as a certificate device, a
ClientHello capture/replay flood, raw CoAP option helpers and bridge/stats
readers.  Fixtures that need these live in the test files; nothing here
starts a daemon by itself.
"""

import os
import re
import socket
import struct
import subprocess
import threading
import time

import pytest

import c2m

URI_PATH = 11
URI_QUERY = 15
HOP_LIMIT = 16


def run(argv, **kw):
    """Runs a short command, raising with its output when it fails."""
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30, **kw)
    if p.returncode != 0:
        raise RuntimeError("%s -> %d:\n%s" % (" ".join(argv), p.returncode,
                                              p.stdout.decode(errors="replace")))
    return p.stdout.decode(errors="replace")


@pytest.fixture(autouse=True)
def libcoap_san(monkeypatch):
    """C2M_LIBCOAP_SAN=DIR: the daemon runs on the libcoap-3-openssl.so.3 in
    DIR (an ASan build of libcoap 4.3.1, docs/SECURITY.md says how), so
    that memory errors inside libcoap are reported too, not only those in
    the gateway's own code.  Only the daemon gets it: coap-client keeps
    Debian's library."""
    d = os.environ.get("C2M_LIBCOAP_SAN")
    if d:
        assert os.path.exists(os.path.join(d, "libcoap-3-openssl.so.3")), d
        plain_env = c2m.gateway_env

        def env():
            e = plain_env()
            e["LD_LIBRARY_PATH"] = d + ":" + e.get("LD_LIBRARY_PATH", "")
            return e
        monkeypatch.setattr(c2m, "gateway_env", env)
    return d


# --------------------------------------------------------------------------
# A throw-away PKI

CA_CNF = """\
[ ca ]
default_ca = c2m_ca

[ c2m_ca ]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}/newcerts
serial = {dir}/serial
crlnumber = {dir}/crlnumber
certificate = {dir}/ca.crt
private_key = {dir}/ca.key
default_md = sha256
default_days = 365
default_crl_days = 30
policy = anything
unique_subject = no
copy_extensions = copy
email_in_dn = no

[ anything ]
countryName = optional
organizationName = optional
organizationalUnitName = optional
commonName = optional

[ req ]
distinguished_name = dn
prompt = no

[ dn ]
CN = unused

[ v3_ca ]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[ v3_leaf ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, keyAgreement
extendedKeyUsage = clientAuth, serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def openssl_date(t):
    """openssl ca's -startdate/-enddate format for a Unix time."""
    return time.strftime("%Y%m%d%H%M%SZ", time.gmtime(t))


class Cert:
    def __init__(self, name, cert, key, serial):
        self.name = name
        self.cert = cert
        self.key = key
        self.serial = serial

    def __repr__(self):
        return "<Cert %s serial %s>" % (self.name, self.serial)


class Pki:
    """A CA in 'directory' (ECDSA P-256) that issues leaf certificates with
    any subject, SANs and validity, revokes them and writes a PEM CRL."""

    def __init__(self, directory, name="c2m test CA"):
        self.dir = directory
        os.makedirs(os.path.join(directory, "newcerts"), exist_ok=True)
        self.cnf = os.path.join(directory, "ca.cnf")
        with open(self.cnf, "w") as f:
            f.write(CA_CNF.format(dir=directory))
        open(os.path.join(directory, "index.txt"), "w").close()
        with open(os.path.join(directory, "serial"), "w") as f:
            f.write("1000\n")
        with open(os.path.join(directory, "crlnumber"), "w") as f:
            f.write("01\n")
        self.ca_key = os.path.join(directory, "ca.key")
        self.ca_crt = os.path.join(directory, "ca.crt")
        run(["openssl", "req", "-x509", "-new", "-newkey", "ec",
             "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", self.ca_key, "-out", self.ca_crt, "-days", "3650",
             "-subj", "/O=coap2mqtt tests/CN=%s" % name,
             "-config", self.cnf, "-extensions", "v3_ca"])
        os.chmod(self.ca_key, 0o600)
        self.crl = os.path.join(directory, "ca.crl")

    def issue(self, name, subject, dns=(), not_before=None, not_after=None):
        """A leaf certificate and key (files name.crt / name.key).  'subject'
        is an openssl -subj string such as "/CN=meter-1"; 'dns' the DNS
        subjectAltNames in order; not_before/not_after Unix times (default:
        valid from an hour ago for a year)."""
        key = os.path.join(self.dir, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        crt = os.path.join(self.dir, name + ".crt")
        argv = ["openssl", "req", "-new", "-newkey", "ec",
                "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", key, "-out", csr, "-subj", subject, "-config", self.cnf]
        if dns:
            argv += ["-addext", "subjectAltName=" + ",".join("DNS:" + d for d in dns)]
        run(argv)
        os.chmod(key, 0o600)
        now = time.time()
        start = openssl_date(now - 3600 if not_before is None else not_before)
        end = openssl_date(now + 365 * 86400 if not_after is None else not_after)
        run(["openssl", "ca", "-batch", "-config", self.cnf, "-notext",
             "-extensions", "v3_leaf", "-startdate", start, "-enddate", end,
             "-in", csr, "-out", crt])
        serial = run(["openssl", "x509", "-in", crt, "-noout", "-serial"]).strip()
        return Cert(name, crt, key, serial.split("=", 1)[1])

    def revoke(self, cert):
        run(["openssl", "ca", "-batch", "-config", self.cnf, "-revoke", cert.cert])

    def write_crl(self, path=None):
        """Writes the current CRL (PEM) atomically and returns its path."""
        path = path or self.crl
        run(["openssl", "ca", "-batch", "-config", self.cnf, "-gencrl",
             "-out", path + ".new"])
        os.replace(path + ".new", path)
        return path


# --------------------------------------------------------------------------
# coap-client-openssl as a certificate (or PSK) device

def cert_client(uri, cert, ca=None, key=None, **kw):
    """Runs coap-client-openssl with a client certificate ('cert' a Cert or
    a certificate path with 'key'); returns c2m.CoapResult.  Without -C
    the gateway's certificate is not checked (-n is implied)."""
    crt, k = (cert.cert, cert.key) if isinstance(cert, Cert) else (cert, key)
    argv = c2m.coap_argv(uri, None, None, **kw)
    extra = ["-c", crt, "-j", k]
    extra += ["-C", ca] if ca else ["-n"]
    argv = argv[:1] + extra + argv[1:]
    t0 = time.monotonic()
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=kw.get("wait", 5) + 15)
    return c2m.CoapResult(argv, p.returncode, p.stdout.decode("utf-8", "replace"),
                          time.monotonic() - t0)


def register_links(links="</t>;ct=0"):
    return dict(method="post", ct=40, payload=links)


# --------------------------------------------------------------------------
# bridge/stats

def stats(mqtt, gw, pred=None, timeout=5, start=None):
    """The first bridge/stats document made after this call for which
    pred(doc) holds, so its counters include everything that happened
    before the call.  A document received later may have been made earlier
    (on its way already), so the one awaited carries a "time" (the gateway's
    wall clock, whole seconds) past the current second: with
    stats_interval = 1, at most two seconds away."""
    now = int(time.time())
    start = mqtt.mark() if start is None else start

    def wanted(m):
        doc = m.json()
        return doc.get("time", 0) > now and (pred is None or pred(doc))

    return mqtt.wait_for(gw.topic("bridge", "stats"), wanted,
                         timeout=timeout, start=start).json()


def counter(doc, name):
    """Sum of the numeric leaves called 'name' anywhere in a stats doc."""
    return sum(c2m.find_counters(doc, r"(^|\.)%s$" % re.escape(name)).values())


# --------------------------------------------------------------------------
# ClientHello capture and a spoofed-source flood

def capture_client_hello(identity="flood", key="flood-key", timeout=5):
    """The first datagram coap-client-openssl sends to a UDP socket of ours:
    a genuine DTLS ClientHello (PSK suites)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(timeout)
        port = s.getsockname()[1]
        p = subprocess.Popen(["coap-client-openssl", "-B", "2", "-u", identity,
                              "-k", key, "coaps://127.0.0.1:%d/x" % port],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            data, _ = s.recvfrom(4096)
        finally:
            c2m.stop_process(p, timeout=3)
    assert data[0] == 22 and data[13] == 1, "not a DTLS ClientHello: %r" % data[:16]
    return data


def hello_with_cookie(hello, cookie, record_seq=1):
    """The ClientHello 'hello' (one record, one unfragmented message) with
    its cookie field replaced by 'cookie'; lengths fixed up.  As a client's
    answer to a HelloVerifyRequest: message_seq 1 (RFC 6347 4.2.2; OpenSSL
    takes no other), in record number 'record_seq'."""
    sid_len = hello[59]
    at = 60 + sid_len                   # the cookie length byte
    old = hello[at]
    out = bytearray(hello[:at] + bytes([len(cookie)]) + cookie + hello[at + 1 + old:])
    delta = len(cookie) - old
    struct.pack_into("!H", out, 11, struct.unpack_from("!H", hello, 11)[0] + delta)
    body = int.from_bytes(hello[14:17], "big") + delta
    out[14:17] = body.to_bytes(3, "big")        # handshake length
    out[22:25] = body.to_bytes(3, "big")        # fragment length
    out[17:19] = (1).to_bytes(2, "big")         # message_seq
    out[5:11] = record_seq.to_bytes(6, "big")
    return bytes(out)


def dtls_messages(datagram):
    """(record content type, handshake type or None, message body) of the
    first message of each DTLS record in a datagram."""
    out, i = [], 0
    while i + 13 <= len(datagram):
        n = int.from_bytes(datagram[i + 11:i + 13], "big")
        rec = datagram[i + 13:i + 13 + n]
        if datagram[i] == 22 and len(rec) >= 12 and datagram[i + 3:i + 5] == b"\0\0":
            out.append((22, rec[0], rec[12:]))
        else:
            out.append((datagram[i], None, rec))
        i += 13 + n
    return out


def hello_verify_cookie(datagram):
    """The cookie of a HelloVerifyRequest (RFC 6347 4.2.1), else None."""
    for ctype, htype, body in dtls_messages(datagram):
        if htype == 3 and len(body) >= 3:
            return bytes(body[3:3 + body[2]])
    return None


def server_hello_random(datagram):
    """The random of a ServerHello in a datagram of the server, else None."""
    for ctype, htype, body in dtls_messages(datagram):
        if htype == 2 and len(body) >= 34:
            return bytes(body[2:34])
    return None


class HelloFlood:
    """Replays one ClientHello from n_sources sockets bound to 127.9.x.y,
    round robin, as fast as Python can (or at 'rate' datagrams/s), in a
    thread, until stop().  The sources never answer a HelloVerifyRequest:
    what a spoofer can do."""

    def __init__(self, target, hello, n_sources=1000, net="127.9", rate=None):
        self.target = target
        self.hello = hello
        self.rate = rate
        self.sent = 0
        self.socks = []
        for i in range(n_sources):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setblocking(False)
            s.bind(("%s.%d.%d" % (net, 1 + i // 250, 1 + i % 250), 0))
            self.socks.append(s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hello-flood", daemon=True)

    def start(self):
        self.t0 = time.monotonic()
        self._thread.start()
        return self

    def _run(self):
        i = 0
        while not self._stop.is_set():
            s = self.socks[i % len(self.socks)]
            try:
                s.sendto(self.hello, self.target)
                self.sent += 1
            except (BlockingIOError, OSError):
                pass
            try:    # drain HelloVerifyRequests so our buffers never fill
                s.recv(2048)
            except (BlockingIOError, OSError):
                pass
            i += 1
            if self.rate and self.sent > self.rate * (time.monotonic() - self.t0):
                time.sleep(0.001)

    def stop(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.elapsed = time.monotonic() - self.t0
        for s in self.socks:
            s.close()
        return self.sent / self.elapsed if self.elapsed else 0


# --------------------------------------------------------------------------
# mosquitto with a TLS listener (and a plain one on loopback for the tests)

class TlsBroker:
    """mosquitto with two listeners on 127.0.0.1: 'plain_port' (anonymous,
    for the test's own MQTT clients) and 'tls_port' with the given server
    certificate, optional client-certificate requirement and password file.
    stop() must be called (the test's finally or a fixture)."""

    def __init__(self, directory, pki, server, require_certificate=False,
                 password_file=None):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = self.plain_port = c2m.free_port()
        self.tls_port = c2m.free_port()
        self.conf = os.path.join(directory, "mosquitto.conf")
        lines = ["per_listener_settings true",
                 "persistence false",
                 "log_dest stderr", "log_type all", "connection_messages true",
                 "listener %d 127.0.0.1" % self.plain_port,
                 "allow_anonymous true",
                 "listener %d 127.0.0.1" % self.tls_port,
                 "cafile %s" % pki.ca_crt,
                 "certfile %s" % server.cert,
                 "keyfile %s" % server.key,
                 "require_certificate %s" % ("true" if require_certificate else "false")]
        if password_file:
            lines += ["allow_anonymous false", "password_file %s" % password_file]
        else:
            lines += ["allow_anonymous true"]
        if os.geteuid() == 0:
            lines.insert(0, "user root")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(["mosquitto", "-c", self.conf],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, close_fds=True)
        self.log = c2m.LineLog(self.proc.stdout, os.path.join(directory, "mosquitto.log"),
                               "tls-mosquitto")
        deadline = time.monotonic() + 10
        for port in (self.plain_port, self.tls_port):
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError("mosquitto exited:\n" + self.log.text())
                try:
                    with socket.create_connection((self.host, port), timeout=0.5):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise c2m.Timeout("TLS mosquitto did not listen")
                    time.sleep(0.05)

    def stop(self):
        c2m.stop_process(self.proc, timeout=5)
        self.log.join()


def mosquitto_passwd(path, user, password):
    open(path, "w").close()
    os.chmod(path, 0o600)
    run(["mosquitto_passwd", "-b", path, user, password])
    return path


def config_supported(binary, tmpdir, cfg):
    """True when 'coap2mqtt -t' accepts a config with these settings (the
    broker TLS settings are newer than some builds)."""
    path = os.path.join(tmpdir, "probe.conf")
    with open(path, "w") as f:
        f.write(c2m.libconfig_text(cfg))
    p = subprocess.run([binary, "-t", "-c", path], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
    out = p.stdout.decode(errors="replace")
    return p.returncode == 0 or "unknown setting" not in out.lower(), out
