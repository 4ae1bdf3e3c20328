# coap2mqtt - CoAP/DTLS sensors <-> MQTT gateway
#
#   make            build build/coap2mqtt and the tools
#   make run        install missing Debian packages, build, start the demo
#   make test       install missing Debian packages, build with ASan+UBSan,
#                   run unit and integration tests
#   make install    PREFIX=/usr/local DESTDIR=
#   make deps       install missing Debian packages only
#   make help       the list of targets

PREFIX   ?= /usr/local
DESTDIR  ?=
SYSCONFDIR ?= /etc
UNITDIR  ?= /lib/systemd/system
MANDIR   ?= $(PREFIX)/share/man
VERSION  := $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1)

CC       ?= cc
# Debian's interpreter: python3-pytest and python3-paho-mqtt are installed for it
# (a python3 earlier on PATH, e.g. pyenv's, lacks them).
PYTHON   ?= /usr/bin/python3
PKGS     := libcoap-3-openssl libmosquitto libconfig libsystemd jansson libcbor openssl
# pkg-config is asked when a recipe first needs the flags, not when make
# reads this file: on a fresh box the -dev packages arrive only with the
# "deps" prerequisite of the same make, and flags read before it were empty
# (500 undefined references at link time).  Each is asked once, then kept.
PKG_CFLAGS = $(eval PKG_CFLAGS := $$(shell pkg-config --cflags $(PKGS) 2>/dev/null))$(PKG_CFLAGS)
PKG_LIBS   = $(eval PKG_LIBS := $$(shell pkg-config --libs $(PKGS) 2>/dev/null))$(PKG_LIBS)
# OSCORE (RFC 8613) when libcoap has it (>= 4.3.2 built with it: Debian 13's
# 4.3.4; not Debian 12's 4.3.1): scripts/probe-oscore.sh defines
# C2M_HAVE_OSCORE then, and C2M_LIBCOAP_VERSION always.  OSCORE=0 turns it off.
# Asked once, when a recipe first needs it, like the flags above.
OSCORE_CFLAGS = $(eval OSCORE_CFLAGS := $$(shell OSCORE=$(OSCORE) scripts/probe-oscore.sh "$(CC)" libcoap-3-openssl))$(OSCORE_CFLAGS)

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -D_GNU_SOURCE $(WARN) -Iinclude $(PKG_CFLAGS) $(OSCORE_CFLAGS) \
            -DCOAP2MQTT_VERSION='"$(VERSION)"' -fstack-protector-strong -pthread
LDLIBS   += $(PKG_LIBS) -lz -pthread

# Sanitized variant: "make SAN=1" builds into build/san/.
ifeq ($(SAN),1)
BUILD    := build/san
CFLAGS   += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
else
BUILD    := build
CFLAGS   += -D_FORTIFY_SOURCE=2
endif

# The pure modules: no sockets, unit-tested alone, linked into everything.
PURE_SRC := src/topics.c src/linkformat.c src/hostport.c src/bytes.c \
            src/config.c src/config_errors.c src/config_libconfig.c \
            src/config_schema.c src/config_diff.c src/config_devices.c src/config_oscore.c src/keystore.c src/log.c src/payload.c \
            src/payload_json.c src/payload_json_buf.c src/payload_json_cbor.c \
            src/outq.c src/loop.c src/spool.c src/spool_records.c src/spool_segments.c src/spool_durable.c \
            src/syncer.c src/cmdjournal.c src/textfile.c
GW_SRC   := $(filter-out $(PURE_SRC),$(wildcard src/*.c)) $(PURE_SRC)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
# Every tools/<name>/ directory builds build/coap2mqtt-<name> from its *.c,
# linked with tools/common/ (what the tools share) and the pure modules
# (tools/sim is the sensor simulator).
TOOLS    := $(filter-out common,$(notdir $(patsubst %/,%,$(dir $(wildcard tools/*/*.c)))))
TOOL_BIN := $(sort $(TOOLS:%=$(BUILD)/coap2mqtt-%))

GW_OBJ   := $(GW_SRC:%.c=$(BUILD)/obj/%.o)
PURE_OBJ := $(PURE_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

all: $(BUILD)/coap2mqtt $(TOOL_BIN)

# The power-cut layer the tests preload (tests/powercut/): a test tool, not
# part of 'all', which the container image builds without tests/.
pcut: $(BUILD)/libc2m-pcut.so

help:
	@echo 'coap2mqtt - CoAP/DTLS sensors <-> MQTT gateway.  Targets:'
	@echo '  make run       install missing Debian packages, build, start the demo'
	@echo '                 (private broker, gateway, three sensors; Ctrl-C stops;'
	@echo '                 DEMO_DURATION=N stops after N s and checks the readings)'
	@echo '  make test      install missing packages, build with ASan+UBSan, run every'
	@echo '                 test (unit, fuzz, man pages, integration, fresh-box and'
	@echo '                 Debian package, compose and OSCORE container checks)'
	@echo '  make package-check  build the Debian package and install, upgrade and'
	@echo '                 purge it in clean bookworm containers (podman, root)'
	@echo '  make man-check the man pages: groff -ww, man ./page, every setting'
	@echo '  make compose-check  docker/compose.yaml with podman-compose: readings,'
	@echo '                 health check (podman, root)'
	@echo '  make oscore-check  OSCORE (RFC 8613) tests in a Debian 13 container, whose'
	@echo '                 libcoap 4.3.4 has it (podman, root; also: make test-oscore)'
	@echo '  make           build build/coap2mqtt and the tools (needs the packages)'
	@echo '  make deps      install the missing Debian packages only'
	@echo '  make bench     side-by-side measurements (about 20 min; SCALE=0: 10, without 100,000 sessions and the mass reconnect)'
	@echo '  make soak      the long fault-injection runs'
	@echo '  make fuzz      libFuzzer, FUZZ_SECONDS per target'
	@echo '  make install   PREFIX=/usr/local DESTDIR= SYSCONFDIR=/etc MANDIR=PREFIX/share/man'
	@echo '  make clean     remove build/'

# Before the first compile: are the libraries there?  Without them the
# build would end in hundreds of undefined references; say what to run.
have-pkgs:
	@command -v pkg-config >/dev/null 2>&1 && command -v $(firstword $(CC)) >/dev/null 2>&1 \
	  && pkg-config --exists $(PKGS) 2>/dev/null && exit 0; \
	missing=""; for p in $(PKGS); do pkg-config --exists $$p 2>/dev/null || missing="$$missing $$p"; done; \
	echo "coap2mqtt: cannot build: the compiler, pkg-config or these libraries are missing:$$missing" >&2; \
	echo "coap2mqtt: 'make deps' installs every Debian package needed (as root or with sudo);" >&2; \
	echo "coap2mqtt: 'make run' and 'make test' do that by themselves.  'make help' lists the targets." >&2; \
	exit 1

$(BUILD)/obj/%.o: %.c $(wildcard include/coap2mqtt/*.h) $(wildcard src/*.h) $(wildcard tools/*/*.h) | have-pkgs
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/coap2mqtt: $(GW_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

tool_objs = $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tools/$(1)/*.c tools/common/*.c))
.SECONDEXPANSION:
$(BUILD)/coap2mqtt-%: $$(call tool_objs,$$*) $(PURE_OBJ)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(PURE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(shell pkg-config --libs cmocka)

# The spool's test injects disk faults (short writes, ENOSPC, EIO from
# fdatasync, a failing ftruncate): the calls of the spool's objects
# (spool.o, spool_records.o, spool_segments.o) and syncer.o go to the
# test's __wrap_* functions in this binary only.
$(BUILD)/tests/test_spool: LDFLAGS += -Wl,--wrap=write,--wrap=ftruncate,--wrap=fdatasync

# The power-cut simulator of the tests (an LD_PRELOAD library for the
# gateway, tests/powercut/pcut.c): never sanitized, since it is preloaded
# into a sanitized process.
$(BUILD)/libc2m-pcut.so: tests/powercut/pcut.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O2 -g $(WARN) -Wno-format-truncation -fPIC -shared -o $@ $< -ldl -pthread

deps:
	@scripts/install-deps.sh

test-deps:
	@scripts/install-deps.sh --test

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

# Integration tests run the sanitized binaries; a leak or UB report makes the
# gateway exit non-zero, which the tests check at every stop.
# Run again on MQTT 3.1.1 by make test: what a 3.1.1 broker must get right.
MQTT311_SUITES = $(addprefix tests/integration/,test_push.py test_commands.py \
	test_notifications.py test_json_mode.py test_registration.py test_bridge.py \
	test_spool.py test_command_journal.py test_instances.py test_dialout.py \
	test_connections.py)

test: test-deps
	$(MAKE) SAN=1 all unit pcut
	$(PYTHON) tests/layers/selftest.py
	$(PYTHON) scripts/check-layers.py --objs build/san/obj/src
	@if [ -x scripts/check-unit.sh ]; then scripts/check-unit.sh; fi
	@if [ -x tests/fuzz/run.sh ]; then tests/fuzz/run.sh --brief; fi
	@tests/man/check-man.sh
	@tests/fresh/check-fresh-box.sh
	@$(MAKE) --no-print-directory package-check
	@$(MAKE) --no-print-directory compose-check
	@$(MAKE) --no-print-directory oscore-check
	C2M_BIN=$(CURDIR)/build/san/coap2mqtt C2M_SIM=$(CURDIR)/build/san/coap2mqtt-sim \
	  C2M_TOOLS=$(CURDIR)/build/san \
	  $(PYTHON) -m pytest -v -p no:cacheprovider -m "not soak" tests/integration $(PYTEST_ARGS)
	@echo "== the core suites again with the gateway on MQTT 3.1.1 (mqtt.protocol)"
	C2M_MQTT_PROTOCOL=3.1.1 C2M_BIN=$(CURDIR)/build/san/coap2mqtt \
	  C2M_SIM=$(CURDIR)/build/san/coap2mqtt-sim C2M_TOOLS=$(CURDIR)/build/san \
	  $(PYTHON) -m pytest -v -p no:cacheprovider -m "not soak" $(MQTT311_SUITES) $(PYTEST_ARGS)

# The man pages format without a groff warning and describe every setting
# of docs/CONFIG.md (a second).
man-check:
	@tests/man/check-man.sh

# The Debian package, built and installed in clean bookworm containers
# (podman): -t on the shipped configuration, upgrade, purge.  SKIP where
# podman cannot run.
package-check:
	@tests/package/check-package.sh

# docker/compose.yaml under podman-compose: the images built, readings of
# every simulated sensor on MQTT, the health check healthy / unhealthy
# without the broker / healthy.  SKIP where podman cannot run.
compose-check:
	@tests/compose/check-compose.sh

# OSCORE (libcoap 4.3.4, Debian 13): tests/integration/test_oscore.py run in
# a trixie container (podman) with the gateway built there; about 40 s once
# its image exists, about 5 min the first time.  SKIP where podman cannot run.
oscore-check test-oscore:
	@tests/oscore/run-in-trixie.sh

# The long fault-injection runs (minutes each).
soak: deps
	$(MAKE) SAN=1 all pcut
	C2M_BIN=$(CURDIR)/build/san/coap2mqtt C2M_SIM=$(CURDIR)/build/san/coap2mqtt-sim \
	  C2M_TOOLS=$(CURDIR)/build/san \
	  $(PYTHON) -m pytest -v -p no:cacheprovider -m soak tests/integration $(PYTEST_ARGS)

# Side-by-side measurements (optimised build, no sanitizers): about 10 min,
# then the scale rows (100,000 sessions, mass reconnect of 10,000; SCALE=0 skips).
bench: deps
	@scripts/install-deps.sh --bench
	@$(MAKE) --no-print-directory all
	bench/run.sh

# libFuzzer targets (clang); FUZZ_SECONDS each.
FUZZ_SECONDS ?= 60
fuzz: deps
	tests/fuzz/run.sh $(FUZZ_SECONDS)

run: deps
	@echo "coap2mqtt: building (about a minute on 2 cores)"
	@$(MAKE) --no-print-directory -j$$(nproc) all
	@echo "coap2mqtt: built; starting the demo"
	@scripts/demo.sh

install: $(BUILD)/coap2mqtt
	install -D -m 0755 $(BUILD)/coap2mqtt $(DESTDIR)$(PREFIX)/bin/coap2mqtt
	@if [ -f $(BUILD)/coap2mqtt-sim ]; then install -D -m 0755 $(BUILD)/coap2mqtt-sim $(DESTDIR)$(PREFIX)/bin/coap2mqtt-sim; fi
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/coap2mqtt
	@if [ ! -e $(DESTDIR)$(SYSCONFDIR)/coap2mqtt/coap2mqtt.conf ]; then \
	  install -m 0644 conf/coap2mqtt.conf $(DESTDIR)$(SYSCONFDIR)/coap2mqtt/coap2mqtt.conf; fi
	@if [ ! -e $(DESTDIR)$(SYSCONFDIR)/coap2mqtt/psk.keys ]; then \
	  install -m 0600 conf/psk.keys.example $(DESTDIR)$(SYSCONFDIR)/coap2mqtt/psk.keys; fi
	install -d $(DESTDIR)$(UNITDIR)
	sed 's|@BINDIR@|$(PREFIX)/bin|g' systemd/coap2mqtt.service > $(DESTDIR)$(UNITDIR)/coap2mqtt.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/coap2mqtt.service
	install -D -m 0644 man/coap2mqtt.8 $(DESTDIR)$(MANDIR)/man8/coap2mqtt.8
	install -D -m 0644 man/coap2mqtt.conf.5 $(DESTDIR)$(MANDIR)/man5/coap2mqtt.conf.5

clean:
	rm -rf build

.PHONY: all pcut help have-pkgs deps test-deps unit test man-check package-check compose-check oscore-check test-oscore soak bench fuzz run install clean
# Keep the tools' objects: they are intermediate files of a pattern rule.
.SECONDARY:
