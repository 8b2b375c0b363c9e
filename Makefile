# Two commands a newcomer needs: `make run` and `make test`.
# Both create .venv when missing, install torch first (TORCH_SPEC), then the project.
#
# TORCH_SPEC picks the torch build. The default is pinned so `make` never pulls an
# unexpected multi-GB build; with a GPU choose a CUDA build, e.g.
#   make run TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run test bench lint install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-installs torch only when TORCH_SPEC changes.
$(VENV)/.torch-$(shell echo '$(TORCH_SPEC)' | md5sum | cut -c1-12): | $(BIN)/python
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	rm -f $(VENV)/.torch-* && touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch-$(shell echo '$(TORCH_SPEC)' | md5sum | cut -c1-12)
	$(BIN)/python -m pip install -q -e ".[test]" --config-settings editable_mode=compat
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/diffusion-explorer

test: install
	QT_QPA_PLATFORM=offscreen $(BIN)/python -X faulthandler -m pytest -q $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check core app tests bench

bench: install
	$(BIN)/python -m pip install -q -e ".[test,bench]"
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/sample_speed.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
