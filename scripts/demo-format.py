#!/usr/bin/env python3
"""Formats the demo's message stream for a terminal (scripts/demo.sh).

Reads lines "topic<TAB>content-type<TAB>retained<TAB>hex-payload", as written
by mosquitto_sub -F '%t\\t%C\\t%r\\t%x', and prints one readable line per
message: text as text, CBOR (Content-Format 60) in CBOR diagnostic notation,
anything else as hex.  Every line is also appended to the file named by the
first argument, for the demo's end-of-run summary.  Standard library only.
"""
import struct
import sys
import time

MAX_SHOWN = 240          # characters of payload per line


class NotCbor(Exception):
    pass


def cbor_item(data, pos, depth=0):
    """Decodes one CBOR data item at data[pos:]; returns (text, next pos)."""
    if depth > 16 or pos >= len(data):
        raise NotCbor()
    ib = data[pos]
    major, info = ib >> 5, ib & 31
    pos += 1
    if major == 7:
        if info == 20:
            return "false", pos
        if info == 21:
            return "true", pos
        if info == 22:
            return "null", pos
        widths = {25: ("!e", 2), 26: ("!f", 4), 27: ("!d", 8)}
        if info not in widths or pos + widths[info][1] > len(data):
            raise NotCbor()
        fmt, n = widths[info]
        return format(struct.unpack(fmt, data[pos:pos + n])[0], ".7g"), pos + n
    if info < 24:
        val = info
    elif info <= 27:
        n = 1 << (info - 24)
        if pos + n > len(data):
            raise NotCbor()
        val = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    else:
        raise NotCbor()     # indefinite lengths: not worth it here
    if major == 0:
        return str(val), pos
    if major == 1:
        return str(-1 - val), pos
    if major in (2, 3):
        if pos + val > len(data):
            raise NotCbor()
        raw = data[pos:pos + val]
        if major == 2:
            return "h'%s'" % raw.hex(), pos + val
        return '"%s"' % raw.decode("utf-8", "replace"), pos + val
    if major in (4, 5):
        items = []
        for _ in range(val * (2 if major == 5 else 1)):
            text, pos = cbor_item(data, pos, depth + 1)
            items.append(text)
        if major == 4:
            return "[%s]" % ", ".join(items), pos
        pairs = ("%s: %s" % (items[i], items[i + 1]) for i in range(0, len(items), 2))
        return "{%s}" % ", ".join(pairs), pos
    text, pos = cbor_item(data, pos, depth + 1)     # major 6: a tag
    return "%d(%s)" % (val, text), pos


def cbor_diag(data):
    text, end = cbor_item(data, 0)
    if end != len(data):
        raise NotCbor()
    return "cbor " + text


def show(ctype, data):
    if ctype.startswith("application/cbor") or ctype.startswith("application/senml+cbor"):
        try:
            return cbor_diag(data)
        except (NotCbor, struct.error):
            pass
    elif not ctype.startswith("application/octet-stream"):
        try:
            text = data.decode("utf-8")
            if all(c.isprintable() or c.isspace() for c in text):
                return " ".join(text.split())
        except UnicodeDecodeError:
            pass
    return "hex " + data.hex()


def main():
    log = open(sys.argv[1], "a", buffering=1) if len(sys.argv) > 1 else None
    for line in sys.stdin:
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 4:
            continue
        topic, ctype, retained, hexpayload = parts
        try:
            data = bytes.fromhex(hexpayload)
        except ValueError:
            continue
        shown = show(ctype, data)
        if len(shown) > MAX_SHOWN:
            shown = shown[:MAX_SHOWN] + "..."
        out = "%s  %-40s %s%s%s" % (time.strftime("%H:%M:%S"), topic,
                                    "[%s] " % ctype if ctype else "", shown,
                                    "  (retained)" if retained == "1" else "")
        print(out, flush=True)
        if log:
            log.write(out + "\n")


if __name__ == "__main__":
    try:
        main()
    except (KeyboardInterrupt, BrokenPipeError):
        pass
