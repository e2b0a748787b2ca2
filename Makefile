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

# Optional: compile the hot, already strict-typed modules with mypyc (issue #15; measured in
# bench/README.md, "mypyc on the hot modules"). Each module below gets a .so beside its .py
# (and a shared runtime per package, _mypyc__mypyc.*.so); Python imports the .so first, and
# `make mypyc-clean` removes them so the same .py files run as before. Nothing else
# (run, test, CI) depends on this. Rebuild after editing a listed module: a stale .so
# shadows the edited .py (tests/conftest.py fails the run when it finds one).
# In: what runs per message and whose unit tests pass against the build.
MYPYC_MODULES  = engine/smtp/errors.py       # exceptions the compiled client raises
MYPYC_MODULES += engine/smtp/encode.py       # wire_body, address checks: per message
MYPYC_MODULES += engine/smtp/replies.py      # ReplyParser: per reply line
MYPYC_MODULES += engine/smtp/state.py        # command/state tables
MYPYC_MODULES += engine/smtp/transaction.py  # Txn, TransactionReplies: per message
MYPYC_MODULES += engine/smtp/pipeline.py     # Transactions: per command and reply
MYPYC_MODULES += engine/smtp/protocol.py     # ClientProtocol: per command and reply
MYPYC_MODULES += engine/smtp/auth.py         # ClientProtocol's base imports it
MYPYC_MODULES += engine/drop/address.py      # validate_address: per address
MYPYC_MODULES += engine/drop/fastparse.py    # HeaderFields, simple_addresses: per drop
MYPYC_MODULES += engine/model.py             # per-message dataclasses
MYPYC_MODULES += engine/net/wire.py          # Wire.data_received/write: per reply
MYPYC_MODULES += spool/record.py             # encode/decode: per entry
MYPYC_MODULES += spool/segment.py            # segment index: per intake batch
MYPYC_MODULES += engine/runtime/intake.py    # take_batch: per drop
MYPYC_MODULES += engine/runtime/sevenbit.py  # body_for: per transaction
MYPYC_MODULES += engine/runtime/inflight.py  # in-flight journal: per message
MYPYC_MODULES += engine/sched/queue.py       # WorkQueue push/pop: per message
MYPYC_MODULES += engine/sched/classify.py    # precheck, classify_txn: per transaction
MYPYC_MODULES += engine/sched/backoff.py     # plan_retry, is_expired: per outcome
MYPYC_MODULES += engine/drop/cleanup.py      # Date/Message-ID headers: per drop
MYPYC_MODULES += spool/ids.py                # entry_id: per entry
# Out, and why:
#   engine/drop/parse.py, engine/drop/read.py: their tests inject faults by monkeypatching
#     a module function (_envelope_from_headers, _take_read_lease); compiled code calls
#     its own module's functions directly, so the fault never happens and the tests fail.
#   engine/runtime/flight.py: tests/unit/runtime/test_delivery.py's fake session returns
#     the Transaction as its handle where start_batch declares a Txn; compiled code
#     checks the declared type (TypeError), pure Python does not.
#   engine/runtime/delivery.py, engine/net/session.py, spool/shard.py: compile and run,
#     but their tests' fakes (a Session, a FakeShard) are not the declared classes and
#     compiled code checks them (TypeError); session.py's STARTTLS-fallback tests fail
#     too. delivery.py and engine/shaping/* are also under active change. (With these,
#     parse, read, flight, eventlog and metrics compiled as well, user CPU per message
#     fell ~15 % against 5-8 % for this list: bench/README.md.)
#   engine/runtime/outcome.py: tests/unit/runtime/test_verdicts.py replaces
#     `Outcomes.apply` on an instance to inject a failure; a compiled class's methods
#     are read-only (AttributeError).
#   engine/telemetry/eventlog.py: an int passed where `float` is declared becomes a
#     float in compiled code: `"queued_at":0` came out as `0.0` (its json.dumps property
#     test fails).
#   engine/telemetry/metrics.py: reply_key's lru_cache hands back a new tuple per call
#     once compiled (tests check identity: the cached label keys stop being shared).
#   engine/runtime/writebehind.py: mypyc emits its attribute `_thread` as the C field
#     `__thread`, a GCC keyword: the C does not compile (mypy 2.4.1).
#   engine/smtp/downgrade.py: 7-bit conversion, rare (email package does the work).
# Two groups, each with its shared runtime inside its own package (spool/_mypyc__mypyc.*.so,
# engine/_mypyc__mypyc.*.so): the `mypyc` command puts one <hash>__mypyc.*.so at the top
# of the checkout, where a process started elsewhere (the workers run with -P) cannot
# import it, and one runtime for both would make `import spool` import engine.
.PHONY: mypyc mypyc-clean
mypyc: $(BIN)/.installed-test
	$(BIN)/python -c 'import sys; from setuptools import setup; from mypyc.build import mypycify; \
	mods = sys.argv[1:]; groups = [([m for m in mods if m.startswith(p + "/")], p + "._mypyc") for p in ("spool", "engine")]; \
	setup(name="volley-mypyc", script_args=["build_ext", "--inplace"], \
	      ext_modules=mypycify(mods, separate=[g for g in groups if g[0]]))' $(MYPYC_MODULES)

mypyc-clean:
	find engine spool -name '*.cpython-*.so' -delete
	rm -f *__mypyc.cpython-*.so
	rm -rf build

clean: mypyc-clean
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

# Volley side by side with Postfix and the raw SMTP limit, one JSON line at the end
# (bench/README.md). Installs Debian's postfix (smtp-sink, smtp-source) and the `bench`
# extra (locust) on first use; the Postfix phase needs root. Pass options with ARGS, e.g.
#   make bench ARGS="--wan-rtt 50ms"      make bench ARGS="--scale 1000000"
.PHONY: bench
bench: $(BIN)/.installed-test
	@[ -x /usr/sbin/smtp-sink ] || command -v smtp-sink >/dev/null || .ci/install-postfix
	$(BIN)/python -m bench.run $(ARGS)
