"""Home Assistant MQTT discovery (homeassistant.enabled): each resource a
device registers becomes an entity from its link attributes, in configs
checked here against the keys Home Assistant's MQTT discovery documents
for each component; availability is wired to the device and the bridge;
the configs come again when Home Assistant says "online" and go when the
registration ends."""

import json
import re

import c2m

PREFIX = "homeassistant"

# Home Assistant's MQTT discovery schema (home-assistant.io/integrations/
# <component>.mqtt/ and mqtt/#discovery), full key names: what every entity
# may carry, and each component's own keys (required ones separately).
COMMON = {"availability", "availability_mode", "availability_template",
          "availability_topic", "device", "enabled_by_default", "encoding",
          "entity_category", "entity_picture", "icon", "json_attributes_template",
          "json_attributes_topic", "name", "object_id", "default_entity_id", "origin",
          "platform", "qos", "unique_id"}
SCHEMA = {
    "sensor": ({"state_topic"},
               {"device_class", "expire_after", "force_update", "last_reset_value_template",
                "options", "suggested_display_precision", "state_class",
                "unit_of_measurement", "value_template"}),
    "binary_sensor": ({"state_topic"},
                      {"device_class", "expire_after", "force_update", "off_delay",
                       "payload_off", "payload_on", "value_template"}),
    "number": ({"command_topic"},
               {"command_template", "device_class", "max", "min", "mode", "optimistic",
                "payload_reset", "retain", "state_topic", "step", "unit_of_measurement",
                "value_template"}),
    # command_topic is optional for Home Assistant; a switch without one
    # would be of no use here, so it is required.
    "switch": ({"command_topic"},
               {"command_template", "device_class", "optimistic", "payload_off",
                "payload_on", "retain", "state_off", "state_on", "state_topic",
                "value_template"}),
}
DEVICE_KEYS = {"configuration_url", "connections", "hw_version", "identifiers",
               "manufacturer", "model", "model_id", "name", "serial_number",
               "suggested_area", "sw_version", "via_device"}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
AVAILABILITY_KEYS = {"topic", "payload_available", "payload_not_available",
                     "value_template"}
SENSOR_CLASSES = {"temperature", "humidity", "illuminance", "pressure", "power", "energy",
                  "voltage", "current", "carbon_dioxide", "battery"}
UNITS = {"temperature": {"°C", "°F", "K"}, "humidity": {"%"}, "energy": {"Wh", "kWh"}}
STATE_CLASSES = {"measurement", "total", "total_increasing"}
ID_RE = re.compile(r"^[a-zA-Z0-9_-]+$")

LINKS = ('</temperature>;obs;rt="temperature";ct=0,'
         '</humidity>;rt="oic.r.humidity";if="oic.if.s";ct=0,'
         '</setpoint>;obs;if="core.a";rt="setpoint";ct=0,'
         '</relay>;if="core.a";rt="oic.r.switch.binary",'
         '</raw>;obs;ct=60,'
         '</index>;ct=40')
EXPECTED = {("sensor", "temperature"), ("sensor", "humidity"), ("number", "setpoint"),
            ("switch", "relay"), ("sensor", "raw")}


def check_config(topic, cfg, prefix=PREFIX):
    """Asserts that one discovery config is what Home Assistant accepts."""
    parts = topic.split("/")
    assert len(parts) == 5 and parts[0] == prefix and parts[4] == "config", topic
    component, node, obj = parts[1:4]
    assert ID_RE.match(node) and ID_RE.match(obj), topic
    required, own = SCHEMA[component]
    keys = set(cfg)
    assert required <= keys, (topic, required - keys)
    assert keys <= COMMON | required | own, (topic, keys - COMMON - required - own)
    assert isinstance(cfg["unique_id"], str) and cfg["unique_id"]
    assert isinstance(cfg["name"], str)
    dev = cfg["device"]
    assert set(dev) <= DEVICE_KEYS, set(dev) - DEVICE_KEYS
    assert dev["identifiers"] and all(isinstance(i, str) for i in dev["identifiers"])
    assert set(cfg["origin"]) <= ORIGIN_KEYS and cfg["origin"]["name"]
    if "availability" in cfg:
        assert "availability_topic" not in cfg      # HA: not both
        for a in cfg["availability"]:
            assert "topic" in a and set(a) <= AVAILABILITY_KEYS, a
        assert cfg["availability_mode"] in ("all", "any", "latest")
    if "device_class" in cfg and component == "sensor":
        assert cfg["device_class"] in SENSOR_CLASSES, cfg
        assert cfg["unit_of_measurement"] in UNITS.get(cfg["device_class"],
                                                       {cfg["unit_of_measurement"]})
    if "state_class" in cfg:
        assert cfg["state_class"] in STATE_CLASSES
    if component == "number":
        assert cfg.get("mode", "auto") in ("auto", "box", "slider")
        assert cfg.get("min", 1) < cfg.get("max", 100) and cfg.get("step", 1) > 0
    for k in ("state_topic", "command_topic"):
        if k in cfg:
            assert "+" not in cfg[k] and "#" not in cfg[k], cfg[k]
    return component, obj


def configs(mqtt, start=0, node=None, prefix=PREFIX):
    """{(component, object_id): (topic, config)} of the non-empty configs
    seen since 'start' (the last one of each topic wins)."""
    out = {}
    for m in mqtt.received(prefix + "/+/+/+/config", start):
        parts = m.topic.split("/")
        if node and parts[2] != node:
            continue
        if m.payload:
            out[(parts[1], parts[3])] = (m.topic, json.loads(m.payload))
        else:
            out.pop((parts[1], parts[3]), None)
    return out


def ha_gateway(make_gateway, **extra):
    cfg = {"enabled": True}
    cfg.update(extra)
    return make_gateway(overrides={"homeassistant": cfg})


def register(coap, gw, ident, links=LINKS):
    r = coap(gw, ident, "rd?ep=%s&lt=600" % ident, method="post", ct=40, payload=links,
             wait=3)
    assert r.code == "2.01", r
    return r


# The tests subscribe to <prefix>/# once and wait on that same filter: a
# second, overlapping subscription would make the broker deliver every
# config twice (once per subscription), and the late copy would look like
# a republication.
def wait_on(mqtt, prefix, pred, start=0, timeout=10):
    return mqtt.wait_for(prefix + "/#", pred, timeout=timeout, start=start)


def wait_entities(mqtt, node, want, start=0, timeout=10, prefix=PREFIX):
    wait_on(mqtt, prefix, lambda m: set(configs(mqtt, start, node, prefix)) == want,
            start, timeout)
    return configs(mqtt, start, node, prefix)


def is_bridge(m):
    return re.search(r"/binary_sensor/[^/]+/connection_state/config$", m.topic)


def test_entities_follow_link_attributes(make_gateway, mqtt, mqtt_factory, coap):
    mqtt.subscribe(PREFIX + "/#")
    gw = ha_gateway(make_gateway)
    bridge_node = "coap2mqtt_bridge_" + gw.client_id
    bridge = wait_on(mqtt, PREFIX, lambda m: m.topic == "%s/binary_sensor/%s/"
                     "connection_state/config" % (PREFIX, bridge_node))
    bcfg = json.loads(bridge.payload)
    check_config(bridge.topic, bcfg)
    assert bcfg["state_topic"] == gw.topic("bridge", "state")
    assert (bcfg["payload_on"], bcfg["payload_off"]) == ("online", "offline")
    assert bcfg["device"]["identifiers"] == [bridge_node]

    mqtt.subscribe(gw.topic("bridge", "devices"))
    register(coap, gw, "dev-1")
    found = wait_entities(mqtt, "dev-1", EXPECTED)
    # bridge/devices shows the attributes the entities were made from.
    listed = mqtt.wait_for(gw.topic("bridge", "devices"),
                           lambda m: any(d["id"] == "dev-1" for d in m.json())).json()
    res = {r["path"]: r for d in listed if d["id"] == "dev-1" for r in d["resources"]}
    assert res["humidity"]["rt"] == "oic.r.humidity" and res["humidity"]["if"] == "oic.if.s"
    assert "rt" not in res["raw"] and "if" not in res["raw"]
    for (component, obj), (topic, cfg) in found.items():
        check_config(topic, cfg)
        path = obj
        assert cfg["unique_id"] == "coap2mqtt_dev-1_" + path
        assert cfg["device"]["identifiers"] == ["coap2mqtt_dev-1"]
        assert cfg["device"]["via_device"] == bridge_node
        assert cfg["availability"] == [{"topic": gw.topic("dev-1", "availability")},
                                       {"topic": gw.topic("bridge", "state")}]
        assert cfg["availability_mode"] == "all"
        if component == "sensor":
            assert cfg["state_topic"] == gw.topic("dev-1", path)
        else:
            assert cfg["command_topic"] == gw.topic("dev-1", path, "set")
    temp = found[("sensor", "temperature")][1]
    assert (temp["device_class"], temp["unit_of_measurement"], temp["state_class"]) == \
        ("temperature", "°C", "measurement")
    assert found[("sensor", "humidity")][1]["device_class"] == "humidity"
    assert "device_class" not in found[("sensor", "raw")][1]       # CBOR: no unit
    number = found[("number", "setpoint")][1]
    assert number["state_topic"] == gw.topic("dev-1", "setpoint")  # observable
    switch = found[("switch", "relay")][1]
    assert (switch["payload_on"], switch["payload_off"]) == ("1", "0")
    assert "state_topic" not in switch                             # not observable

    # Retained, as Home Assistant needs after its own restart: a new
    # client gets them all, and the availability topics they point at.
    late = mqtt_factory()
    late.subscribe(PREFIX + "/+/dev-1/+/config")
    late.wait_for(PREFIX + "/+/dev-1/+/config",
                  lambda m: len(late.received(PREFIX + "/+/dev-1/+/config")) == len(EXPECTED))
    assert all(m.retain for m in late.received(PREFIX + "/#"))
    avail = late.wait_for(gw.topic("dev-1", "availability"))
    assert avail.retain and avail.payload in (b"online", b"offline")
    assert late.wait_for(gw.topic("bridge", "state")).payload == b"online"


def test_republished_when_home_assistant_comes_online(make_gateway, mqtt, coap):
    mqtt.subscribe(PREFIX + "/#")
    gw = ha_gateway(make_gateway)
    mqtt.subscribe(gw.topic("bridge", "stats"))
    register(coap, gw, "dev-2")
    wait_entities(mqtt, "dev-2", EXPECTED)
    # "offline" (Home Assistant's will) republishes nothing; "online" all.
    start = mqtt.mark()
    mqtt.publish(PREFIX + "/status", b"offline")
    mqtt.publish(PREFIX + "/status", b"online")
    found = wait_entities(mqtt, "dev-2", EXPECTED, start=start)
    wait_on(mqtt, PREFIX, is_bridge, start)
    assert len([m for m in mqtt.received(PREFIX + "/#", start) if is_bridge(m)]) == 1
    for topic, cfg in found.values():
        check_config(topic, cfg)
    gw.log.wait_for(r"homeassistant: %s/status says online" % PREFIX, timeout=5)
    # A refresh that changes nothing republishes nothing.
    start = mqtt.mark()
    r = coap(gw, "dev-2", "rd/dev-2?lt=600", method="post", wait=3)
    assert r.code == "2.04", r
    # Fence: a bridge/stats (every second) that arrives after the refresh was
    # answered left the gateway after anything the refresh published (one
    # connection, in order).
    done = c2m.time.monotonic()
    mqtt.wait_for(gw.topic("bridge", "stats"), lambda m: m.received > done, start=start)
    assert not configs(mqtt, start, "dev-2")


def test_removed_when_links_change_and_registration_ends(make_gateway, mqtt,
                                                          mqtt_factory, coap):
    prefix = "ha-test"                  # homeassistant.prefix
    mqtt.subscribe(prefix + "/#")
    gw = ha_gateway(make_gateway, prefix=prefix)
    register(coap, gw, "dev-3")
    for topic, cfg in wait_entities(mqtt, "dev-3", EXPECTED, prefix=prefix).values():
        check_config(topic, cfg, prefix)
    # Registered again with fewer links: the vanished ones are emptied.
    start = mqtt.mark()
    register(coap, gw, "dev-3", links='</temperature>;obs;rt="temperature";ct=0')

    def emptied():
        return {m.topic.split("/")[3] for m in mqtt.received(
            prefix + "/+/dev-3/+/config", start) if not m.payload}
    wait_on(mqtt, prefix, lambda m: emptied() == {"humidity", "setpoint", "relay", "raw"},
            start)
    # DELETE /rd/dev-3 ends the registration: the last one goes too.
    start = mqtt.mark()
    r = coap(gw, "dev-3", "rd/dev-3", method="delete", wait=3)
    assert r.code == "2.02", r
    wait_on(mqtt, prefix, lambda m: m.topic == prefix + "/sensor/dev-3/temperature/config"
            and not m.payload, start)
    # Nothing of dev-3 is left retained; the bridge's config is.
    late = mqtt_factory()
    late.subscribe(prefix + "/#")
    wait_on(late, prefix, is_bridge)
    assert not [m for m in late.received(prefix + "/#") if "/dev-3/" in m.topic]


def test_off_by_default(gateway, mqtt, coap):
    mqtt.subscribe(PREFIX + "/#")
    mqtt.subscribe(gateway.topic("bridge", "devices"))
    start = mqtt.mark()
    register(coap, gateway, "dev-4")
    # bridge/devices follows the registration (debounced); discovery,
    # were it on, would have come before it.
    mqtt.wait_for(gateway.topic("bridge", "devices"),
                  lambda m: "dev-4" in m.payload.decode(), start=start)
    assert not mqtt.received(PREFIX + "/#")
    assert not gateway.log.find(r"homeassistant")
