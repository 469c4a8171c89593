# softnet-persistence: the README's commands.
#   make demo      run the demo (a gateway raises offline, restarts, drains; a
#                  client drops a duplicate)
#   make test      everything CI checks
#   make bench     benchmarks (not part of the tests)
#   make install PREFIX=/usr/local
#                  the C/C++ library, headers and pkg-config file

CARGO ?= cargo
CC ?= cc
CXX ?= c++
PREFIX ?= /usr/local
DESTDIR ?=

LIBDIR := target/release
BUILD := target/c
DEMO_DIR ?= $(CURDIR)/target/demo
C_STRICT := -std=c11 -Wall -Wextra -Wpedantic -Werror
CXX_STRICT := -std=c++17 -Wall -Wextra -Wpedantic -Werror
SANITIZE := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
INCLUDES := -Icapi/include -Ibindings/cpp/include
SHARED_LINK := -L$(LIBDIR) -Wl,-rpath,$(CURDIR)/$(LIBDIR) -lsoftnet_persistence -pthread
STATIC_LINK := $(LIBDIR)/libsoftnet_persistence.a -lpthread -ldl -lm

C_TESTS := $(patsubst capi/tests/%.c,$(BUILD)/%,$(wildcard capi/tests/test_*.c))
CPP_TESTS := $(patsubst bindings/cpp/tests/%.cpp,$(BUILD)/cpp_%,$(wildcard bindings/cpp/tests/test_*.cpp))

.PHONY: all build lib header header-check abi-check demo gateway-demo test lint unit c-test cpp-test \
	static-test install install-test python-test bench fuzz clean

all: build

# The C library (the capi crate): libsoftnet_persistence.so and .a.
build lib:
	$(CARGO) build --release -p softnet-persistence-capi

header:
	$(CARGO) run -q -p gen-header

header-check:
	$(CARGO) run -q -p gen-header -- --check

abi-check: lib
	capi/abi/check_symbols.sh $(CURDIR)/$(LIBDIR)/libsoftnet_persistence.so

demo: lib
	@mkdir -p $(BUILD)
	$(CC) $(C_STRICT) $(INCLUDES) examples/c/demo.c -o $(BUILD)/demo $(SHARED_LINK)
	rm -rf $(DEMO_DIR)
	$(BUILD)/demo $(DEMO_DIR)

# The C gateway example: the service controller over a real socket against
# a broker of its own, killed with SIGKILL and disconnected; exits non-zero
# unless every reading reached the broker exactly once.
gateway-demo: lib
	@mkdir -p $(BUILD)
	$(CC) $(C_STRICT) $(INCLUDES) examples/c/gateway.c -o $(BUILD)/gateway $(SHARED_LINK)
	rm -rf $(BUILD)/gateway-demo
	$(BUILD)/gateway $(BUILD)/gateway-demo

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --release

# C tests: strict flags, AddressSanitizer + UBSan, then once more under
# valgrind memcheck (uninstrumented build), then linked statically.
# SNP_KILLS is read by test_controller_kill only: 20 kills per run under
# valgrind instead of 200.
$(BUILD)/%: capi/tests/%.c capi/include/softnet_persistence.h capi/tests/check.h capi/tests/helpers.h lib
	@mkdir -p $(BUILD)
	$(CC) $(C_STRICT) $(SANITIZE) $(INCLUDES) $< -o $@ $(SHARED_LINK)
	$(CC) $(C_STRICT) -g $(INCLUDES) $< -o $@.plain $(SHARED_LINK)

c-test: $(C_TESTS)
	@for t in $(C_TESTS); do \
		echo "== $$t (ASan+UBSan)"; \
		ASAN_OPTIONS=detect_leaks=1 $$t || exit 1; \
	done
	@for t in $(C_TESTS); do \
		echo "== $$t (valgrind)"; \
		SNP_KILLS=20 valgrind -q --error-exitcode=99 --leak-check=full \
			--errors-for-leak-kinds=definite $$t.plain || exit 1; \
	done

static-test: lib
	@mkdir -p $(BUILD)
	$(CC) $(C_STRICT) $(INCLUDES) capi/tests/test_static_link.c -o $(BUILD)/static_link $(STATIC_LINK)
	@if ldd $(BUILD)/static_link | grep -q softnet_persistence; then \
		echo "static_link is linked dynamically"; exit 1; fi
	$(BUILD)/static_link

$(BUILD)/cpp_%: bindings/cpp/tests/%.cpp bindings/cpp/include/softnet/persistence.hpp capi/include/softnet_persistence.h lib
	@mkdir -p $(BUILD)
	$(CXX) $(CXX_STRICT) $(SANITIZE) $(INCLUDES) $< -o $@ $(SHARED_LINK)

cpp-test: $(CPP_TESTS)
	@echo "== each header on its own, and included twice"
	echo '#include <softnet/persistence.hpp>' | $(CXX) $(CXX_STRICT) $(INCLUDES) -x c++ -fsyntax-only -
	printf '#include <softnet/persistence.hpp>\n#include <softnet/persistence.hpp>\n' | \
		$(CXX) $(CXX_STRICT) $(INCLUDES) -x c++ -fsyntax-only -
	echo '#include <softnet_persistence.h>' | $(CC) $(C_STRICT) $(INCLUDES) -x c -fsyntax-only -
	echo '#include <softnet_persistence.h>' | $(CXX) $(CXX_STRICT) $(INCLUDES) -x c++ -fsyntax-only -
	@for t in $(CPP_TESTS); do echo "== $$t"; $$t || exit 1; done
	@echo "== the C++ examples build and run"
	@for f in examples/cpp/*.cpp; do \
		$(CXX) $(CXX_STRICT) $(SANITIZE) $(INCLUDES) $$f -o $(BUILD)/example_$$(basename $$f .cpp) \
			$(SHARED_LINK) || exit 1; \
	done
	$(BUILD)/example_controllers >/dev/null
	rm -rf $(BUILD)/example-cpp && mkdir -p $(BUILD)/example-cpp && \
		$(BUILD)/example_service_and_client $(BUILD)/example-cpp >/dev/null

# make install into a scratch prefix, then build a program the documented
# way: cc app.c $(pkg-config --cflags --libs softnet-persistence).
install-test: lib
	rm -rf $(BUILD)/prefix
	$(MAKE) --no-print-directory install PREFIX=$(CURDIR)/$(BUILD)/prefix
	PKG_CONFIG_PATH=$(CURDIR)/$(BUILD)/prefix/lib/pkgconfig sh -c '$(CC) $(C_STRICT) \
		capi/tests/test_static_link.c -o $(BUILD)/pkgconfig_app $$(pkg-config --cflags --libs softnet-persistence)'
	LD_LIBRARY_PATH=$(CURDIR)/$(BUILD)/prefix/lib $(BUILD)/pkgconfig_app

# The Python module, built into target/venv-python: pytest, stubtest, mypy.
python-test:
	bindings/python/run_tests.sh

test: lint unit header-check abi-check c-test static-test cpp-test install-test python-test \
	gateway-demo fuzz

install: lib
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/softnet
	install -m 0644 $(LIBDIR)/libsoftnet_persistence.so $(LIBDIR)/libsoftnet_persistence.a \
		$(DESTDIR)$(PREFIX)/lib/
	install -m 0644 capi/include/softnet_persistence.h $(DESTDIR)$(PREFIX)/include/
	install -m 0644 bindings/cpp/include/softnet/persistence.hpp $(DESTDIR)$(PREFIX)/include/softnet/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)|' \
		softnet-persistence.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/softnet-persistence.pc

bench:
	$(CARGO) bench --bench service
	$(CARGO) bench --bench client
	$(CARGO) bench --bench compare

# Fuzz each target in fuzz/fuzz_targets for FUZZ_SECONDS (part of `make test`):
# the journal's recovery and the C ABI call sequence, without a sanitizer (so
# on the stable toolchain). The committed seeds (fuzz/corpus/<target>) are
# read, new inputs go to target/fuzz-corpus/<target>, so a run leaves the tree
# as it was. A crash stops with a non-zero status and leaves the input in
# fuzz/artifacts/<target>/. Needs cargo-fuzz (.ci/run installs it).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := recovery capi_calls
FUZZ_WORK := $(CURDIR)/target/fuzz-corpus
fuzz:
	@$(CARGO) fuzz --version >/dev/null 2>&1 || { echo "make fuzz: cargo-fuzz is missing;" \
		"install it with: cargo install cargo-fuzz --locked"; exit 1; }
	@for t in $(FUZZ_TARGETS); do \
		echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
		mkdir -p $(FUZZ_WORK)/$$t && \
		(cd fuzz && $(CARGO) fuzz run -s none --target-dir $(CURDIR)/target/fuzz $$t \
			$(FUZZ_WORK)/$$t corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS)) || exit 1; \
	done

clean:
	$(CARGO) clean
