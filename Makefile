# Volley — `make run` starts the engine with built-in defaults, `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: install run test lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
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
