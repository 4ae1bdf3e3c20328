#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/.

    tests/fuzz/gen_seeds.py            # (re)generates every seed it owns

Seeds are realistic inputs: what devices register and push (docs/DEVICE-API.md),
the topics MQTT users send commands on, conf/coap2mqtt.conf and broken
variants of it.  The handler seeds use fuzz_handlers.c's record format:
op:u8 len:u16be bytes; op bits 5-6 pick the device address, the low bits
the action (0 datagram, 1 reply to the gateway's last request,
2 broker acknowledged all, 3 broker lost all, 4 MQTT message "topic\\0payload",
5 time passes: u32be seconds, or until every pending timer is due).
Files are named by content; each run rewrites the four directories it owns
(corpus/handlers, linkformat, topics, config) completely.
"""
import hashlib
import os
import re
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")

# --- CoAP (RFC 7252) encoding ------------------------------------------------

CON, NON, ACK, RST = 0, 1, 2, 3
GET, POST, PUT, DELETE = 1, 2, 3, 4
OBSERVE, URI_PATH, CONTENT_FORMAT, MAX_AGE, URI_QUERY, BLOCK1, SIZE1 = 6, 11, 12, 14, 15, 27, 60
BLOCK2, SIZE2, REQUEST_TAG = 23, 28, 292


def _ext(v):
    if v < 13:
        return v, b""
    if v < 269:
        return 13, bytes([v - 13])
    return 14, struct.pack(">H", v - 269)


def uint(v):
    """CoAP uint option value: minimal big-endian bytes."""
    out = b""
    while v:
        out = bytes([v & 0xFF]) + out
        v >>= 8
    return out


def pdu(type_, code, mid, token=b"", options=(), payload=b""):
    out = bytes([0x40 | type_ << 4 | len(token), code]) + struct.pack(">H", mid) + token
    last = 0
    for num, val in sorted(options, key=lambda o: o[0]):
        if isinstance(val, str):
            val = val.encode()
        d, dx = _ext(num - last)
        l, lx = _ext(len(val))
        out += bytes([d << 4 | l]) + dx + lx + val
        last = num
    if payload:
        out += b"\xff" + (payload.encode() if isinstance(payload, str) else payload)
    return out


def path_opts(path):
    return [(URI_PATH, s) for s in path.strip("/").split("/")]


def query_opts(*q):
    return [(URI_QUERY, s) for s in q]


def code(c, d):
    return c << 5 | d


# --- fuzz_handlers records ---------------------------------------------------

def rec(op, data=b""):
    return bytes([op]) + struct.pack(">H", len(data)) + data


def dgram(p, dev=0):
    return rec(dev << 5, p)


def reply(type_, code_, options=(), payload=b"", dev=0):
    """Answer to the gateway's last request: token and mid are filled in."""
    body = pdu(0, 0, 0, b"", options, payload)[4:]     # options + payload only
    return rec(dev << 5 | 1, bytes([type_, code_]) + body)


def mqtt(topic, payload=b""):
    return rec(4, topic.encode() + b"\0" + payload)


ACKED, LOST, TIME = rec(2), rec(3), rec(5)


def after(seconds):
    return rec(5, struct.pack(">I", seconds))
TOK = b"\x01\x02\x03\x04"


def register(ep, links, lt=None, mid=1, type_=CON, ct=40):
    q = ["ep=" + ep] + (["lt=%d" % lt] if lt is not None else [])
    opts = path_opts("rd") + query_opts(*q)
    if ct is not None:
        opts.append((CONTENT_FORMAT, uint(ct)))
    return pdu(type_, POST, mid, TOK, opts, links)


def push(path, payload, mid=10, type_=CON, ct=None, method=POST):
    opts = path_opts("ps/" + path)
    if ct is not None:
        opts.append((CONTENT_FORMAT, uint(ct)))
    return pdu(type_, method, mid, TOK + bytes([mid & 0xFF]), opts, payload)


def block1_push(path, num, more, payload, mid=30, szx=2, size1=None, tag=None):
    opts = path_opts("ps/" + path) + [(BLOCK1, uint(num << 4 | (8 if more else 0) | szx))]
    if size1 is not None:
        opts.append((SIZE1, uint(size1)))
    if tag is not None:
        opts.append((REQUEST_TAG, tag))
    return pdu(CON, POST, mid, TOK + bytes([mid & 0xFF]), opts, payload)


def handler_seeds():
    meter = "</energy>;obs;ct=0,</power>;obs;ct=0,</relay>;ct=0"
    s = {}
    s["register"] = dgram(register("meter-1", meter, lt=300))
    s["register-noct"] = dgram(register("meter-1", "</temp>;obs", ct=None))
    s["register-badct"] = dgram(register("meter-1", "</temp>;obs", ct=0))
    s["register-nonep"] = dgram(pdu(CON, POST, 1, TOK, path_opts("rd"), "</temp>;obs"))
    s["register-dtls-id"] = dgram(register("dtls-only", "</temp>"))
    s["register-badlt"] = dgram(register("meter-1", "</temp>", lt=5))
    s["register-badlinks"] = dgram(register("meter-1", "</a/../b>;obs,<x>"))
    s["register-refresh-delete"] = (
        dgram(register("meter-1", meter, lt=300))
        + dgram(pdu(CON, POST, 2, TOK, path_opts("rd/meter-1") + query_opts("lt=600")))
        + dgram(pdu(CON, POST, 3, TOK, path_opts("rd/meter-1"), "</temp>;obs;ct=0"))
        + dgram(pdu(CON, DELETE, 4, TOK, path_opts("rd/meter-1"))))
    s["refresh-other"] = (dgram(register("meter-1", meter))
                          + dgram(pdu(CON, POST, 2, TOK, path_opts("rd/meter-2"))))
    s["refresh-unregistered"] = dgram(pdu(CON, DELETE, 4, TOK, path_opts("rd/meter-1")))
    s["register-push-con"] = (dgram(register("soil-7", "</moisture>;ct=0"))
                              + dgram(push("moisture", "23.5", ct=0)) + ACKED)
    s["register-push-lost"] = (dgram(register("soil-7", "</moisture>;ct=0"))
                               + dgram(push("moisture", "23.5", ct=0)) + LOST)
    s["push-non"] = (dgram(register("soil-7", "</m>"))
                     + dgram(push("a/b/c", b"\xa1\x61\x74\x18\x17", type_=NON, ct=60)))
    s["push-unregistered"] = dgram(push("x", "1"))
    s["push-put"] = dgram(register("hvac-2", "</sp>")) + dgram(push("sp", "21", method=PUT))
    s["push-hostile-path"] = (dgram(register("soil-7", "</m>"))
                              + dgram(push("a/+/b", "1", mid=10)) + dgram(push("a/#/b", "1", mid=11))
                              + dgram(pdu(CON, POST, 12, TOK, path_opts("ps") + [(URI_PATH, "a\0b")], "1"))
                              + dgram(pdu(CON, POST, 13, TOK, path_opts("ps") + [(URI_PATH, "")], "1"))
                              + dgram(pdu(CON, POST, 14, TOK, path_opts("ps") + [(URI_PATH, "a/b")], "1"))
                              + dgram(pdu(CON, POST, 15, TOK, path_opts("ps") + [(URI_PATH, "..")], "1"))
                              + dgram(push("/".join(["l"] * 20), "1", mid=16))
                              + dgram(pdu(CON, POST, 17, TOK, path_opts("ps") + [(URI_PATH, b"s\xc3\xa4ule"),
                                                                 (URI_PATH, b"\xff\xfe")], "1")))
    s["push-too-large"] = dgram(register("soil-7", "</m>")) + dgram(push("m", "x" * 300))
    s["queue-full"] = dgram(register("soil-7", "</m>")) + b"".join(
        dgram(push("m", str(i), mid=20 + i, type_=NON)) for i in range(8))
    s["registry-full"] = b"".join(
        dgram(register("dev-%d" % i, "</t>"), dev=i) for i in range(4))
    s["two-devices-same-ep"] = (dgram(register("meter-1", meter))
                                + dgram(register("meter-1", meter), dev=1)
                                + dgram(push("energy", "5"), dev=1)
                                + dgram(push("energy", "6", mid=11)))
    s["block1-push"] = dgram(register("soil-7", "</m>")) + dgram(
        pdu(CON, POST, 30, TOK, path_opts("ps/m") + [(BLOCK1, uint(0x08 | 0))], "x" * 16))
    # Block-wise bodies (intake_blocks.c): whole, repeated, over the limit
    # (max_payload 256 in the harness), out of order, tagged, registrations.
    s["block1-whole"] = dgram(register("soil-7", "</m>")) + b"".join(
        dgram(block1_push("m", n, n < 2, "abcd"[n] * (64 if n < 2 else 9), mid=30 + n))
        for n in range(3)) + ACKED
    s["block1-repeat"] = dgram(register("soil-7", "</m>")) + b"".join(
        dgram(block1_push("m", n, n < 1, "ef"[n] * 64, mid=30 + n)) * 2 for n in range(2))
    s["block1-size1-over"] = dgram(register("soil-7", "</m>")) + dgram(
        block1_push("m", 0, True, "y" * 64, size1=0xFFFFFFFF)) + dgram(
        block1_push("m", 1, False, "y" * 64, mid=31))
    s["block1-past-limit"] = dgram(register("soil-7", "</m>")) + b"".join(
        dgram(block1_push("m", n, True, "z" * 64, mid=30 + n)) for n in range(5))
    s["block1-gap-lone"] = (dgram(register("soil-7", "</m>"))
                            + dgram(block1_push("m", 0, True, "g" * 64))
                            + dgram(block1_push("m", 2, False, "h", mid=31))
                            + dgram(block1_push("n", 3, False, "i", mid=32)))
    s["block1-tags-idle"] = (dgram(register("soil-7", "</m>")) + b"".join(
        dgram(block1_push("m", 0, True, "t" * 16, mid=30 + i, szx=0, tag=bytes([i])))
        for i in range(4)) + after(100) + dgram(block1_push("m", 1, False, "u", mid=40,
                                                             szx=0, tag=b"\x03")))
    links = ",".join("</m%d>;obs;ct=0" % i for i in range(6))
    s["block1-register"] = b"".join(
        dgram(pdu(CON, POST, 50 + n, TOK + bytes([n]), path_opts("rd") + query_opts("ep=soil-8")
                  + [(CONTENT_FORMAT, uint(40)), (BLOCK1, uint(n << 4 | (8 if n < 1 else 0) | 2))],
                  part))
        for n, part in enumerate((links[:64], links[64:])))
    # A block-wise notification (transport_blocks.c): the first block, then
    # the answer to the gateway's GET for the next one.
    s["block2-notify"] = (dgram(register("meter-1", "</energy>;obs;ct=0"))
                          + reply(ACK, code(2, 5), [(OBSERVE, uint(1)), (BLOCK2, uint(0x08 | 2)),
                                                    (SIZE2, uint(100))], "n" * 64)
                          + reply(ACK, code(2, 5), [(BLOCK2, uint(1 << 4 | 2))], "o" * 36)
                          + reply(CON, code(2, 5), [(OBSERVE, uint(2)), (BLOCK2, uint(0x08 | 2))],
                                  "p" * 64)
                          + reply(ACK, code(2, 5), [(BLOCK2, uint(3 << 4 | 2))], "q" * 10))
    # The gateway observes /energy: answer it, then notify.
    s["observe-notify"] = (dgram(register("meter-1", "</energy>;obs;ct=0"))
                           + reply(ACK, code(2, 5), [(OBSERVE, uint(1)), (CONTENT_FORMAT, b""),
                                                    (MAX_AGE, uint(60))], "1.5")
                           + reply(CON, code(2, 5), [(OBSERVE, uint(2))], "1.6")
                           + reply(NON, code(2, 5), [(OBSERVE, uint(1))], "stale")
                           + reply(NON, code(2, 5), [(OBSERVE, uint(3)), (CONTENT_FORMAT, uint(60))],
                                   b"\xa1\x61\x76\x01"))
    s["observe-refused"] = (dgram(register("meter-1", "</energy>;obs"))
                            + reply(ACK, code(4, 4)) + reply(RST, 0))
    s["command-set"] = (dgram(register("hvac-2", "</setpoint>;ct=0"))
                        + mqtt("coap2mqtt/hvac-2/setpoint/set", b"21.5")
                        + reply(ACK, code(2, 4)))
    s["command-get"] = (dgram(register("hvac-2", "</setpoint>;ct=0"))
                        + mqtt("coap2mqtt/hvac-2/setpoint/get") + reply(ACK, code(2, 5), [], "21"))
    s["command-queued-then-kick"] = (mqtt("coap2mqtt/hvac-2/setpoint/set", b"20")
                                     + mqtt("coap2mqtt/hvac-2/setpoint/set", b"21")
                                     + dgram(register("hvac-2", "</setpoint>;ct=0"))
                                     + reply(ACK, code(4, 4)) + reply(RST, 0))
    s["command-bad-topics"] = (mqtt("coap2mqtt/hvac-2/set") + mqtt("coap2mqtt/+/x/set")
                               + mqtt("coap2mqtt/bridge/x/set") + mqtt("other/hvac-2/x/set"))
    # The request API, reached through the same MQTT dispatch as commands.
    s["requests"] = (dgram(register("hvac-2", "</setpoint>;ct=0"))
                     + mqtt("coap2mqtt/hvac-2/setpoint/set", b"21")
                     + mqtt("coap2mqtt/hvac-2/setpoint/set", b"22")
                     + mqtt("coap2mqtt/bridge/request/health_check", b'{"transaction":1}')
                     + mqtt("coap2mqtt/bridge/request/devices")
                     + mqtt("coap2mqtt/bridge/request/device/commands/cancel", b'{"id":"hvac-2"}')
                     + mqtt("coap2mqtt/hvac-2/setpoint/set", b"23")
                     + mqtt("coap2mqtt/bridge/request/device/remove", b'{"id":"hvac-2"}')
                     + reply(ACK, code(2, 4))
                     + mqtt("coap2mqtt/bridge/request/log_level", b'{"level":"warning"}')
                     + mqtt("coap2mqtt/bridge/request/nope", b"{bad")
                     + dgram(register("hvac-2", "</setpoint>;ct=0")))
    s["lifetime-expires"] = (dgram(register("meter-1", "</energy>;obs", lt=10)) + TIME
                             + dgram(push("energy", "1", type_=NON)) + TIME)
    s["push-waits-expiry"] = (dgram(register("soil-7", "</m>", lt=10))
                              + dgram(push("m", "1")) + TIME + ACKED
                              + dgram(pdu(CON, DELETE, 4, TOK, path_opts("rd/soil-7"))) + TIME)
    s["command-expires"] = (dgram(register("hvac-2", "</setpoint>;ct=0"))
                            + mqtt("coap2mqtt/hvac-2/setpoint/set", b"21") + after(61)
                            + mqtt("coap2mqtt/hvac-2/setpoint/set", b"22") + after(30) + after(31)
                            + reply(ACK, code(2, 4)))
    s["observe-retry-silence"] = (dgram(register("meter-1", "</energy>;obs"))
                                  + reply(ACK, code(5, 3), [(MAX_AGE, uint(1))]) + after(10)
                                  + reply(ACK, code(2, 5), [(OBSERVE, uint(5)), (MAX_AGE, uint(2))], "1")
                                  + after(20) + after(20) + reply(NON, code(2, 5), [(OBSERVE, uint(6))], "2"))
    s["not-found"] = dgram(pdu(CON, GET, 40, TOK, path_opts(".well-known/core")))
    s["empty-and-ping"] = dgram(pdu(CON, 0, 41)) + dgram(b"") + dgram(b"\x40")
    return s


# --- other targets -------------------------------------------------------------

def linkformat_seeds():
    return {
        "meter": "</energy>;obs;ct=0,</power>;obs;ct=0,</relay>;ct=0",
        "hvac": '</temperature>;obs;ct=0;rt="temperature-c",</setpoint>;ct="0 50"',
        "ws": "</a> ; obs , </b>;if=\"sensor\";title*=utf-8''x",
        "percent": "</s%C3%A4ule/1>;obs,</x%2Fy>",
        "quoted": '</q>;rt="a,b;c \\" d";anchor="/x"',
        "dup": "</t>;ct=0,</t>;obs",
        "deep": "<" + "/l" * 16 + ">;obs",
        "bad": "</set>,<//x>,</a/./b>,</..>,</+/#>",
        "many": ",".join("</r%d>;obs" % i for i in range(40)),
        "senml": "</sml>;obs;ct=110,</cbor>;ct=60",
    }


def topics_seeds():
    return {
        "set": b"coap2mqtt\0coap2mqtt/meter-1/relay/set",
        "get": b"coap2mqtt\0coap2mqtt/hvac-2/zone/1/setpoint/get",
        "base-levels": b"site/a/coap2mqtt\0site/a/coap2mqtt/x/y/set",
        "build": b"coap2mqtt\0meter-1\0energy/total",
        "utf8": "coap2mqtt\0s\u00e4ule\0temp/\u00b0c".encode(),
        "hostile": b"coap2mqtt\0coap2mqtt/bridge/x/set\0a/../b",
        "wild": b"c/+\0c/+/x/set\0#",
        "result": b"coap2mqtt\0coap2mqtt/d/p/set/result",
        "bad-utf8": b"coap2mqtt\0dev\xc0\xaf\0p\xed\xa0\x80",
        "deep": b"b\0" + b"b/id/" + b"/".join([b"l"] * 17) + b"/set",
    }


def config_seeds():
    base = open(os.path.join(ROOT, "conf", "coap2mqtt.conf"), "rb").read()
    s = {"example": base,
         "minimal": b'coap = { listen = [ "127.0.0.1:5684" ]; };\n',
         "plain": b'coap = { plain_listen = [ "[::1]:5683" ]; };\nstate_dir = "/tmp";\n',
         "include": b'coap = { listen = [ "0.0.0.0:5684" ]; };\n@include "inc.conf"\n',
         "full": (b'coap = { listen = ["0.0.0.0:5684"]; max_sessions = 10; max_handshakes = 5;'
                  b' session_timeout = 60; max_payload = 1024; };\n'
                  b'rd = { default_lifetime = 60; min_lifetime = 10; max_lifetime = 120;'
                  b' max_devices = 5; };\n'
                  b'mqtt = { host = "broker"; port = 8883; base_topic = "site/a"; client_id = "gw1";'
                  b' username = "u"; keepalive = 10; qos_con = 1; qos_non = 1; stats_interval = 0;'
                  b' reconnect_min = 2; reconnect_max = 4; session_expiry = 0; max_inflight = 1; };\n'
                  b'commands = { ttl = 1; max_queued = 1; };\nqueue = { max_messages = 1; };\n')}
    broken = {
        "big-int": base.replace(b"port = 1883;", b"port = 4294967297;"),
        "wrong-type": base.replace(b"port = 1883;", b'port = "1883";'),
        "range": base.replace(b"qos_con = 1;", b"qos_con = 2;"),
        "unknown": base + b"mqtt2 = { x = 1; };\n",
        "syntax": base.replace(b'host = "localhost";', b'host "localhost";'),
        "cross": base.replace(b"min_lifetime = 1;", b"min_lifetime = 100000;"),
        "no-listen": base.replace(b'listen = [ "0.0.0.0:5684", "[::]:5684" ];', b""),
        "bad-addr": base.replace(b'"[::]:5684"', b'"[::1:5684"'),
        "base-topic": base.replace(b'base_topic = "coap2mqtt";', b'base_topic = "a/+/#";'),
        "nul": base.replace(b"state_dir", b"state\0dir", 1),
        "list-type": base.replace(b'listen = [ "0.0.0.0:5684", "[::]:5684" ];', b"listen = 5684;"),
        "hex-float": base.replace(b"keepalive = 30;", b"keepalive = 0x7fffffffffffffff;"),
        "devices-bad": (b'coap = { plain_listen = [ "127.0.0.1:5683" ]; };\n'
                        b'devices = ( { id = "a"; uri = "http://x"; observe = [ "/t" ]; },\n'
                        b'  { id = "a"; uri = "coaps://[::1"; keepalive = 0; }, 5 );\n'),
    }
    s["devices"] = (b'coap = { psk_file = "/nonexistent"; };\n'
                    b'devices = (\n'
                    b'  { id = "lab-1"; uri = "coap://192.0.2.10:5683"; },\n'
                    b'  { id = "meter-7"; uri = "coaps://[2001:db8::7]:5684"; psk_identity = "gw-a";'
                    b' observe = [ "t", "a/b" ]; keepalive = 30; }\n'
                    b');\n')
    s["discovery"] = (b'coap = { plain_listen = [ "127.0.0.1:5683" ]; };\n'
                      b'discovery = { multicast = true; interface = "lo"; interval = 60; };\n')
    s["discovery-bad"] = (b'coap = { listen = [ "0.0.0.0:5684" ]; psk_file = "/k"; };\n'
                          b'discovery = { multicast = true; interface = "a/b"; interval = 5; };\n')
    # OSCORE contexts (refused with the reason by a build without OSCORE)
    s["oscore"] = (b'coap = { plain_listen = [ "127.0.0.1:5683" ]; };\n'
                   b'oscore = (\n'
                   b'  { id = "soil-1"; master_secret = "0102030405060708090a0b0c0d0e0f10";'
                   b' master_salt = "9e7c"; sender_id = "01"; recipient_id = "02"; },\n'
                   b'  { id = "lab-ctx"; master_secret = "1102030405060708090a0b0c0d0e0f10";'
                   b' sender_id = ""; recipient_id = "03"; id_context = "aa"; aead = "AES-CCM-16-64-256";'
                   b' replay_window = 63; }\n'
                   b');\n'
                   b'devices = ( { id = "lab-9"; uri = "coap://192.0.2.9"; oscore = "lab-ctx"; } );\n')
    s["oscore-bad"] = (b'oscore = ( { id = "a"; master_secret = "0g"; sender_id = "01";'
                       b' recipient_id = "01"; replay_window = 0; }, 5,'
                       b' { id = "a"; master_secret = 7; } );\n'
                       b'devices = ( { id = "a"; uri = "coaps://x"; oscore = "b"; } );\n')
    s.update(broken)
    return s


# --- libFuzzer dictionaries (tests/fuzz/dict/<target>.dict) ------------------

def _dict_entry(b):
    if isinstance(b, str):
        b = b.encode()
    return '"' + "".join(chr(c) if 32 <= c < 127 and c not in (34, 92) else "\\x%02x" % c
                         for c in b) + '"'


def dictionaries():
    conf = open(os.path.join(ROOT, "conf", "coap2mqtt.conf")).read()
    names = sorted(set(re.findall(r"^\s*#?\s*([a-z_]+)\s*=", conf, re.M)))
    lf = ["</", ">", ";obs", ";ct=", ";rt=", '"', ",", "%2F", "%00", "%C3%A4", ";if=", "title*="]
    topic = ["coap2mqtt", "/set", "/get", "/result", "bridge", "availability", "..", "+", "#",
             b"\xc0\xaf", b"\xef\xbf\xbf"]
    handlers = (["rd", "ps", "ep=", "lt=", "</", ">;obs", ";ct=", "coap2mqtt/", "/set", "/get",
                 b"\xff", b"\x00\x00\x00"]
                + ["coap2mqtt/bridge/request/", "health_check", "devices", "device/remove",
                   "device/commands/cancel", "log_level", '{"id":"', '"transaction":',
                   '{"level":"debug"}']
                + [bytes([o]) for o in (0xB2, 0xB1, 0x41, 0x42, 0x43, 0x44, 0x45, 0x60, 0x61,
                                         0x62, 0x63, 0x84, 0x85, 0x8f, 0x82)]
                + [bytes([0x40 | t << 4 | 4, c]) for t in (0, 1, 2) for c in (1, 2, 3, 4, 0x45, 0x44)])
    config = names + ["=", ";", "{", "}", "[", "]", "@include", '"inc.conf"', "0x", "L", "true",
                      '"127.0.0.1:5684"', '"[::]:5684"', "hex:", "devices", "(", ")",
                      "id", "uri", "psk_identity", "observe", '"coap://', '"coaps://']
    return {"linkformat": lf, "topics": topic, "handlers": handlers, "config": config}


def write_dicts():
    d = os.path.join(HERE, "dict")
    os.makedirs(d, exist_ok=True)
    for target, words in dictionaries().items():
        with open(os.path.join(d, target + ".dict"), "w") as f:
            f.write("# generated by tests/fuzz/gen_seeds.py\n")
            for w in words:
                f.write(_dict_entry(w) + "\n")


# --- fuzz_spool: 16 bytes of acked, then a segment ------------------------------

def spool_record(seq, topic, payload, qos=1, ct=0):
    """A "C2M2" record as src/spool_records.c writes it (all little-endian)."""
    body = (bytes([qos, 0]) + struct.pack("<H", 0) + struct.pack("<i", ct) +
            struct.pack("<HHI", len(topic), 0, len(payload)) + topic + payload)
    fields = struct.pack("<I", len(body)) + struct.pack("<IQ", 0, seq)   # length; flags, seq
    crc = zlib.crc32(body, zlib.crc32(fields[4:], zlib.crc32(fields[:4])))
    return (struct.pack("<III", 0x43324d32, len(body), crc) + struct.pack("<IQ", 0, seq) +
            body)


def spool_acked(pos):
    b = struct.pack("<Q", pos)
    return b + struct.pack("<II", zlib.crc32(b), 0x414d3243)


def spool_seeds():
    recs = [spool_record(i, b"c2m/meter-1/energy", b'{"seq":%d}' % i) for i in range(1, 6)]
    seg = b"".join(recs)
    mid = len(recs[0]) + len(recs[1]) + 30
    flipped = bytearray(seg)
    flipped[mid] ^= 0x04
    bad_acked = bytearray(spool_acked(2))
    bad_acked[7] ^= 0x80
    return {
        "intact": spool_acked(0) + seg,
        "intact-acked-2": spool_acked(2) + seg,
        "bitflip-middle-record": spool_acked(0) + bytes(flipped),
        "torn-end": spool_acked(0) + seg[:-7],
        "empty-segment": spool_acked(0),
        "damaged-acked": bytes(bad_acked) + seg,
        "garbage-between": spool_acked(0) + recs[0] + b"junk" * 5 + b"".join(recs[1:]),
        # A number far past the others (CI found it: the window of
        # acknowledgements was sized to the jump), then one near 2^64.
        "far-number": (spool_acked(0) + recs[0] +
                       spool_record(1 << 45, b"c2m/meter-1/energy", b"{}") + recs[1] +
                       spool_record((1 << 64) - 2, b"c2m/meter-1/energy", b"{}")),
    }


def write(target, seeds):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    for old in os.listdir(d):      # this directory is generated, all of it
        os.unlink(os.path.join(d, old))
    for name, data in seeds.items():
        if isinstance(data, str):
            data = data.encode()
        h = hashlib.sha1(data).hexdigest()[:10]
        with open(os.path.join(d, "%s-%s" % (name, h)), "wb") as f:
            f.write(data)


def main():
    write("handlers", handler_seeds())
    write("linkformat", linkformat_seeds())
    write("topics", topics_seeds())
    write("config", config_seeds())
    write("spool", spool_seeds())
    write_dicts()


if __name__ == "__main__":
    main()
