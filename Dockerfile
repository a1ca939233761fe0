# syntax=docker/dockerfile:1
# Multi-stage: build a virtual environment, then copy only it into a slim runtime image.

FROM python:3.12-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
# The hashed lock first (its own layer: a code change does not reinstall the dependencies), then
# the project itself with the locked setuptools, resolving nothing: the image runs exactly the
# versions the test suite passed with.
COPY requirements/run.txt ./requirements/
RUN /opt/venv/bin/pip install --require-hashes --no-deps -r requirements/run.txt
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation .

FROM python:3.12-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin gateway
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY config ./config
# GATEWAY_PORT names the port once: the gateway listens on it (the environment beats the TOML
# file), EXPOSE documents it and the health check probes it.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    GATEWAY_CONFIG=/app/config/gateway.toml \
    GATEWAY_LOG_FORMAT=json \
    GATEWAY_PORT=8000
USER gateway
EXPOSE ${GATEWAY_PORT}
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ['GATEWAY_PORT']}/healthz\", timeout=2)"]
# Exec form: SIGTERM reaches the server itself, which drains (shutdown_grace_s) and exits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["gateway", "serve", "--host", "0.0.0.0"]
