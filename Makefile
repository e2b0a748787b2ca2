# Volley — `make run` starts the engine with built-in defaults, `make test` runs the suite,
# `make demo` shows it delivering to a mini internet on loopback.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: install run test test-peers lint demo clean

# What `volley run` needs and nothing more: uvloop, aiodns, msgpack, prometheus-client.
$(BIN)/.installed-run: pyproject.toml
	@.ci/need-python $(PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

# The suite, lint and bench tools on top: the test and bench extras (test_bench_smoke
# runs locust).
$(BIN)/.installed-test: $(BIN)/.installed-run
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@

# The demo's mini internet (tests/support: dnslib, aiosmtpd); the test extra includes it.
$(BIN)/.installed-demo: $(BIN)/.installed-run
	$(BIN)/pip install -q -e '.[demo]'
	touch $@

# Everything for development and CI (tests, lint, bench).
install: $(BIN)/.installed-test

# Foreground; Ctrl-C drains in-flight transactions and exits 0.
# Drop *.eml files into var/spool/incoming/; the delivery log is var/log/delivery.jsonl.
run: $(BIN)/.installed-run
	$(BIN)/volley run $(ARGS)

# The whole suite. The programs it runs for real (Prometheus, Postfix's smtp-sink) are
# installed first when missing (as root; otherwise it says what to run): no test skips.
# pytest exits 5 when it collected no test: that is a failure here.
test: $(BIN)/.installed-test test-peers
	@$(BIN)/pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no tests were collected" >&2; exit 1; fi; exit $$rc

test-peers:
	@.ci/need-test-peers

lint: $(BIN)/.installed-test
	$(BIN)/ruff check engine spool tests demo
	$(BIN)/ruff format --check engine spool tests demo
	$(BIN)/mypy

# A mini internet on 127.0.0.x (a DNS server and SMTP receivers: most accept, some
# greylist, some reject), a few thousand personalised messages over dozens of domains,
# the real `volley run` delivering them with the live `volley top` view until the queue
# drains, then a summary. Nothing leaves loopback. Options: make demo ARGS="--messages 500"
demo: $(BIN)/.installed-demo
	$(BIN)/python -m demo $(ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

# Volley side by side with Postfix and the raw SMTP limit, one JSON line at the end
# (bench/README.md). Installs Debian's postfix (smtp-sink, smtp-source) and the `bench`
# extra (locust) on first use; the Postfix phase needs root. Pass options with ARGS, e.g.
#   make bench ARGS="--wan-rtt 50ms"      make bench ARGS="--scale 1000000"
.PHONY: bench
bench: $(BIN)/.installed-test
	@[ -x /usr/sbin/smtp-sink ] || command -v smtp-sink >/dev/null || .ci/install-postfix
	$(BIN)/python -m bench.run $(ARGS)
