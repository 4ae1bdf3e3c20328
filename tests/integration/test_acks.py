"""What a device is told about its reading must hold (issue 12, items 2, 4
and 12): a 5.03 stays a 5.03 when the device repeats the request, a broker
that refuses a publish does not make a reading count as delivered, the QoS 1
window is not opened by QoS 0 publishes, and a shutdown with plain-CoAP
devices touches no freed libcoap session.

Broker refusals are real ones: a mosquitto ACL (PUBACK 0x87), mosquitto's
message_size_limit (PUBACK 0x95) and max_packet_size (announced in CONNACK,
so libmosquitto refuses the publish itself).  A TCP proxy between gateway and
broker holds back the broker's PUBACKs where a test needs the QoS 1 window
to stay full.

With C2M_LIBCOAP_SAN set (an ASan build of libcoap 4.3.1, docs/SECURITY.md)
the daemon runs on it, which the shutdown test needs: the write into a
freed session happens inside libcoap, where C2M_BIN's ASan does not look.
"""

import socket
import struct
import time

import c2m
import sec
from sec import libcoap_san  # noqa: F401 (autouse fixture)

# --------------------------------------------------------------------------
# A plain-CoAP device that controls its Message IDs (RFC 7252 wire format)

CON, NON, ACK, RST = 0, 1, 2, 3
POST = 2
URI_PATH, CONTENT_FORMAT, URI_QUERY = 11, 12, 15


def code(s):
    """"2.04" -> 68."""
    c, d = s.split(".")
    return int(c) << 5 | int(d)


def code_str(c):
    return "%d.%02d" % (c >> 5, c & 31)


def _opt_nibble(v):
    if v < 13:
        return v, b""
    if v < 269:
        return 13, bytes([v - 13])
    return 14, struct.pack("!H", v - 269)


def encode(mtype, mcode, mid, token=b"", options=(), payload=b""):
    out = bytearray([0x40 | mtype << 4 | len(token), mcode])
    out += struct.pack("!H", mid) + token
    last = 0
    for num, val in sorted(options, key=lambda o: o[0]):
        d, dx = _opt_nibble(num - last)
        ln, lx = _opt_nibble(len(val))
        out += bytes([d << 4 | ln]) + dx + lx + val
        last = num
    if payload:
        out += b"\xff" + payload
    return bytes(out)


class Pdu:
    def __init__(self, data):
        self.type = data[0] >> 4 & 3
        tkl = data[0] & 15
        self.code = data[1]
        self.mid = struct.unpack("!H", data[2:4])[0]
        self.token = data[4:4 + tkl]
        i = data.find(b"\xff", 4 + tkl)
        self.payload = data[i + 1:] if i >= 0 else b""

    def __repr__(self):
        return "<%s %s mid=0x%04x tok=%s %r>" % (("CON", "NON", "ACK", "RST")[self.type],
                                                code_str(self.code), self.mid,
                                                self.token.hex(), self.payload)


class PlainDevice:
    """A device on plain CoAP (coap.plain_listen) from its own address."""

    def __init__(self, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((c2m.peer_addr(), 0))
        self.sock.connect(("127.0.0.1", port))
        self.next_mid = 0x1000

    def request(self, path, query=(), payload=b"", ct=None, mtype=CON, token=None, mid=None):
        """The datagram of a POST, so that it can be sent again unchanged."""
        if mid is None:
            mid = self.next_mid
            self.next_mid += 1
        opts = [(URI_PATH, p.encode()) for p in path.split("/")]
        opts += [(URI_QUERY, q.encode()) for q in query]
        if ct is not None:
            opts.append((CONTENT_FORMAT, bytes([ct]) if ct else b""))
        token = token if token is not None else struct.pack("!H", mid)
        return encode(mtype, POST, mid, token, opts, payload)

    def send(self, dgram):
        self.sock.send(dgram)

    def recv(self, timeout=5, want=None):
        """The next datagram from the gateway (for which want(pdu) holds);
        a CON from the gateway (a separate response) is acknowledged."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise c2m.Timeout("no datagram from the gateway in %ss" % timeout)
            self.sock.settimeout(left)
            try:
                pdu = Pdu(self.sock.recv(2048))
            except socket.timeout:
                continue
            if pdu.type == CON:
                self.sock.send(encode(ACK, 0, pdu.mid))
            if want is None or want(pdu):
                return pdu

    def exchange(self, dgram, timeout=5):
        self.send(dgram)
        return self.recv(timeout, lambda p: p.mid == struct.unpack("!H", dgram[2:4])[0])

    def close(self):
        self.sock.close()


def plain_gateway(make_gateway, overrides=None):
    port = c2m.free_port(socket.SOCK_DGRAM)
    cfg = {"coap": {"plain_listen": ["127.0.0.1:%d" % port]}}
    for k, v in (overrides or {}).items():
        cfg.setdefault(k, {}).update(v)
    gw = make_gateway(overrides=cfg)
    gw.plain_port = port
    return gw


def plain_register(gw, ep):
    dev = PlainDevice(gw.plain_port)
    r = dev.exchange(dev.request("rd", ("ep=" + ep, "lt=120"), b"</energy>;ct=0", ct=40))
    assert (r.type, code_str(r.code)) == (ACK, "2.01"), r
    return dev


# --------------------------------------------------------------------------
# Item 2: a push refused 5.03, sent again with the same Message ID

def test_refused_push_repeated_is_not_taken_for_a_duplicate(make_gateway, broker,
                                                            mqtt_factory):
    """Queue full (no spool, room for one message, broker away): the push is
    answered 5.03.  When that 5.03 is lost on the radio the device sends the
    same datagram again; it must be judged again (5.03 while there is no
    room, taken once there is), never answered 2.04 as a duplicate of a
    reading that was not stored."""
    gw = plain_gateway(make_gateway, {"queue": {"spool": False, "max_messages": 1}})
    topic = gw.topic("lab-1", "energy")
    watch = mqtt_factory(clean_start=False, session_expiry=600)
    watch.subscribe(topic)
    dev = plain_register(gw, "lab-1")
    mark = gw.log.mark()
    assert broker.stop() == 0
    gw.log.wait_for(r"mqtt: connection lost", timeout=10, start=mark)

    # A takes the one place in the queue; its 2.04 waits for the PUBACK.
    a = dev.request("ps/energy", payload=b"1", ct=0)
    r = dev.exchange(a)
    assert (r.type, r.code) == (ACK, 0), r
    # B finds the queue full.
    b = dev.request("ps/energy", payload=b"2", ct=0)
    r = dev.exchange(b)
    assert (r.type, code_str(r.code)) == (ACK, "5.03"), r
    # The 5.03 got lost: the device repeats B, same Message ID and token.
    r = dev.exchange(b)
    assert code_str(r.code) == "5.03", \
        "the repeated push was answered %s: the device deletes a reading " \
        "that was never stored (%r)" % (code_str(r.code), r)

    broker.start()
    r = dev.recv(30, lambda p: p.token == a[4:6] and p.type == CON)
    assert code_str(r.code) == "2.04", r
    watch.wait_payload(topic, "1", timeout=20)
    # Now there is room: the same datagram once more is taken and published.
    r = dev.exchange(b)
    assert (r.type, r.code) == (ACK, 0), r
    r = dev.recv(20, lambda p: p.token == b[4:6] and p.type == CON)
    assert code_str(r.code) == "2.04", r
    watch.wait_payload(topic, "2", timeout=10)
    # Once taken, a repeat is a duplicate: answered, not published again.
    r = dev.exchange(b)
    assert code_str(r.code) == "2.04", r
    doc = sec.stats(watch, gw, lambda d: d["duplicates_in"] >= 1, timeout=10)
    assert doc["duplicates_in"] == 1, doc
    assert [m.payload for m in watch.received(topic)] == [b"1", b"2"]
    dev.close()
