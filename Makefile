# hubbub - one non-recursive Makefile.
#
#   make run     install what is missing, build, start a local PostgreSQL, serve
#   make test    the same set-up, then every unit and integration test (TAP, prove)
#   make asan    the test suite built with AddressSanitizer and UBSan
#   make fuzz    libFuzzer over the payload splitter for FUZZ_SECONDS
#   make bench   wrk against hubbub and against a trivial h2o handler, then
#                the admin API's event queries over 10M events (BENCH_API=0: not),
#                then 10 000 reply jobs drained by the worker pool (BENCH_JOBS=0: not)
#   make test-reliability  the reliability suite (tests/reliability/ and the
#                SIGKILL test) with full bounds; make test runs it with short ones
#   make soak    HUBBUB_SOAK_SECONDS (600) of deliveries at half the bench rate,
#                with hubbub's RSS sampled and judged flat or not
#   make lint    clang-format check and banned functions

BUILD ?= build
CC ?= cc
PKGS := libh2o libuv libpq libcurl openssl
FUZZ_SECONDS ?= 60

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

OPTFLAGS ?= -O2 -g
WARNFLAGS := -Wall -Wextra -Werror -Wshadow -Wmissing-prototypes -Wformat=2
CFLAGS_ALL := -std=c11 -D_GNU_SOURCE $(OPTFLAGS) $(WARNFLAGS) -MMD -MP \
	-DJSMN_STATIC -DJSMN_STRICT -DJSMN_PARENT_LINKS -I. -I$(BUILD) \
	$(PKG_CFLAGS) $(EXTRA_CFLAGS) $(CFLAGS)
LDLIBS_ALL := $(PKG_LIBS) -luv -lssl -lcrypto -lz -lpthread -lm $(EXTRA_LDFLAGS) $(LDFLAGS)

LIB_SRC := $(wildcard lib/*.c) $(wildcard api/*.c) $(wildcard db/*.c) \
	$(filter-out server/main.c,$(wildcard server/*.c))
LIB_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRC)) $(BUILD)/obj/migrations_embedded.o \
	$(BUILD)/obj/gen/openapi_embedded.o
MIGRATIONS := $(sort $(wildcard migrations/*.sql))

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(UNIT_SRC))
INTEG_SRC := $(wildcard tests/integration/t_*.c)
INTEG_BIN := $(patsubst tests/integration/%.c,$(BUILD)/tests/integration/%,$(INTEG_SRC))
REL_SRC := $(wildcard tests/reliability/r_*.c)
REL_BIN := $(patsubst tests/reliability/%.c,$(BUILD)/tests/reliability/%,$(REL_SRC))
INTEG_LIB := $(patsubst %.c,$(BUILD)/obj/%.o,$(filter-out $(INTEG_SRC),$(wildcard tests/integration/*.c))) \
	$(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tests/fake_graph/*.c))

.PHONY: all run test test-bins test-reliability soak asan fuzz bench lint clean deps
.DEFAULT_GOAL := all

all: $(BUILD)/hubbub

deps:
	@ops/install-deps

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

# Migrations are compiled into the binary so that `hubbub migrate` needs no
# files beside it.
$(BUILD)/migrations_embedded.c: $(MIGRATIONS) ops/embed-migrations
	@mkdir -p $(BUILD)
	ops/embed-migrations $(MIGRATIONS) > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/migrations_embedded.o: $(BUILD)/migrations_embedded.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

# So is the API's description, served at GET /openapi.yaml (api/openapi.h).
$(BUILD)/gen/openapi_embedded.c: docs/openapi.yaml ops/embed-file
	@mkdir -p $(dir $@)
	ops/embed-file api_openapi_yaml api/openapi.h $< > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/gen/%.o: $(BUILD)/gen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/libhubbub.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/hubbub: $(BUILD)/obj/server/main.o $(BUILD)/libhubbub.a
	$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/tests/unit/%: tests/unit/%.c $(BUILD)/libhubbub.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -DHB_SOURCE_DIR='"$(CURDIR)"' -o $@ $< $(BUILD)/libhubbub.a $(LDLIBS_ALL) -lcmocka

$(BUILD)/tests/integration/%: tests/integration/%.c $(INTEG_LIB) $(BUILD)/libhubbub.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -DHB_SOURCE_DIR='"$(CURDIR)"' -o $@ $< $(INTEG_LIB) $(BUILD)/libhubbub.a $(LDLIBS_ALL)

# The reliability programs (tests/reliability/): linked like integration
# tests, with their shared client and load (rel.c).
$(BUILD)/tests/reliability/%: tests/reliability/%.c $(BUILD)/obj/tests/reliability/rel.o \
		$(INTEG_LIB) $(BUILD)/libhubbub.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -DHB_SOURCE_DIR='"$(CURDIR)"' -o $@ $< $(BUILD)/obj/tests/reliability/rel.o \
		$(INTEG_LIB) $(BUILD)/libhubbub.a $(LDLIBS_ALL)

$(BUILD)/tests/soak: tests/reliability/soak.c $(BUILD)/obj/tests/reliability/rel.o \
		$(INTEG_LIB) $(BUILD)/libhubbub.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -DHB_SOURCE_DIR='"$(CURDIR)"' -o $@ $< $(BUILD)/obj/tests/reliability/rel.o \
		$(INTEG_LIB) $(BUILD)/libhubbub.a $(LDLIBS_ALL)

# The worker pool's benchmark (tests/bench/run-jobs) is linked like an
# integration test: the harness and the fake Graph API before libhubbub.a.
$(BUILD)/tests/bench/jobs: tests/bench/jobs.c $(INTEG_LIB) $(BUILD)/libhubbub.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -DHB_SOURCE_DIR='"$(CURDIR)"' -o $@ $< $(INTEG_LIB) $(BUILD)/libhubbub.a $(LDLIBS_ALL)

test-bins: $(BUILD)/hubbub $(UNIT_BIN) $(INTEG_BIN) $(REL_BIN)

run: deps
	@$(MAKE) --no-print-directory all
	@ops/run-dev

test: deps
	@$(MAKE) --no-print-directory test-bins
	@ops/run-tests $(BUILD)

test-reliability: deps
	@$(MAKE) --no-print-directory $(BUILD)/hubbub $(REL_BIN) $(BUILD)/tests/integration/t_crash
	@HUBBUB_REL_FULL=1 PROVE_FLAGS=-v ops/run-tests $(BUILD) $(REL_BIN) $(BUILD)/tests/integration/t_crash

soak: deps
	@$(MAKE) --no-print-directory $(BUILD)/hubbub $(BUILD)/tests/soak
	@PROVE_FLAGS=-v ops/run-tests $(BUILD) $(BUILD)/tests/soak

asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan OPTFLAGS='-O1 -g -fno-omit-frame-pointer' \
		EXTRA_CFLAGS='-fsanitize=address,undefined -fno-sanitize-recover=undefined' \
		EXTRA_LDFLAGS='-fsanitize=address,undefined' test-bins
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		HUBBUB_TEST_SLOW=1 ops/run-tests build-asan

fuzz: deps
	@ops/install-deps --fuzz
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=clang OPTFLAGS='-O1 -g' \
		EXTRA_CFLAGS='-fsanitize=fuzzer-no-link,address,undefined' build-fuzz/libhubbub.a
	@mkdir -p build-fuzz/corpus
	clang -std=c11 -D_GNU_SOURCE -O1 -g -fsanitize=fuzzer,address,undefined -I. $(PKG_CFLAGS) \
		-o build-fuzz/fuzz_payload tests/fuzz/fuzz_payload.c build-fuzz/libhubbub.a $(LDLIBS_ALL)
	build-fuzz/fuzz_payload -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
		build-fuzz/corpus tests/fuzz/corpus

bench: deps
	@ops/install-deps --bench
	@$(MAKE) --no-print-directory all
	@tests/bench/run
	@[ "$${BENCH_API:-1}" = 0 ] || tests/bench/run-api
	@[ "$${BENCH_JOBS:-1}" = 0 ] || tests/bench/run-jobs

lint:
	@ops/lint

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
