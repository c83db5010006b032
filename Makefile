# Two commands do all the set-up on a fresh machine with Python 3.11:
#   make serve   create .venv if missing, install the service, serve models/ on $PORT
#   make test    install the training and test extras too, run ruff and the test suite
# Others: make bench (speed), make soak (load), make container-smoke (image),
# make train → make export → make evaluate (the model).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
export PORT

.PHONY: serve test lint bench soak container-smoke train export evaluate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.serve: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[train,dev,batch]"
	touch $@ $(VENV)/.serve

serve: $(VENV)/.serve
	$(BIN)/python -m app

test: $(VENV)/.dev
	@test -x /usr/bin/chromium || { test "$$(id -u)" = 0 && apt-get update -qq && apt-get install -y -qq chromium; } \
		|| echo "make test: /usr/bin/chromium missing and not root: the browser tests will fail (sudo apt-get install -y chromium)"
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

train: $(VENV)/.dev
	$(BIN)/python -m training train

# A trained run → the two committed models: float32 export (parity-checked against Keras),
# thresholds tuned on training images, INT8 model (the service's default) made from it.
export: $(VENV)/.dev
	$(BIN)/python -m training export
	$(BIN)/python -m training tune
	$(BIN)/python -m training quantize

evaluate: $(VENV)/.dev
	$(BIN)/python -m training evaluate --update-card --report models/nuclei-unet.validation.csv
	$(BIN)/python -m training evaluate --model models/nuclei-unet.int8.onnx --update-card \
		--report models/nuclei-unet.int8.validation.csv

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

bench: $(VENV)/.dev
	$(BIN)/python -m bench

soak: $(VENV)/.dev
	$(BIN)/python -m scripts.soak --requests 2000 --concurrency 16

container-smoke:
	scripts/container-smoke
