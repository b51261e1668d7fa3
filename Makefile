# Two commands do all the set-up: `make demo` and `make test` (see README.md).
VENV ?= .venv
PY := $(VENV)/bin/python
# extra arguments for `hilserl demo`, e.g. DEMO_ARGS="--policy.mixed_precision=false --policy.backbone_dtype=float32"
# to time a CPU without native bf16 on one that has it
DEMO_ARGS ?=
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml scripts/bootstrap.sh
	@VENV=$(VENV) bash scripts/bootstrap.sh

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/hilserl demo $(DEMO_ARGS)

test: $(STAMP)
	@bash scripts/bootstrap.sh --browser
	$(PY) -m pytest

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf outputs .pytest_cache
