# Nuclei segmentation service: FastAPI + ONNX Runtime, CPU only.
#
#   docker build -t nuclei-segmentation .
#   docker run --rm -p 8000:8000 nuclei-segmentation        # or: docker compose up
#
# Two stages: the builder installs the project and its runtime dependencies (`pip install .`,
# not the train/dev extras: no TensorFlow) into a virtual environment; the final stage gets
# that environment and the INT8 models, nothing else (no pip, no compilers, no tests, no sources
# of the training package).

# ---------------------------------------------------------------------------- builder
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# pyproject.toml names README.md as the package's readme: setuptools needs it to build.
COPY pyproject.toml README.md ./
# The project and its runtime dependencies only: no [train] (TensorFlow) and no [dev] extras.
# Dependencies first, with an empty package, in a layer that stays cached until
# pyproject.toml changes; then the real packages on top, without touching the dependencies:
# the core library (nuclei/) and the service (app/). Not training/, batch/ or bench/:
# packages.find installs only the packages copied here.
RUN mkdir app && touch app/__init__.py \
    && pip install . \
    && rm -r app
COPY nuclei/ nuclei/
COPY app/ app/
RUN pip install --no-deps --force-reinstall .
# Trim what the service never runs: the training and batch entry points (their packages are
# not installed), the test suites some wheels ship (numpy's), and pip/setuptools themselves.
RUN rm -f /opt/venv/bin/nuclei-train /opt/venv/bin/nuclei-batch /opt/venv/bin/nuclei-client \
    && find /opt/venv -depth -type d -name tests -exec rm -rf {} + \
    && find /opt/venv -name conftest.py -delete \
    && pip uninstall --yes setuptools \
    && python -m pip uninstall --yes pip \
    && python -m compileall -q /opt/venv/lib
# Fail the build, not the deployment: the service imports from the venv, TensorFlow does not.
RUN cd / \
    && python -c "import app.main, nuclei.pipeline, onnxruntime, cv2, numpy, tifffile, python_multipart, uvicorn" \
    && ! python -c "import tensorflow" 2>/dev/null

# ---------------------------------------------------------------------------- runtime
FROM python:3.11-slim AS runtime

LABEL org.opencontainers.image.title="nuclei-segmentation" \
      org.opencontainers.image.description="Nuclei segmentation for microscopy images (U-Net, ONNX Runtime, FastAPI)" \
      org.opencontainers.image.licenses="MIT"

COPY --from=builder /opt/venv /opt/venv
# The INT8 models of models/ and their cards (a card's sha256 must match its .onnx: checked at
# start-up), not the float32 exports: the service serves every model of MODEL_PATH's folder, each
# model used keeps its own onnxruntime memory, and the memory limits (docker-compose.yml,
# deploy/kubernetes/deployment.yaml) are sized for INT8 models (docs/deployment.md, "Resources").
COPY models/*.int8.onnx models/*.int8.json /app/models/

# Every setting of app/config.py is an environment variable (see docker-compose.yml); the
# image sets those whose container value differs from the code's default: HOST (all
# interfaces) and MODEL_PATH (the package is installed in the venv, the model is in /app).
# HOME=/tmp: the server user has no home directory and the root filesystem may be read-only.
# ORT_DISABLE_TELEMETRY: onnxruntime's usage telemetry off (it also tries to write a device id).
ENV PATH=/opt/venv/bin:$PATH \
    ORT_DISABLE_TELEMETRY=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MODEL_PATH=/app/models/nuclei-unet.int8.onnx \
    HOST=0.0.0.0 \
    PORT=8000

WORKDIR /app
# Numeric, so that Kubernetes' runAsNonRoot can verify it without an /etc/passwd entry.
USER 10001:10001

EXPOSE 8000

# Liveness without curl: the image's own Python asks /health on the configured port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=4)"]

# Checks the model, then serves it with uvicorn on $HOST:$PORT; SIGTERM drains in-flight requests.
CMD ["python", "-m", "app"]
