# tests/fuzz/fuzz.mk - builds every tests/fuzz/fuzz_*.c into a libFuzzer
# binary build/fuzz/<name>, linked with a clang build of the gateway
# (src/*.c except main.c) instrumented with fuzzer-no-link + ASan + UBSan.
# Called by tests/fuzz/run.sh; usable alone: make -f tests/fuzz/fuzz.mk
#
# A target that needs extra link flags names them in its source on a line
#   /* fuzz-ldflags: -Wl,--wrap=foo */
# (fuzz_handlers.c uses this to learn the libcoap context the transport makes),
# and one that wants another libcoap flavour says so:
#   /* fuzz-libcoap: notls */
# (plain CoAP needs no TLS back-end, and OpenSSL's per-context set-up made
# fuzz_handlers 13 times slower: 485 against 6,500 inputs/s).

fuzz-all:

# The libraries (PKG_CFLAGS, LDLIBS) are the main Makefile's, so a module
# that needs a new one does not break fuzzing.  Only its variables are
# used: its rules build into build/ and build/san/, never build/fuzz/.
include Makefile
.DEFAULT_GOAL := fuzz-all

FUZZ_CC  ?= clang
FZ_OUT      := build/fuzz

FZ_SAN      := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
            -fno-omit-frame-pointer
# -Werror only for our harnesses: the gateway sources are gcc-checked by the
# main Makefile, and clang's extra warnings must not stop a fuzzing run.
FZ_CFLAGS_COMMON := -std=c11 -D_GNU_SOURCE -O1 -g -Iinclude -Isrc $(PKG_CFLAGS) \
                 -DCOAP2MQTT_VERSION='"fuzz"' $(FZ_SAN)
FZ_SRC_CFLAGS  := $(FZ_CFLAGS_COMMON) -fsanitize=fuzzer-no-link -Wall -Wno-unused-command-line-argument
# config_libconfig.c suppresses libconfig 1.5's parser leak under #if __SANITIZE_ADDRESS__,
# which gcc defines with -fsanitize=address but clang only from version 15
# on (older ones have __has_feature(address_sanitizer)): define it for them.
ifeq ($(shell $(FUZZ_CC) -fsanitize=address -dM -E - </dev/null | grep -c __SANITIZE_ADDRESS__),0)
FZ_SRC_CFLAGS  += -D__SANITIZE_ADDRESS__=1
endif
FZ_HARNESS_CFLAGS := $(FZ_CFLAGS_COMMON) -fsanitize=fuzzer -Wall -Wextra -Werror

FZ_SRC   := $(filter-out src/main.c,$(wildcard src/*.c))
FZ_OBJ   := $(FZ_SRC:src/%.c=$(FZ_OUT)/obj/%.o)
FZ_HDRS     := $(wildcard include/coap2mqtt/*.h src/*.h)
FZ_TARGETS  := $(patsubst tests/fuzz/%.c,$(FZ_OUT)/%,$(wildcard tests/fuzz/fuzz_*.c))

fuzz-all: $(FZ_TARGETS)

$(FZ_OUT)/obj/%.o: src/%.c $(FZ_HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FZ_SRC_CFLAGS) -c -o $@ $<

ldflags_of = $(shell sed -n 's|.*fuzz-ldflags: *\(.*[^ ]\) *\*/.*|\1|p' $(1))
flavour_of = $(shell sed -n 's|.*fuzz-libcoap: *\([a-z]*\) *\*/.*|\1|p' $(1))
ldlibs_of = $(if $(call flavour_of,$(1)),$(subst -lcoap-3-openssl,-lcoap-3-$(call flavour_of,$(1)),$(LDLIBS)),$(LDLIBS))

$(FZ_OUT)/fuzz_%: tests/fuzz/fuzz_%.c $(FZ_OBJ) $(FZ_HDRS) $(wildcard tests/fuzz/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FZ_HARNESS_CFLAGS) -o $@ $< $(FZ_OBJ) $(call ldflags_of,$<) $(call ldlibs_of,$<)

# Keep the objects: they are shared by every target.
.SECONDARY: $(FZ_OBJ)
.PHONY: fuzz-all
