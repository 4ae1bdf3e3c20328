"""The operator's command line (DESIGN.md): -V, and -t checking a config
and the files it names, exiting 0 or 78 (EX_CONFIG) with file:line lines."""

import os
import re
import subprocess

import c2m

EX_CONFIG = 78


def run(argv, timeout=10):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout, env=c2m.gateway_env())
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def write_conf(path, psk_path, extra_mqtt=""):
    text = ('coap = {\n'
            '  listen = [ "127.0.0.1:%d" ];\n'
            '  psk_file = "%s";\n'
            '};\n'
            'state_dir = "%s";\n'
            'mqtt = {\n'
            '  host = "127.0.0.1";\n'
            '  base_topic = "c2m-test";\n'
            '%s'
            '};\n') % (c2m.free_port(c2m.socket.SOCK_DGRAM), psk_path,
                       os.path.dirname(path), extra_mqtt)
    with open(path, "w") as f:
        f.write(text)
    return path


def assert_clean(err):
    assert not any(s in err for s in c2m.SANITIZER_MARKERS), err


def test_version_exits_0(c2m_bin):
    rc, out, err = run([c2m_bin, "-V"])
    assert rc == 0, err
    assert (out + err).strip(), "-V printed nothing"
    assert_clean(err)


def test_check_valid_config(c2m_bin, tmp_path, psk_file):
    conf = write_conf(str(tmp_path / "ok.conf"), psk_file.path)
    rc, out, err = run([c2m_bin, "-t", "-c", conf])
    assert rc == 0, out + err
    assert_clean(err)


def test_check_out_of_range_reports_file_line_setting(c2m_bin, tmp_path, psk_file):
    # mqtt.port is on line 9 of this file.
    conf = write_conf(str(tmp_path / "bad.conf"), psk_file.path, "  port = 70000;\n")
    with open(conf) as f:
        line = [i for i, l in enumerate(f, 1) if "70000" in l][0]
    rc, out, err = run([c2m_bin, "-t", "-c", conf])
    assert rc == EX_CONFIG, (rc, out, err)
    assert re.search(r"%s:%d: mqtt\.port: \S" % (re.escape(conf), line), out + err), out + err
    assert_clean(err)


def test_check_unknown_setting_is_an_error(c2m_bin, tmp_path, psk_file):
    conf = write_conf(str(tmp_path / "typo.conf"), psk_file.path, "  prot = 1883;\n")
    rc, out, err = run([c2m_bin, "-t", "-c", conf])
    assert rc == EX_CONFIG, (rc, out, err)
    assert re.search(r"%s:\d+: mqtt\.prot: " % re.escape(conf), out + err), out + err


def test_check_rejects_group_readable_psk_file(c2m_bin, tmp_path, psk_file):
    conf = write_conf(str(tmp_path / "ok.conf"), psk_file.path)
    os.chmod(psk_file.path, 0o644)
    rc, out, err = run([c2m_bin, "-t", "-c", conf])
    assert rc == EX_CONFIG, (rc, out, err)
    assert re.search(r"%s:\d+: coap\.psk_file: " % re.escape(conf), out + err), out + err
    # No secret may leak into the diagnostics.
    for key in psk_file.keys.values():
        assert key not in out + err


def test_start_with_invalid_config_exits_78(c2m_bin, tmp_path, psk_file):
    conf = write_conf(str(tmp_path / "bad.conf"), psk_file.path, "  keepalive = -3;\n")
    rc, out, err = run([c2m_bin, "-c", conf])
    assert rc == EX_CONFIG, (rc, out, err)
    assert "mqtt.keepalive" in out + err
