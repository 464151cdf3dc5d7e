# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: demo test lint bench clean web-wasm

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Re-install when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[test,ray]"
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/dappled demo --out demo.png

test: $(VENV)/.installed-test
	$(VENV)/bin/ruff check dappled tests benchmarks
	$(VENV)/bin/pytest

bench: $(VENV)/.installed-test
	$(PY) benchmarks/splat_kodak.py

# The browser field decoder's WebAssembly loops (latents and synthesis) (it ships built; rebuild after editing its source).
# Needs Node.js and the npm registry (AssemblyScript, pinned); the tests hold the result to the
# JavaScript and Python decoders, bit for bit.
web-wasm:
	npx --yes -p assemblyscript@0.28.20 asc dappled/stream/web/src/field-decoder.ts -O3 --runtime stub \
	  --noAssert --use abort= -o dappled/stream/web/field-decoder.wasm

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
