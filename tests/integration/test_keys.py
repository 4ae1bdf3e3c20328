"""The PSK file as operators use it: hex secrets, and SIGHUP re-reading
it (new identities get in, removed ones are shut out, a broken file is
refused as a whole and the old keys stay)."""

import signal


def register(coap, gw, ident, **kw):
    return coap(gw, ident, "rd?ep=%s&lt=60" % ident, method="post", ct=40,
                payload="</t>", wait=3, **kw)


def hup(gw):
    """SIGHUP, then the daemon's log line about the reload."""
    mark = gw.log.mark()
    gw.proc.send_signal(signal.SIGHUP)
    return gw.log.wait_for(r"reload: (done|.*refused)", timeout=5, start=mark).string


def test_hex_secret(make_gateway, coap, psk_file):
    psk_file.add("dev-hex", "hex:" + b"plain-hex-key-42".hex())
    gw = make_gateway()
    r = register(coap, gw, "dev-hex", key="plain-hex-key-42")
    assert r.code == "2.01", r


def test_hup_adds_and_removes_identities(gateway, coap, psk_file):
    newbie_key = psk_file.add("newbie-1")       # after the gateway started
    assert register(coap, gateway, "newbie-1").code is None
    dev1_key = psk_file["dev-1"]
    assert register(coap, gateway, "dev-1").code == "2.01"
    del psk_file.keys["dev-1"]
    psk_file.write()

    hup(gateway)
    assert register(coap, gateway, "newbie-1", key=newbie_key).code == "2.01"
    r = register(coap, gateway, "dev-1", key=dev1_key)
    assert r.code is None, "removed identity still accepted: %r" % r


def test_hup_with_broken_file_keeps_old_keys(gateway, coap, psk_file):
    psk_file.add("newbie-2")
    with open(psk_file.path, "a") as f:
        f.write("this line has no colon\n")
    hup(gateway)
    assert gateway.running()
    # The whole file was refused: the old keys work, the new one does not.
    assert register(coap, gateway, "dev-2").code == "2.01"
    assert register(coap, gateway, "newbie-2").code is None
