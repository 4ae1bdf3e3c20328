"""
Raw CoAP (RFC 7252) over plain UDP, for tests that need datagrams no
ordinary client sends: Block1 transfers without Size1, with a false Size1,
out of order, or abandoned half-way (RFC 7959).  Talks to the gateway's
coap.plain_listen endpoint; nothing here does DTLS.
"""

import os
import socket
import time

CON, NON, ACK, RST = 0, 1, 2, 3
GET, POST, PUT, DELETE = 1, 2, 3, 4

URI_PATH = 11
CONTENT_FORMAT = 12
MAX_AGE = 14
URI_QUERY = 15
BLOCK1 = 27
SIZE1 = 60
REQUEST_TAG = 292

OPTION_NAMES = {URI_PATH: "Uri-Path", CONTENT_FORMAT: "Content-Format",
                MAX_AGE: "Max-Age", URI_QUERY: "Uri-Query", BLOCK1: "Block1",
                SIZE1: "Size1", REQUEST_TAG: "Request-Tag", 8: "Location-Path"}


def uint(v):
    """A CoAP uint option value: big-endian, no leading zero bytes."""
    return v.to_bytes((v.bit_length() + 7) // 8, "big") if v else b""


def block(num, more, szx):
    """Block1/Block2 option value (RFC 7959 2.2): NUM, M, SZX (size 2**(szx+4))."""
    return uint(num << 4 | (8 if more else 0) | szx)


def parse_block(value):
    v = int.from_bytes(value, "big")
    return v >> 4, bool(v & 8), v & 7


def _ext(n):
    if n < 13:
        return n, b""
    if n < 269:
        return 13, bytes([n - 13])
    return 14, (n - 269).to_bytes(2, "big")


def encode(mtype, code, mid, token=b"", options=(), payload=b""):
    out = bytearray([0x40 | mtype << 4 | len(token), code]) + mid.to_bytes(2, "big") + token
    last = 0
    for num, val in sorted(options, key=lambda o: o[0]):
        if isinstance(val, str):
            val = val.encode()
        d, dx = _ext(num - last)
        l, lx = _ext(len(val))
        out += bytes([d << 4 | l]) + dx + lx + val
        last = num
    if payload:
        out += b"\xff" + payload
    return bytes(out)


class Pdu:
    def __init__(self, data):
        self.raw = data
        self.type = (data[0] >> 4) & 3
        tkl = data[0] & 15
        self.code_raw = data[1]
        self.mid = int.from_bytes(data[2:4], "big")
        self.token = data[4:4 + tkl]
        self.options = []
        self.payload = b""
        i, num = 4 + tkl, 0
        while i < len(data):
            if data[i] == 0xFF:
                self.payload = data[i + 1:]
                break
            d, l = data[i] >> 4, data[i] & 15
            i += 1
            vals = []
            for x in (d, l):
                if x == 13:
                    vals.append(data[i] + 13)
                    i += 1
                elif x == 14:
                    vals.append(int.from_bytes(data[i:i + 2], "big") + 269)
                    i += 2
                else:
                    vals.append(x)
            num += vals[0]
            self.options.append((num, data[i:i + vals[1]]))
            i += vals[1]

    @property
    def code(self):
        return "%d.%02d" % (self.code_raw >> 5, self.code_raw & 31)

    def option(self, num):
        for n, v in self.options:
            if n == num:
                return v
        return None

    def uint_option(self, num):
        v = self.option(num)
        return None if v is None else int.from_bytes(v, "big")

    def __repr__(self):
        opts = ", ".join("%s:%s" % (OPTION_NAMES.get(n, n), v.hex() if n in
                                    (BLOCK1, SIZE1, MAX_AGE, CONTENT_FORMAT) else v)
                         for n, v in self.options)
        return "<%s %s mid=%d tok=%s [%s] %r>" % (
            ("CON", "NON", "ACK", "RST")[self.type], self.code, self.mid,
            self.token.hex(), opts, self.payload[:60])


def path_options(path):
    opts = []
    path, _, query = path.partition("?")
    for seg in path.split("/"):
        if seg:
            opts.append((URI_PATH, seg))
    for q in query.split("&") if query else ():
        opts.append((URI_QUERY, q))
    return opts


class Client:
    """One UDP socket (so one session at the gateway) on its own address."""

    def __init__(self, host, port, local=None):
        self.dest = (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((local or "127.0.0.1", 0))
        self.mid = int.from_bytes(os.urandom(2), "big")

    def close(self):
        self.sock.close()

    def next_mid(self):
        self.mid = (self.mid + 1) & 0xFFFF
        return self.mid

    def send(self, data):
        self.sock.sendto(data, self.dest)

    def recv(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data, _ = self.sock.recvfrom(65536)
        except socket.timeout:
            return None
        return Pdu(data)

    def request(self, code, path, payload=b"", options=(), mtype=CON, timeout=5,
                token=None, mid=None):
        """Sends one request and returns its response (piggy-backed, or the
        separate one after an empty ACK, which is then acknowledged), or
        None after 'timeout' s.  'mid' and 'token' given: a retransmission
        of an earlier request (see last_mid, last_token)."""
        mid = self.next_mid() if mid is None else mid
        token = os.urandom(4) if token is None else token
        self.last_mid, self.last_token = mid, token
        self.send(encode(mtype, code, mid, token, list(path_options(path)) + list(options),
                         payload))
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            r = self.recv(left)
            if r is None:
                return None
            if r.type == ACK and r.mid == mid and r.code_raw == 0:
                continue                    # separate response to come
            if r.token != token:
                continue
            if r.type == CON:
                self.send(encode(ACK, 0, r.mid))
            return r

    def register(self, ep, lifetime=60, links="</t>;ct=0"):
        return self.request(POST, "rd?ep=%s&lt=%d" % (ep, lifetime), links.encode(),
                            options=[(CONTENT_FORMAT, uint(40))])
