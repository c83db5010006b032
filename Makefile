# Two commands do all the set-up on a fresh machine with Python 3.11:
#   make serve   create .venv if missing, install the service, serve models/ on $PORT
#   make test    install the training, napari and test extras too, run ruff and the test suite
# Others: make bench (speed), make soak (load), make container-smoke (image),
# make train → make export → make evaluate (the model); make finetune (a lab's own model).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
export PORT

.PHONY: serve test lint bench soak container-smoke train export evaluate package finetune clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.serve: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# bioimageio.core 0.11.0 pins bioimageio.spec 0.5.12.0, which fails to serialise under our
# pydantic 2.14: the second step puts spec 0.5.14.3 over it (pip reports the pin, and goes on).
$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[train,dev,batch,napari,package]"
	$(BIN)/python -m pip install --quiet "bioimageio.spec==0.5.14.3"
	touch $@ $(VENV)/.serve

serve: $(VENV)/.serve
	$(BIN)/python -m app

# Debian packages the tests drive: Chromium (the web page) and an X server with the libraries
# napari's Qt window and OpenGL canvas need (tests/napari starts Xvfb itself).
TEST_APT := chromium xvfb xauth libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 \
	libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xinput0 libxcb-xfixes0 libxcb-shape0 \
	libxcb-cursor0 libegl1 libgl1

test: $(VENV)/.dev
	@dpkg -s $(TEST_APT) >/dev/null 2>&1 \
		|| { test "$$(id -u)" = 0 && apt-get update -qq && apt-get install -y -qq $(TEST_APT); } \
		|| echo "make test: not root and packages missing: browser and napari tests will fail (sudo apt-get install -y $(TEST_APT))"
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

# Every served model as a bioimage.io package: dist/<model>.bioimageio.zip (docs/bioimageio.md).
package: $(VENV)/.dev
	$(BIN)/python -m training package --out dist

# A lab's labelled images → models/NAME.{onnx,int8.onnx} with cards, from the served model
# (docs/finetune.md): make finetune IMAGES=DIR [LABELS=DIR] NAME=NAME [MINUTES=30] [FINETUNE_ARGS='--val DIR …']
MINUTES ?= 30
finetune: $(VENV)/.dev
	@test -n "$(IMAGES)" -a -n "$(NAME)" || { echo "usage: make finetune IMAGES=DIR [LABELS=DIR] NAME=NAME [MINUTES=30] [FINETUNE_ARGS=...]"; exit 2; }
	$(BIN)/python -m training finetune "$(IMAGES)" $(if $(LABELS),"$(LABELS)") --out "models/$(NAME)" \
		--minutes $(MINUTES) $(FINETUNE_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

bench: $(VENV)/.dev
	$(BIN)/python -m bench

soak: $(VENV)/.dev
	$(BIN)/python -m scripts.soak --requests 2000 --concurrency 16

container-smoke:
	scripts/container-smoke
