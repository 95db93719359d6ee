# up: zero-downtime reloads for HTTP servers.
#
#   make run     install what is missing, build, serve examples/hello on :3000
#   make test    install what is missing, build, run every test (SANITIZE=1:
#                under ASan + UBSan)
#   make bench   the benchmark harness (see bench/README.md)
#   make bench-compare BASE=rev
#                this tree's up-run against the one of git revision rev, as
#                ratios (REPS=5 runs of DURATION=10 s each; bench/README.md)
#   make install PREFIX=/usr/local DESTDIR=   (and make uninstall)
#   make fuzz    libFuzzer targets, FUZZ_SECONDS (60) each (clang; see tests/fuzz/)

CC      ?= cc
SANITIZE ?=
B       := build$(if $(SANITIZE),/san)
LLHTTP_SRC := /usr/share/llhttp
LLHTTP_INC := /usr/share/include/llhttp

# core/lib: what master and workers share (loop, fd, log, head...);
# core/master: the master's policy, libup; core/cli: up-run's command line.
CPPFLAGS := -D_GNU_SOURCE -Icore/lib -Icore/master -Icore/cli -Icore/include -Ipassfd -Iworker-runtime \
            -Iworker-runtime/include -I$(LLHTTP_INC) -MMD -MP
CFLAGS   := -std=c11 -O2 -g -Wall -Wextra -Werror -Wshadow -Wswitch-enum \
            -Wno-missing-field-initializers -fvisibility=hidden
LDFLAGS  :=
LDLIBS   := -luring -ldl
ifneq ($(SANITIZE),)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

PASSFD_SRC  := $(wildcard passfd/*.c)
SHARED_SRC  := $(wildcard core/lib/*.c)
MASTER_SRC  := $(wildcard core/master/*.c)
CLI_SRC     := $(filter-out core/cli/up-run.c,$(wildcard core/cli/*.c))
WORKER_SRC  := $(filter-out worker-runtime/up-worker.c,$(wildcard worker-runtime/*.c))
EXAMPLES    := $(patsubst examples/%.c,$(B)/examples/%.so,$(wildcard examples/*.c))
EXAMPLES    += $(B)/examples/chat.so
TEST_SRC    := $(wildcard tests/unit/*.c tests/integration/*.c tests/lib/*.c)
LLHTTP_OBJ  := $(B)/obj/llhttp/llhttp.o $(B)/obj/llhttp/api.o $(B)/obj/llhttp/http.o

obj = $(patsubst %.c,$(B)/obj/%.o,$(1))

LIBS := $(B)/libupworker.a $(B)/libup.a $(B)/libupshared.a $(B)/libuppassfd.a $(B)/libllhttp.a \
        $(B)/libupcli.a
BINS := $(B)/up-worker $(B)/up-run $(B)/up-exec

.PHONY: all run serve test check test-long check-long bench bench-quick bench-compare fuzz deps \
        clean format check-format install uninstall

# Before anything is built: a comparison without its other side is a mistake.
ifneq ($(filter bench-compare,$(MAKECMDGOALS)),)
ifeq ($(strip $(BASE)),)
$(error bench-compare needs BASE=<git revision>, the build to compare against: \
        make bench-compare BASE=HEAD~1)
endif
endif

# Building needs llhttp's C sources (Debian's node-llhttp). Goals that
# install what is missing first need not have them yet.
NO_DEPS_GOALS := deps run test test-long clean format check-format uninstall
ifeq ($(wildcard $(LLHTTP_SRC)/llhttp.c)$(filter $(NO_DEPS_GOALS),$(MAKECMDGOALS)),)
$(error llhttp's C sources are not in $(LLHTTP_SRC): run 'make deps' (or 'make run' or \
        'make test', which install what is missing first))
endif
all: $(BINS) $(B)/libupworker.a $(EXAMPLES) $(B)/examples/embed $(B)/tools/up-load

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

# llhttp is generated C: build it as shipped, without our warning set.
$(B)/obj/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(dir $@)
	$(CC) -I$(LLHTTP_INC) -O2 -g -w $(filter -fsanitize%,$(CFLAGS)) -c $< -o $@

# An archive is made anew: ar would keep the member of a source moved or
# deleted since, and the link would find it twice.
AR_NEW = rm -f $@ && ar rcs $@ $^

$(B)/libllhttp.a: $(LLHTTP_OBJ)
	$(AR_NEW)
$(B)/libuppassfd.a: $(call obj,$(PASSFD_SRC))
	$(AR_NEW)
$(B)/libupshared.a: $(call obj,$(SHARED_SRC))
	$(AR_NEW)
# libup: the master as a library, whole in one archive for an embedder
# (link with -lup -luring -ldl).
$(B)/libup.a: $(call obj,$(MASTER_SRC) $(SHARED_SRC) $(PASSFD_SRC)) $(LLHTTP_OBJ)
	$(AR_NEW)
$(B)/libupcli.a: $(call obj,$(CLI_SRC))
	$(AR_NEW)
$(B)/libupworker.a: $(call obj,$(WORKER_SRC))
	$(AR_NEW)

# The app .so calls the up_* API exported by up-worker: --export-dynamic with
# -fvisibility=hidden exports exactly the API and nothing else.
# WebSocket framing is wslay's (libwslay-dev): the worker's alone, never the
# master's.
WORKER_LDLIBS := -lwslay
$(B)/up-worker: $(call obj,worker-runtime/up-worker.c) $(LIBS)
	$(CC) $(LDFLAGS) -Wl,--export-dynamic -o $@ $< -Wl,--whole-archive $(B)/libupworker.a \
	    -Wl,--no-whole-archive $(B)/libuppassfd.a $(B)/libupshared.a $(B)/libllhttp.a \
	    $(WORKER_LDLIBS) $(LDLIBS)

# up-run is a thin command line over libup.
$(B)/up-run: $(call obj,core/cli/up-run.c) $(LIBS)
	$(CC) $(LDFLAGS) -o $@ $< $(B)/libupcli.a $(B)/libup.a $(LDLIBS)

# up-exec: how up-run starts an --exec command (core/exec/up-exec.c); libc
# only, so that it is quick to exec.
$(B)/up-exec: $(call obj,core/exec/up-exec.c)
	$(CC) $(LDFLAGS) -o $@ $<

$(B)/examples/%.so: examples/%.c worker-runtime/include/up/app.h
	@mkdir -p $(dir $@)
	$(CC) -Iworker-runtime/include $(CFLAGS) -fPIC -shared $(LDFLAGS) -o $@ $<

# The chat example is a directory: its page is built into the .so (.incbin
# in chat.c, found on the assembler's include path).
$(B)/examples/chat.so: examples/chat/chat.c examples/chat/index.html \
                       worker-runtime/include/up/app.h
	@mkdir -p $(dir $@)
	$(CC) -Iworker-runtime/include -Wa,-Iexamples/chat $(CFLAGS) -fPIC -shared $(LDFLAGS) \
	    -o $@ $<

# A master of one's own on libup, built as an embedder would: the public
# header alone.
$(B)/examples/embed: examples/embed/embed.c $(B)/libup.a core/include/up/server.h \
                     core/include/up/middleware.h
	@mkdir -p $(dir $@)
	$(CC) -Icore/include $(CFLAGS) $(LDFLAGS) -o $@ $< $(B)/libup.a $(LDLIBS)

$(B)/up-tests: $(call obj,$(TEST_SRC)) $(LIBS)
	$(CC) $(LDFLAGS) -Wl,--export-dynamic -o $@ $(call obj,$(TEST_SRC)) \
	    -Wl,--whole-archive $(B)/libupworker.a -Wl,--no-whole-archive \
	    $(B)/libupcli.a $(B)/libup.a -lcriterion $(WORKER_LDLIBS) $(LDLIBS)

# Test tools (tests/tools/NAME.c, one file each): up-load checks every answer
# under load. Not in TEST_SRC: each is a program of its own.
$(B)/tools/%: tests/tools/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< -lpthread

# The fake worker speaks the channel protocol (rightly or, on purpose,
# wrongly): passfd.
$(B)/tools/fake-worker: $(B)/tools/%: tests/tools/%.c $(B)/libuppassfd.a $(B)/libupshared.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(B)/libuppassfd.a $(B)/libupshared.a

TOOLS := $(B)/tools/up-load $(B)/tools/fake-worker $(B)/tools/exec-server $(B)/tools/pidns $(B)/tools/noring

# Servers nobody here wrote, run under up-run --exec by the tests: Go's
# net/http needs a build (Debian's golang-go; without it that test is
# skipped). Its cache stays in the build dir.
GO := $(shell command -v go 2>/dev/null)
SERVERS := $(if $(GO),$(B)/servers/go-http)
$(B)/servers/go-http: tests/servers/go-http/main.go tests/servers/go-http/go.mod
	@mkdir -p $(dir $@)
	cd tests/servers/go-http && GOCACHE=$(abspath $(B))/go-cache GOPATH=$(abspath $(B))/go \
	    GOFLAGS=-mod=mod GOTOOLCHAIN=local $(GO) build -o $(abspath $@) .

# The npm package ws, pinned by tests/ws/package-lock.json: the WebSocket
# client the tests drive (tests/ws/*.js). Installed into build/npm once,
# with npm ci, so the lock file alone decides what runs (npm's cache first:
# it may be all there is offline). Without the registry, the rest of the
# suite still runs, and each WebSocket test fails saying why (tests/lib/
# node.c); the next make tries again.
NODE_MODULES := build/npm/node_modules
$(NODE_MODULES)/ws/package.json: tests/ws/package.json tests/ws/package-lock.json
	@mkdir -p build/npm
	cp tests/ws/package.json tests/ws/package-lock.json build/npm/
	cd build/npm && npm ci --prefer-offline --no-audit --no-fund --loglevel=error || \
	    { rm -rf node_modules; echo "up: npm ci failed: the WebSocket tests will fail" >&2; }
	@if [ -f $@ ]; then touch $@; fi

deps:
	@scripts/deps.sh

# run and test work as the first command on a fresh machine: install what
# is missing, then build in a new make, which looks for llhttp's sources
# only once they are there (this make already looked, before the install).
run:
	@scripts/deps.sh
	@$(MAKE) --no-print-directory serve
# As root (a fresh machine, a container), the example app runs as root.
serve: all
	$(B)/up-run $(if $(WORKERS),-n $(WORKERS)) $(if $(filter 0,$(shell id -u)),--allow-root) \
	    $(B)/examples/hello.so

# Under SANITIZE, leaks inside Criterion's own runner are not ours.
TEST_ENV := UP_BUILD_DIR=$(abspath $(B)) UP_SRC_DIR=$(abspath .) UP_TEST_SANITIZED=$(SANITIZE) \
            UP_NODE_PATH=$(abspath $(NODE_MODULES)) UP_TEST_WS=$(abspath tests/ws) \
            LSAN_OPTIONS=suppressions=$(abspath tests/lsan.supp):print_suppressions=0

# Integration tests find the binaries through UP_BUILD_DIR. Criterion runs
# tests in parallel, one process each; every test picks its own ports.
test:
	@scripts/deps.sh
	@$(MAKE) --no-print-directory check

check: all $(B)/up-tests $(TOOLS) $(SERVERS) $(NODE_MODULES)/ws/package.json
	$(TEST_ENV) scripts/run-tests.sh $(B)/test.log $(B)/up-tests $(TESTFLAGS)

test-long:
	@scripts/deps.sh
	@$(MAKE) --no-print-directory check-long

check-long: all $(B)/up-tests $(TOOLS) $(NODE_MODULES)/ws/package.json
	$(TEST_ENV) UP_TEST_LONG=1 scripts/run-tests.sh $(B)/test-long.log $(B)/up-tests \
	    --filter='long/*' $(TESTFLAGS)

bench: all
	bench/run.sh

bench-quick: all
	bench/run.sh --quick

# BASE is checked out in a temporary worktree and built there by its own
# Makefile (make all, into its own build/), so that an older revision builds
# as it always did; the worktree goes away afterwards, whatever the outcome.
# Only up-run and the baseline run, Keep-Alive and connection per request.
REPS     ?= 5
DURATION ?= 10
# A recipe naming $(MAKE) runs even under make -n: there it stops at once.
bench-compare: all
	@$(if $(findstring n,$(firstword -$(MAKEFLAGS))),exit 0;) \
	base=$$(git rev-parse --verify --quiet '$(BASE)^{commit}') || \
	    { echo "bench-compare: BASE=$(BASE) is not a revision of this repository" >&2; exit 2; }; \
	tmp=$$(mktemp -d "$${TMPDIR:-/tmp}/up-base.XXXXXX") || exit 1; \
	trap 'git worktree remove --force "$$tmp/tree" 2>/dev/null; rm -rf "$$tmp"' EXIT; \
	trap 'exit 130' INT TERM HUP; \
	echo "bench-compare: building $(BASE) ($$base) in $$tmp/tree"; \
	git worktree add --detach --quiet "$$tmp/tree" "$$base" && \
	$(MAKE) -C "$$tmp/tree" --no-print-directory all && \
	bench/run.sh --baseline "$$tmp/tree/build" --compare-only --reps '$(REPS)' \
	    --duration '$(DURATION)' --output bench/results-compare

format:
	clang-format -i $$(git ls-files '*.c' '*.h')
check-format:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

# Fuzzing: libFuzzer targets (tests/fuzz/fuzz_NAME.c) built with clang under
# ASan + UBSan from the sources they test, each run FUZZ_SECONDS over a copy
# of its seed corpus in build/fuzz/corpus/NAME (tests/fuzz/corpus stays as is).
FUZZ_CC       ?= clang
FUZZ_SECONDS  ?= 60
FUZZ_TARGETS  := head http passfd
FUZZ_FLAGS    := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
                 -fno-omit-frame-pointer
FUZZ_CPPFLAGS := $(filter-out -MMD -MP,$(CPPFLAGS))
FUZZ_LLHTTP   := $(patsubst $(LLHTTP_SRC)/%.c,build/fuzz/obj/llhttp/%.o,$(wildcard $(LLHTTP_SRC)/*.c))
FUZZ_HTTP_DEP := core/lib/head.c core/lib/uri.c worker-runtime/http.c worker-runtime/chunk.c \
                 worker-runtime/response.c core/lib/bufpool.c $(FUZZ_LLHTTP) \
                 core/lib/head.h core/lib/uri.h worker-runtime/http.h worker-runtime/chunk.h \
                 core/lib/bufpool.h worker-runtime/include/up/app.h

build/fuzz/obj/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -I$(LLHTTP_INC) $(FUZZ_FLAGS) -w -c $< -o $@

build/fuzz/fuzz_head: tests/fuzz/fuzz_head.c $(FUZZ_HTTP_DEP)
build/fuzz/fuzz_http: tests/fuzz/fuzz_http.c $(FUZZ_HTTP_DEP)
build/fuzz/fuzz_passfd: tests/fuzz/fuzz_passfd.c passfd/passfd.c passfd/passfd.h core/lib/fd.c
build/fuzz/fuzz_%:
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CPPFLAGS) -std=c11 $(FUZZ_FLAGS) -Wall -Wextra -Wshadow \
	    -Wno-missing-field-initializers -o $@ $(filter %.c %.o,$^)

fuzz: $(patsubst %,build/fuzz/fuzz_%,$(FUZZ_TARGETS))
	@fail=0; for t in $(FUZZ_TARGETS); do tests/fuzz/run.sh $$t $(FUZZ_SECONDS) || fail=1; done; \
	    exit $$fail

# make install PREFIX=/usr/local DESTDIR=: the binaries, libup.a and the
# headers, pkg-config files (up: embedding the master; up-app: building an
# app), man pages (up-run(1) and up-worker(1) from their --help by
# help2man, up-app(3) written once), the examples and the systemd units.
PREFIX  ?= /usr/local
DESTDIR ?=
VERSION := $(shell sed -n 's/^\#define UP_VERSION "\(.*\)"/\1/p' core/lib/version.h)
I_BIN   := $(DESTDIR)$(PREFIX)/bin
I_LIB   := $(DESTDIR)$(PREFIX)/lib
I_INC   := $(DESTDIR)$(PREFIX)/include/up
I_PC    := $(DESTDIR)$(PREFIX)/lib/pkgconfig
I_MAN   := $(DESTDIR)$(PREFIX)/share/man
I_DOC   := $(DESTDIR)$(PREFIX)/share/doc/up
HEADERS := core/include/up/server.h core/include/up/middleware.h worker-runtime/include/up/app.h

install: all
	@UP_EXTRA_PKGS=help2man scripts/deps.sh
	install -d $(I_BIN) $(I_LIB) $(I_INC) $(I_PC) $(I_MAN)/man1 $(I_MAN)/man3 \
	    $(I_DOC)/examples/embed $(I_DOC)/examples/systemd $(I_DOC)/examples/chat
	install -m 755 $(B)/up-run $(B)/up-worker $(B)/up-exec $(I_BIN)/
	install -m 644 $(B)/libup.a $(I_LIB)/
	install -m 644 $(HEADERS) $(I_INC)/
	for pc in up up-app; do \
	    sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' dist/$$pc.pc.in \
	        >$(I_PC)/$$pc.pc || exit 1; \
	done
	help2man -N -n 'zero-downtime reloads for HTTP apps' -o $(I_MAN)/man1/up-run.1 $(B)/up-run
	help2man -N -n 'serve an HTTP app (a worker of up-run)' -o $(I_MAN)/man1/up-worker.1 \
	    $(B)/up-worker
	sed 's|@VERSION@|$(VERSION)|' dist/man/up-app.3 >$(I_MAN)/man3/up-app.3
	install -m 644 examples/hello.c examples/echo.c examples/slow.c $(I_DOC)/examples/
	install -m 644 examples/systemd/up@.service examples/systemd/up@.socket $(I_DOC)/examples/systemd/
	install -m 644 examples/embed/embed.c $(I_DOC)/examples/embed/
	install -m 644 examples/chat/chat.c examples/chat/index.html $(I_DOC)/examples/chat/

uninstall:
	rm -f $(I_BIN)/up-run $(I_BIN)/up-worker $(I_BIN)/up-exec $(I_LIB)/libup.a $(I_PC)/up.pc $(I_PC)/up-app.pc \
	    $(I_MAN)/man1/up-run.1 $(I_MAN)/man1/up-worker.1 $(I_MAN)/man3/up-app.3
	rm -f $(addprefix $(I_INC)/,$(notdir $(HEADERS)))
	rm -rf $(I_DOC)
	-rmdir $(I_INC) 2>/dev/null

clean:
	rm -rf build

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)
