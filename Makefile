# Volley — `make run` starts the engine with built-in defaults, `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: install run test lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@

install: $(BIN)/.installed

# Foreground; Ctrl-C drains in-flight transactions and exits 0.
# Drop *.eml files into var/spool/incoming/; the delivery log is var/log/delivery.jsonl.
run: install
	$(BIN)/volley run $(ARGS)

# The whole suite. pytest exits 5 when it collected no test: that is a failure here.
test: install
	@$(BIN)/pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no tests were collected" >&2; exit 1; fi; exit $$rc

lint: install
	$(BIN)/ruff check engine spool tests
	$(BIN)/ruff format --check engine spool tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

# Volley side by side with Postfix and the raw SMTP limit, one JSON line at the end
# (bench/README.md). Installs Debian's postfix (smtp-sink, smtp-source) and the `bench`
# extra (locust) on first use; the Postfix phase needs root. Pass options with ARGS, e.g.
#   make bench ARGS="--wan-rtt 50ms"      make bench ARGS="--scale 1000000"
.PHONY: bench
bench: install
	@[ -x /usr/sbin/smtp-sink ] || command -v smtp-sink >/dev/null || .ci/install-postfix
	@$(BIN)/python -c 'import locust' 2>/dev/null || $(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python -m bench.run $(ARGS)
