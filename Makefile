# softnet-persistence: the README's commands.
#   make demo    run the demo (a service raises offline, restarts, drains)
#   make test    everything CI checks
#   make bench   benchmarks (not part of the tests)

CARGO ?= cargo
DEMO_DIR ?= $(CURDIR)/target/demo

.PHONY: all build demo test lint unit bench clean

all: build

build:
	$(CARGO) build --release

demo:
	rm -rf $(DEMO_DIR)
	$(CARGO) run -q --release --example service_restart -- raise $(DEMO_DIR)
	@echo "--- the process exited; a new one starts ---"
	$(CARGO) run -q --release --example service_restart -- drain $(DEMO_DIR)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --all-features -- -D warnings

unit:
	$(CARGO) test --release --all-features

test: lint unit

bench:
	$(CARGO) bench --bench service

clean:
	$(CARGO) clean
