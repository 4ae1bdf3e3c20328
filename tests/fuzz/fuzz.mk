# tests/fuzz/fuzz.mk - builds every tests/fuzz/fuzz_*.c into a libFuzzer
# binary build/fuzz/<name>, linked with a clang build of the gateway
# (src/*.c except main.c) instrumented with fuzzer-no-link + ASan + UBSan.
# Called by tests/fuzz/run.sh; usable alone: make -f tests/fuzz/fuzz.mk
#
# A target that needs extra link flags names them in its source on a line
#   /* fuzz-ldflags: -Wl,--wrap=foo */
# (fuzz_handlers.c uses this to learn the libcoap context coap_side makes).

FUZZ_CC  ?= clang
OUT      := build/fuzz
PKGS     := libcoap-3-openssl libmosquitto libconfig libsystemd jansson libcbor openssl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

SAN      := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
            -fno-omit-frame-pointer
# -Werror only for our harnesses: the gateway sources are gcc-checked by the
# main Makefile, and clang's extra warnings must not stop a fuzzing run.
CFLAGS_COMMON := -std=c11 -D_GNU_SOURCE -O1 -g -Iinclude -Isrc $(PKG_CFLAGS) \
                 -DCOAP2MQTT_VERSION='"fuzz"' $(SAN)
SRC_CFLAGS  := $(CFLAGS_COMMON) -fsanitize=fuzzer-no-link -Wall -Wno-unused-command-line-argument
# config.c suppresses libconfig 1.5's parser leak under #if __SANITIZE_ADDRESS__,
# which gcc defines with -fsanitize=address but clang only from version 15
# on (older ones have __has_feature(address_sanitizer)): define it for them.
ifeq ($(shell $(FUZZ_CC) -fsanitize=address -dM -E - </dev/null | grep -c __SANITIZE_ADDRESS__),0)
SRC_CFLAGS  += -D__SANITIZE_ADDRESS__=1
endif
FUZZ_CFLAGS := $(CFLAGS_COMMON) -fsanitize=fuzzer -Wall -Wextra -Werror

GW_SRC   := $(filter-out src/main.c,$(wildcard src/*.c))
GW_OBJ   := $(GW_SRC:src/%.c=$(OUT)/obj/%.o)
HDRS     := $(wildcard include/coap2mqtt/*.h src/*.h)
TARGETS  := $(patsubst tests/fuzz/%.c,$(OUT)/%,$(wildcard tests/fuzz/fuzz_*.c))

all: $(TARGETS)

$(OUT)/obj/%.o: src/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(SRC_CFLAGS) -c -o $@ $<

ldflags_of = $(shell sed -n 's|.*fuzz-ldflags: *\(.*[^ ]\) *\*/.*|\1|p' $(1))

$(OUT)/fuzz_%: tests/fuzz/fuzz_%.c $(GW_OBJ) $(HDRS) $(wildcard tests/fuzz/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(GW_OBJ) $(call ldflags_of,$<) $(PKG_LIBS)

# Keep the objects: they are shared by every target.
.SECONDARY: $(GW_OBJ)
.PHONY: all
