# softnet-persistence: the README's commands.
#   make demo      run the demo (a gateway raises offline, restarts, drains; a
#                  client drops a duplicate)
#   make test      everything CI checks
#   make bench     benchmarks (not part of the tests)
#   make install PREFIX=/usr/local
#                  the C/C++ library (SONAME libsoftnet_persistence.so.N),
#                  headers, pkg-config file, CMake package and docs
#                  (tools/install.sh); also DESTDIR, LIBDIR, INCLUDEDIR,
#                  STRIP=true (keep symbols), PC_RPATH=auto|yes|no,
#                  SMALL=1 (the build for size; a nightly Rust, README "Size")
#   make uninstall PREFIX=...  removes what make install put there
#   make mqtt-demo exactly once over a real MQTT broker: a mosquitto, a
#                  Python gateway and subscriber killed and restarted
#                  (docs/MQTT.md; needs mosquitto)
#   make mqtt-examples  the C MQTT gateway and subscriber (examples/mqtt, Paho
#                  C; needs libpaho-mqtt-dev)
#   make cross     the C library for 32- and 64-bit ARM Linux, its Rust and C
#                  tests run under qemu-user (docs/CROSS.md; not in make test)

CARGO ?= cargo
CC ?= cc
CXX ?= c++
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DOCDIR ?= $(PREFIX)/share/doc/softnet-persistence
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
CMAKEDIR ?= $(LIBDIR)/cmake/softnet-persistence
STRIP ?= $(if $(CROSS_TARGET),$(CROSS_GNU)-strip,strip)
PC_RPATH ?= auto

# Where cargo puts the C library. SNP_ABI_VERSION is the library's SONAME
# version (libsoftnet_persistence.so.N, set by capi/build.rs).
RELEASE_DIR := target/release
ABI_VERSION := $(shell sed -n 's/^\#define SNP_ABI_VERSION \([0-9]*\).*/\1/p' capi/include/softnet_persistence.h)
BUILD := target/c
DEMO_DIR ?= $(CURDIR)/target/demo
C_STRICT := -std=c11 -Wall -Wextra -Wpedantic -Werror
CXX_STRICT := -std=c++17 -Wall -Wextra -Wpedantic -Werror
SANITIZE := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
INCLUDES := -Icapi/include -Ibindings/cpp/include
SHARED_LINK := -L$(RELEASE_DIR) -Wl,-rpath,$(CURDIR)/$(RELEASE_DIR) -lsoftnet_persistence -pthread
STATIC_LINK := $(RELEASE_DIR)/libsoftnet_persistence.a -lpthread -ldl -lm

C_TESTS := $(patsubst capi/tests/%.c,$(BUILD)/%,$(wildcard capi/tests/test_*.c))
CPP_TESTS := $(patsubst bindings/cpp/tests/%.cpp,$(BUILD)/cpp_%,$(wildcard bindings/cpp/tests/test_*.cpp))

.PHONY: all build lib header header-check abi-check demo gateway-demo test lint unit c-test cpp-test \
	static-test install uninstall install-test check-prereqs check-prereqs-demo python-test bench mqtt-demo \
	mqtt-examples fuzz clean cross

all: build

# The C library (the capi crate): libsoftnet_persistence.so and .a, and the
# link libsoftnet_persistence.so.N -> .so that programs linked against
# target/release load (their DT_NEEDED is the SONAME).
build lib:
	$(CARGO) build --release -p softnet-persistence-capi
	ln -sfn libsoftnet_persistence.so $(RELEASE_DIR)/libsoftnet_persistence.so.$(ABI_VERSION)

header:
	$(CARGO) run -q -p gen-header

header-check:
	$(CARGO) run -q -p gen-header -- --check

# The ABI, of the tested and of the shipped library: the exported symbols
# against capi/abi/symbols.txt; every public struct's sizeof, alignment and
# field offsets, printed by a C (and C++) program compiled from the header,
# against capi/abi/layout.txt (fields are only ever appended, and only to
# structs that start with struct_size). The layout check first checks
# itself on edited copies of the header.
abi-check: lib dist-lib
	capi/abi/check_symbols.sh $(CURDIR)/$(RELEASE_DIR)/libsoftnet_persistence.so
	capi/abi/check_symbols.sh $(CURDIR)/$(DIST_LIB)/libsoftnet_persistence.so
	CC='$(CC)' CXX='$(CXX)' capi/abi/check_layout.py --self-test
	CC='$(CC)' CXX='$(CXX)' capi/abi/check_layout.py

# What make demo and make test need (Rust version, compilers, python3 venv,
# valgrind, pkg-config, cmake, cargo-fuzz...), checked before anything is
# built: one line per missing tool with its Debian/Ubuntu install command.
check-prereqs-demo:
	@CC='$(CC)' tools/check-prereqs.sh demo
check-prereqs:
	@CC='$(CC)' CXX='$(CXX)' tools/check-prereqs.sh test

demo: check-prereqs-demo lib
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

# Exactly once over a real MQTT broker (docs/MQTT.md): starts a mosquitto, a
# publishing gateway and a subscriber (softnet_persistence.mqtt), kills and
# restarts them a few times and prints the delivered counts; exits non-zero
# if a reading was lost. Builds the Python module into target/venv-python.
mqtt-demo:
	@{ command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; } || { \
		echo "make mqtt-demo: mosquitto is missing; install it with: sudo apt-get install mosquitto" >&2; \
		exit 1; }
	bindings/python/run_tests.sh --build-only
	target/venv-python/bin/python examples/python/mqtt_demo.py

# The C MQTT examples (examples/mqtt: a publishing gateway and a subscriber
# over Paho C's MQTTAsync, docs/MQTT.md section 9), built into target/c;
# bindings/python/tests/test_mqtt_c_interop.py runs them against the Python
# bridges. Needs Debian's libpaho-mqtt-dev.
MQTT_EXAMPLES := $(BUILD)/mqtt-gateway $(BUILD)/mqtt-subscriber
mqtt-examples: lib
	@echo '#include <MQTTAsync.h>' | $(CC) -E -x c - >/dev/null 2>&1 || { \
		echo "make mqtt-examples: Paho C (MQTTAsync.h, libpaho-mqtt3a) is missing;" \
			"install it with: sudo apt-get install libpaho-mqtt-dev" >&2; \
		exit 1; }
	@mkdir -p $(BUILD)
	$(CC) $(C_STRICT) $(INCLUDES) examples/mqtt/gateway.c -o $(BUILD)/mqtt-gateway \
		$(SHARED_LINK) -lpaho-mqtt3a
	$(CC) $(C_STRICT) $(INCLUDES) examples/mqtt/subscriber.c -o $(BUILD)/mqtt-subscriber \
		$(SHARED_LINK) -lpaho-mqtt3a

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --release
	$(CARGO) test --release -p softnet-persistence-cli

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

# make install into a scratch prefix (target/install-test): SONAME, links,
# stripping; the README's C program built with pkg-config, the README's C and
# C++ programs built with CMake (shared and static targets), all run without
# LD_LIBRARY_PATH; then make uninstall leaves nothing. Needs cmake.
install-test: lib
	MAKE='$(MAKE)' CC='$(CC)' CXX='$(CXX)' capi/tests/install/run.sh

# The Python module, built into target/venv-python: pytest, stubtest, mypy.
# The C MQTT examples first: test_mqtt_c_interop.py runs them.
python-test: mqtt-examples
	bindings/python/run_tests.sh

test: check-prereqs lint unit header-check abi-check c-test static-test cpp-test install-test python-test \
	gateway-demo fuzz

# Hand-written install rules (tools/install.sh says what goes where) rather
# than cargo-c's `cargo cinstall`: cargo-c cannot take the SONAME from
# SNP_ABI_VERSION, does not strip or uninstall, writes no CMake package,
# builds the library a second time in a directory of its own, and is a tool
# to build (22 min) and keep in step with Rust; tools/install.sh has the
# details. As root into a directory the loader searches, ldconfig runs.
INSTALL_VARS = PREFIX='$(PREFIX)' DESTDIR='$(DESTDIR)' LIBDIR='$(LIBDIR)' \
	INCLUDEDIR='$(INCLUDEDIR)' DOCDIR='$(DOCDIR)' PKGCONFIGDIR='$(PKGCONFIGDIR)' \
	CMAKEDIR='$(CMAKEDIR)' STRIP='$(STRIP)' PC_RPATH='$(PC_RPATH)' RELEASE_DIR='$(DIST_LIB)' \
	BINDIR='$(BINDIR)' CLI_BIN='$(DIST_DIR)/snp'
# Installs the shipped build (make dist-lib: [profile.dist], stripped, its
# debug info in target/dist/lib/libsoftnet_persistence.so.debug). Builds it
# first when cargo is at hand; under sudo, whose PATH usually has no cargo,
# it installs what `make dist-lib` and `make dist-cli` built (the library
# and the snp tool).
install: $(if $(shell command -v $(CARGO) 2>/dev/null),dist-lib dist-cli)
	@$(INSTALL_VARS) tools/install.sh install

uninstall:
	@$(INSTALL_VARS) tools/install.sh uninstall

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

# What is shipped (README "Size"). The tests build the release profile; the
# shipped library and wheel build [profile.dist] (Cargo.toml: release with
# fat LTO, one codegen unit, opt-level "s"). make dist-lib leaves in
# target/dist/lib/:
#   libsoftnet_persistence.so        stripped, with a .gnu_debuglink naming
#   libsoftnet_persistence.so.debug  its debug info (gdb reads it beside the
#                                    library, in a .debug/ directory there,
#                                    or under /usr/lib/debug; or by build id)
#   libsoftnet_persistence.a         debug info and LLVM bitcode stripped
#   libsoftnet_persistence.so.N      a link named by the library's SONAME
# for make install to copy as they are.
#
# With CROSS_TARGET=<triple> (armv7-unknown-linux-gnueabihf or
# aarch64-unknown-linux-gnu), make dist-lib and make install build and
# install that target's library instead, with Debian's cross compiler and
# binutils (docs/CROSS.md), from target/<triple>/dist/lib.
#
# With SMALL=1 (also with CROSS_TARGET), the same library built for size
# by a nightly Rust (NIGHTLY, with its rust-src component; by default the
# nightly it was measured and tested with, since the flags below are
# unstable): the standard library is compiled with the library
# (-Zbuild-std) for size and without its backtrace symbolizer, at
# [profile.dist-small], with panic locations left out; panics still unwind
# to the C ABI's boundary. From target/<triple>/dist-small/lib; README
# "Size" says what it costs.
.PHONY: dist-lib dist-cli dist-test size wheel print-nightly
CROSS_TARGET ?=
SMALL ?=
NIGHTLY ?= nightly-2026-05-20
CROSS_GNU := $(patsubst armv7-unknown-linux-gnueabihf,arm-linux-gnueabihf,$(patsubst \
	aarch64-unknown-linux-gnu,aarch64-linux-gnu,$(CROSS_TARGET)))
ifeq ($(CROSS_TARGET),)
OBJCOPY ?= objcopy
DIST_CARGO = $(CARGO)
else
OBJCOPY ?= $(CROSS_GNU)-objcopy
DIST_CARGO = $(shell tools/cross.sh env $(CROSS_TARGET)) $(CARGO)
endif
# --target only when cross or small: a host build at target/dist keeps
# sharing its dependencies with the tests' build.
DIST_TARGET := $(or $(CROSS_TARGET),$(if $(SMALL),$(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')))
DIST_PROFILE := $(if $(SMALL),dist-small,dist)
DIST_DIR := target/$(if $(DIST_TARGET),$(DIST_TARGET)/)$(DIST_PROFILE)
DIST_BUILD = $(DIST_CARGO) $(if $(SMALL),+$(NIGHTLY)) build $(if $(DIST_TARGET),--target $(DIST_TARGET)) \
	--profile $(DIST_PROFILE) $(if $(SMALL),-Zbuild-std=std$(,)panic_unwind \
	-Zbuild-std-features=panic-unwind$(,)optimize_for_size \
	--config 'target.$(DIST_TARGET).rustflags=["-Zlocation-detail=none"]')
, := ,
DIST_LIB := $(DIST_DIR)/lib
# The nightly of SMALL=1 builds (.ci/run installs it).
print-nightly:
	@echo $(NIGHTLY)

dist-lib:
	$(if $(SMALL),@NIGHTLY='$(NIGHTLY)' tools/check-prereqs.sh small)
	$(DIST_BUILD) -p softnet-persistence-capi
	rm -rf $(DIST_LIB) && mkdir -p $(DIST_LIB)
	$(OBJCOPY) --only-keep-debug --compress-debug-sections $(DIST_DIR)/libsoftnet_persistence.so \
		$(DIST_LIB)/libsoftnet_persistence.so.debug
	$(OBJCOPY) --strip-unneeded --remove-section=.comment $(DIST_DIR)/libsoftnet_persistence.so \
		$(DIST_LIB)/libsoftnet_persistence.so.nodebug
	cd $(DIST_LIB) && $(OBJCOPY) --add-gnu-debuglink=libsoftnet_persistence.so.debug \
		libsoftnet_persistence.so.nodebug libsoftnet_persistence.so && rm libsoftnet_persistence.so.nodebug
	$(OBJCOPY) --strip-debug --remove-section=.comment --remove-section=.llvmbc \
		--remove-section=.llvmcmd --enable-deterministic-archives \
		$(DIST_DIR)/libsoftnet_persistence.a $(DIST_LIB)/libsoftnet_persistence.a
	@soname=$$(readelf -d $(DIST_LIB)/libsoftnet_persistence.so | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p'); \
	if [ -n "$$soname" ] && [ "$$soname" != libsoftnet_persistence.so ]; then \
		ln -sfn libsoftnet_persistence.so $(DIST_LIB)/$$soname; fi
	@ls -l $(DIST_LIB)

# The snp tool (docs/TOOLS.md), built as shipped: $(DIST_DIR)/snp, which
# make install strips and puts in $(BINDIR).
dist-cli:
	$(DIST_BUILD) -p softnet-persistence-cli

# The C tests once more, against the shipped library instead of the tested
# release build: c-test's uninstrumented binaries, with target/dist/lib
# first on LD_LIBRARY_PATH (it comes before their RUNPATH).
dist-test: dist-lib $(C_TESTS)
	@LD_LIBRARY_PATH=$(CURDIR)/$(DIST_LIB) ldd $(firstword $(C_TESTS)).plain | \
		grep -q '$(CURDIR)/$(DIST_LIB)/' || { echo "dist-test: the shipped library is not the one loaded"; exit 1; }
	@for t in $(C_TESTS); do \
		echo "== $$t ($(if $(SMALL),the SMALL=1 build,the shipped library))"; \
		LD_LIBRARY_PATH=$(CURDIR)/$(DIST_LIB) SNP_KILLS=20 $$t.plain || exit 1; \
	done

# The Python wheel, in target/wheels/: maturin build with pyproject's
# profile (dist) and strip; then installed into a fresh venv with no cargo
# or rustc on PATH, imported, and used once.
wheel:
	bindings/python/build_wheel.sh

# The sizes of what is shipped, with the settings beside them: the stripped
# .so, what the .a adds to a small static C program (capi/size/static_demo.c),
# the Python extension and the wheel.
size: dist-lib wheel
	@CC='$(CC)' DIST_LIB='$(DIST_LIB)' SMALL='$(SMALL)' NIGHTLY='$(NIGHTLY)' capi/size/report.sh

# The C library for ARM Linux with Debian's cross compilers, and its tests
# under qemu-user: Rust (but the system tests, which qemu-user cannot run)
# and C (capi/tests against the static library). Prerequisites are checked
# first; a summary line per target ends the output (tools/cross.sh has the
# details, docs/CROSS.md the steps for a gateway build).
CROSS_TARGETS ?= armv7-unknown-linux-gnueabihf aarch64-unknown-linux-gnu
cross:
	@CROSS_TARGETS='$(CROSS_TARGETS)' tools/check-prereqs.sh cross
	@CARGO='$(CARGO)' tools/cross.sh $(CROSS_TARGETS)
