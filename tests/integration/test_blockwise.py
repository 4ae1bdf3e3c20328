"""Block-wise pushes (RFC 7959 Block1) and the gateway's limits: the size
announced in Size1, the size the blocks add up to, the request rate, and
that only a complete body is ever published.

Most cases need datagrams no ordinary client sends (no Size1, a false
Size1, a block out of order, a transfer abandoned half-way), so they talk
raw CoAP to the plain endpoint (coap.plain_listen) from a device that
registered there; one case checks the same refusal over DTLS with
coap-client-openssl."""

import json
import time

import pytest

import c2m
import rawcoap as rc
import sec

MAX = 1024          # coap.max_payload in these tests
OCTETS = [(rc.CONTENT_FORMAT, rc.uint(42))]


@pytest.fixture
def lab(make_gateway, mqtt):
    """(gateway, client): a raw CoAP device "lab-1" registered over plain
    CoAP; everything published for it is subscribed."""
    def make(**coap):
        plain = c2m.free_port(c2m.socket.SOCK_DGRAM)
        over = {"plain_listen": ["127.0.0.1:%d" % plain], "max_payload": MAX}
        over.update(coap)
        gw = make_gateway(overrides={"coap": over})
        mqtt.subscribe(gw.topic("lab-1", "#"))
        client = rc.Client("127.0.0.1", plain, c2m.peer_addr())
        r = client.register("lab-1")
        assert r is not None and r.code == "2.01", r
        made.append(client)
        return gw, client
    made = []
    yield make
    for c in made:
        c.close()


def put_block(client, path, num, more, szx, data, size1=None, tag=None, **kw):
    opts = OCTETS + [(rc.BLOCK1, rc.block(num, more, szx))]
    if size1 is not None:
        opts.append((rc.SIZE1, rc.uint(size1)))
    if tag is not None:
        opts.append((rc.REQUEST_TAG, tag))
    return client.request(rc.POST, path, data, opts, **kw)


def readings(mqtt, gw):
    return [(m.topic.rsplit("/", 1)[-1], m.payload)
            for m in mqtt.received(gw.topic("lab-1", "#"))
            if not m.topic.endswith("/availability")]


def fence(client, mqtt, gw):
    """A plain push after the test's requests: once it is published,
    everything before it has been handled."""
    for _ in range(5):
        r = client.request(rc.POST, "ps/fence", b"f", OCTETS)
        if r is None or r.code != "5.03":
            break
        time.sleep(1)       # coap.max_request_rate: as Max-Age says
    assert r is not None and r.code == "2.04", r
    # On the lab's own lab-1/# subscription: a second, overlapping one
    # (lab-1/fence) made the broker deliver the fence twice when it came
    # in before the reading.
    mqtt.wait_for(gw.topic("lab-1", "#"), lambda m: m.topic.endswith("/fence"), timeout=5)


def test_blockwise_size1_over_max_payload_refused_at_first_block(lab, mqtt):
    """RFC 7959 2.9.3: a Size1 over the limit is refused at once, 4.13 with
    Size1 = the limit; the gateway takes none of the body."""
    gw, c = lab()
    r = put_block(c, "ps/big", 0, True, 4, b"a" * 256, size1=MAX + 1)
    assert r is not None and r.code == "4.13", r
    assert r.uint_option(rc.SIZE1) == MAX, r
    # The rest of it finds no transfer to add to.
    r = put_block(c, "ps/big", 1, False, 4, b"b" * 256, size1=MAX + 1)
    assert r is not None and r.code.startswith("4."), r
    # A body of 4 GiB announced: refused the same way, nothing allocated.
    r = put_block(c, "ps/huge", 0, True, 4, b"c" * 256, size1=0xFFFFFFFF)
    assert r is not None and r.code == "4.13", r
    fence(c, mqtt, gw)
    assert readings(mqtt, gw) == [("fence", b"f")]


def test_blockwise_over_max_payload_refused_at_first_block_dtls(make_gateway, coap, mqtt,
                                                                tmp_path):
    """coap-client sends Size1 with its first block: the only answer it
    gets is 4.13, not a 2.31 for every block and a 4.13 at the end."""
    gw = make_gateway(overrides={"coap": {"max_payload": MAX}})
    mqtt.subscribe(gw.topic("dev-1", "#"))
    f = tmp_path / "big.bin"
    f.write_bytes(b"x" * 3000)
    r = coap(gw, "dev-1", "ps/big", method="post", ct=42, file=str(f), block=256,
             verbosity=7)      # -v 7: every PDU it receives, the 2.31s too
    assert r.codes == ["4.13"], r
    assert r.options("Size1") == [str(MAX)], r
    assert coap(gw, "dev-1", "ps/small", method="post", ct=0, payload="1").code == "2.04"
    mqtt.wait_for(gw.topic("dev-1", "small"), timeout=5)
    got = [m.topic for m in mqtt.received(gw.topic("dev-1", "#"))
           if not m.topic.endswith("/availability")]
    assert got == [gw.topic("dev-1", "small")], got


def test_blockwise_without_size1_over_max_payload_refused(lab, mqtt):
    """No Size1: the block that takes the body past the limit gets 4.13
    (with Size1 = the limit), and nothing of it is published."""
    gw, c = lab()
    for n in range(MAX // 256):
        r = put_block(c, "ps/big", n, True, 4, bytes([65 + n]) * 256)
        assert r is not None and r.code == "2.31", (n, r)
        assert rc.parse_block(r.option(rc.BLOCK1))[:2] == (n, True), (n, r)
    r = put_block(c, "ps/big", MAX // 256, False, 4, b"z")
    assert r is not None and r.code == "4.13", r
    assert r.uint_option(rc.SIZE1) == MAX, r
    fence(c, mqtt, gw)
    assert readings(mqtt, gw) == [("fence", b"f")]


def test_blockwise_only_complete_bodies_published(lab, mqtt):
    """Whatever the blocks, what is published is a whole body, once, after
    its last block: never a first block, a lone block, a body cut at a
    false Size1, or the start of an abandoned or out-of-order transfer."""
    gw, c = lab()
    # Without Size1: 2.31 for each block but the last, one reading.
    body = b"A" * 64 + b"B" * 64 + b"C" * 10
    for n, part in enumerate((body[:64], body[64:128], body[128:])):
        r = put_block(c, "ps/nosize", n, n < 2, 2, part)
        assert r is not None, n
        assert r.code == ("2.31" if n < 2 else "2.04"), (n, r)
        assert rc.parse_block(r.option(rc.BLOCK1))[:2] == (n, n < 2), (n, r)
    # A Size1 smaller than the body: the whole body, not 10 bytes of it.
    r = put_block(c, "ps/small1", 0, True, 2, b"F" * 64, size1=10)
    assert r is not None and r.code == "2.31", r
    r = put_block(c, "ps/small1", 1, False, 2, b"G" * 64, size1=10)
    assert r is not None and r.code == "2.04", r
    # A lone later block: there is no transfer it belongs to.
    r = put_block(c, "ps/lone", 3, False, 2, b"E" * 10)
    assert r is not None and r.code == "4.08", r
    # Out of order: block 2 after block 0.
    assert put_block(c, "ps/gap", 0, True, 2, b"H" * 64).code == "2.31"
    r = put_block(c, "ps/gap", 2, False, 2, b"I" * 64)
    assert r is not None and r.code == "4.08", r
    # Abandoned after its first block (with an honest Size1).
    assert put_block(c, "ps/abandoned", 0, True, 2, b"J" * 64, size1=200).code == "2.31"
    fence(c, mqtt, gw)
    assert readings(mqtt, gw) == [("nosize", body), ("small1", b"F" * 64 + b"G" * 64),
                                  ("fence", b"f")], readings(mqtt, gw)


def test_blockwise_repeated_block_answered_again_published_once(lab, mqtt):
    """A block sent again (its answer was lost) is answered again and not
    added twice; the repeated last block is answered again, published
    once."""
    gw, c = lab()
    for n, part in enumerate((b"K" * 64, b"L" * 64, b"M" * 5)):
        r = put_block(c, "ps/again", n, n < 2, 2, part)
        assert r is not None and r.code == ("2.31" if n < 2 else "2.04"), (n, r)
        # The same block again, as a retransmission (same Message ID and
        # token): the same answer.
        again = put_block(c, "ps/again", n, n < 2, 2, part, mid=c.last_mid,
                          token=c.last_token)
        assert again is not None and again.code == r.code, (n, again)
    fence(c, mqtt, gw)
    assert readings(mqtt, gw) == [("again", b"K" * 64 + b"L" * 64 + b"M" * 5),
                                  ("fence", b"f")], readings(mqtt, gw)


def test_blockwise_every_block_counts_against_request_rate(lab, mqtt):
    """coap.max_request_rate counts blocks, not bodies: a device sending
    blocks faster than the rate gets 5.03 + Max-Age for some of them, and
    its body is still published whole once it slows down."""
    rate = 2                # burst 4: 16 blocks are throttled even when
    gw, c = lab(max_request_rate=rate)      # the sanitized build is slow
    blocks = 16             # 16 x 64 = MAX bytes
    throttled = 0
    n = 0
    while n < blocks:
        r = put_block(c, "ps/paced", n, n < blocks - 1, 2, bytes([48 + n % 10]) * 64,
                      size1=blocks * 64)
        assert r is not None, n
        if r.code == "5.03":
            throttled += 1
            assert r.uint_option(rc.MAX_AGE) == 1, r
            assert throttled < 40, "still throttled"
            time.sleep(1)
            continue        # the same block again, as told
        assert r.code == ("2.31" if n < blocks - 1 else "2.04"), (n, r)
        n += 1
    assert throttled >= 1, "16 blocks at once, none throttled at %d/s" % rate
    fence(c, mqtt, gw)
    body = b"".join(bytes([48 + n % 10]) * 64 for n in range(blocks))
    assert readings(mqtt, gw) == [("paced", body), ("fence", b"f")]


def test_blockwise_registration(make_gateway, mqtt):
    """/rd bodies follow the same rules: a registration sent in blocks is
    registered once it is whole, with every link (not those of its first
    block); one whose Size1 is over the limit is refused at its first
    block."""
    plain = c2m.free_port(c2m.socket.SOCK_DGRAM)
    gw = make_gateway(overrides={"coap": {"plain_listen": ["127.0.0.1:%d" % plain],
                                          "max_payload": MAX}})
    devices = gw.topic("bridge", "devices")
    mqtt.subscribe(devices)
    c = rc.Client("127.0.0.1", plain, c2m.peer_addr())
    try:
        links = ",".join("</sensor%02d>;ct=0" % i for i in range(8)).encode()
        assert len(links) > 64
        ct40 = [(rc.CONTENT_FORMAT, rc.uint(40))]
        parts = [links[i:i + 64] for i in range(0, len(links), 64)]
        for n, part in enumerate(parts):
            last = n == len(parts) - 1
            r = c.request(rc.POST, "rd?ep=lab-2&lt=60", part,
                          ct40 + [(rc.BLOCK1, rc.block(n, not last, 2))])
            assert r is not None and r.code == ("2.01" if last else "2.31"), (n, r)
        m = mqtt.wait_for(devices, lambda m: any(
            d["id"] == "lab-2" and len(d["resources"]) == 8 for d in m.json()), timeout=5)
        assert m
        # Another device (a session of its own: this one is lab-2 now).
        c3 = rc.Client("127.0.0.1", plain, c2m.peer_addr())
        r = c3.request(rc.POST, "rd?ep=lab-3&lt=60", links[:64],
                       ct40 + [(rc.BLOCK1, rc.block(0, True, 2)),
                               (rc.SIZE1, rc.uint(MAX + 1))])
        c3.close()
        assert r is not None and r.code == "4.13", r
    finally:
        c.close()


# --------------------------------------------------------------------------
# Block2 answers (transport_blocks.c): libcoap no longer puts them together

@pytest.mark.mqtt5("Response Topic")
def test_blockwise_get_answer_whole(gateway, sim, mqtt):
    """A command's GET whose answer comes in blocks (2 KiB, RFC 7959 Block2)
    is published once, whole, on its Response Topic."""
    config = gateway.topic("industrial-1", "config")
    replies = "test-replies/blockwise-get"
    mqtt.subscribe(replies)
    s = sim("industrial", extra_args=["--interval", "60000"])
    s.wait_for(r"^OBSERVED industrial-1 config$", timeout=15)
    body = json.dumps({"pad": "".join(chr(ord("a") + i % 26) for i in range(2038))},
                      separators=(",", ":")).encode()
    assert len(body) == 2048
    mqtt.publish(config + "/set", body)
    s.wait_for(r"^PUT industrial-1 config 2048 ", timeout=15)
    mqtt.publish(config + "/get", b"", response_topic=replies, correlation_data=b"g1")
    m = mqtt.wait_for(replies, timeout=10)
    assert m.payload == body
    assert m.prop("CorrelationData") == b"g1"
    # A fence, not a pause: a second GET goes through the same per-device
    # queue (NSTART = 1), so its reply comes after any repeat of the first.
    mqtt.publish(config + "/get", b"", response_topic=replies, correlation_data=b"g2")
    mqtt.wait_for(replies, lambda r: r.prop("CorrelationData") == b"g2", timeout=10)
    got = [r.prop("CorrelationData") for r in mqtt.received(replies)]
    assert got.count(b"g1") == 1, got


def test_blockwise_notification_over_max_payload_dropped(make_gateway, sim, mqtt):
    """A notification whose blocks add up past coap.max_payload is dropped
    (counted), never published cut; the observation goes on."""
    gw = make_gateway(overrides={"coap": {"max_payload": 2048}})
    topic = gw.topic("meter-1", "energy")
    mqtt.subscribe(topic)
    before = sec.stats(mqtt, gw)
    s = sim("meter", extra_args=["--payload-size", "4096", "--interval", "500"])
    s.wait_for(r"^OBSERVED meter-1 energy$", timeout=15)
    after = sec.stats(mqtt, gw, lambda d: sec.counter(d, "drops_too_large") >=
                      sec.counter(before, "drops_too_large") + 2, timeout=10)
    assert sec.counter(after, "drops_too_large") >= 2, after
    assert gw.log.find(r"block-wise answer .* over coap\.max_payload")
    assert not mqtt.received(topic), [len(m.payload) for m in mqtt.received(topic)]
