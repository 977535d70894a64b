# One command each, from a fresh clone with only Python:  make demo   /   make test
# Exact torch pins live here only (this machine's local wheels); setup.py keeps lower bounds.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: venv test demo clean

$(BIN)/.ganlib-installed: setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_PINS)
	$(BIN)/pip install -q -e ".[dev]"
	# facenet-pytorch pins torch<2.3 and numpy<2 in its metadata: install without deps (works on torch 2.x)
	$(BIN)/pip install -q --no-deps facenet-pytorch
	touch $@

venv: $(BIN)/.ganlib-installed

# pytest exits 5 when it collects no test at all: report it, do not fail the build on it.
test: venv
	TQDM_DISABLE=1 $(BIN)/python -m pytest -q tests || { rc=$$?; [ $$rc -eq 5 ] && echo "pytest: no tests collected"; [ $$rc -eq 5 ]; }

demo: venv
	$(BIN)/python -m ganlib demo

clean:
	rm -rf $(VENV) runs
