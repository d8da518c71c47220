# The two commands of the README: `make demo` and `make test`. Both set up first (idempotent).
CARGO ?= cargo
# Examples the test suite runs in --quick mode, so they cannot rot.
EXAMPLES := $(basename $(notdir $(wildcard examples/examples/*.rs)))
DEMO ?= quickstart

.PHONY: setup demo test test-examples fmt lint

setup:
	@bash scripts/bootstrap.sh

demo: setup
	$(CARGO) run --release -p flax-examples --example $(DEMO)

test: setup
	$(CARGO) test --workspace
	@$(MAKE) --no-print-directory test-examples

test-examples:
	@set -e; for ex in $(EXAMPLES); do \
	  echo "== example $$ex --quick"; \
	  $(CARGO) run --quiet -p flax-examples --example $$ex -- --quick; \
	done
	@echo "== example quickstart --quick --nproc 2, then --resume on one process"
	@set -e; dir=$$(mktemp -d); \
	  $(CARGO) run --quiet -p flax-examples --example quickstart -- --quick --nproc 2 --workdir $$dir; \
	  $(CARGO) run --quiet -p flax-examples --example quickstart -- --quick --resume --num-epochs 2 --workdir $$dir | tee $$dir/resumed.log; \
	  grep -q "resumed at step" $$dir/resumed.log; rm -rf $$dir
	@echo "== example ensemble --quick --nproc 2: the one-process run's log; then --resume on one process"
	@set -e; dir=$$(mktemp -d); \
	  $(CARGO) run --quiet -p flax-examples --example ensemble -- --quick --workdir $$dir/one | grep '^epoch' > $$dir/one.log; \
	  $(CARGO) run --quiet -p flax-examples --example ensemble -- --quick --nproc 2 --workdir $$dir/two | grep '^epoch' > $$dir/two.log; \
	  diff $$dir/one.log $$dir/two.log; \
	  $(CARGO) run --quiet -p flax-examples --example ensemble -- --quick --resume --num-epochs 2 --workdir $$dir/two | tee $$dir/resumed.log; \
	  grep -q "resumed at step" $$dir/resumed.log; rm -rf $$dir

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps
