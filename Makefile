# wmrl: `make demo` trains the default agent end to end; `make test` runs the test suite.
# Both create .venv/ first (idempotent: pip runs again only when pyproject.toml changes).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR ?= runs/demo

.PHONY: setup demo test clean-demo

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch is pinned to 2.13.0 in pyproject.toml so pip takes the local CPU wheel, never a CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	rm -rf $(DEMO_DIR)
	$(BIN)/wmrl train --run-dir $(DEMO_DIR)
	$(BIN)/wmrl eval $(DEMO_DIR) --episodes 10
	$(BIN)/wmrl dream $(DEMO_DIR) --horizon 16
	@echo "plots: $(DEMO_DIR)/learning_curve.png  dream: $(DEMO_DIR)/dream.png  metrics: $(DEMO_DIR)/metrics.jsonl"

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider

clean-demo:
	rm -rf $(DEMO_DIR)
