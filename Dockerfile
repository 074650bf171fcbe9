# syntax=docker/dockerfile:1
# Image of the Kafka workload guardian: one image, three roles chosen by the
# command (`guardian run --component processors|engine`, `guardian api`).
#
#   docker build -t kafka-workload-guardian:0.1.0 .
#
# Stage 1 builds every wheel (C extensions included) into a virtualenv with a
# compiler present; stage 2 copies only that virtualenv onto a clean slim base,
# so the runtime image carries no compiler, no pip cache and no source tree.

# Pinned by tag; pin by digest too (python:3.11.14-slim-trixie@sha256:...) for
# bit-for-bit reproducible builds.
ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/guardian
ENV PATH=/opt/guardian/bin:$PATH
WORKDIR /src
# Dependencies first, from pyproject.toml alone, so a source-only change
# reuses this (slow) layer.
COPY pyproject.toml ./
RUN python - <<'PY' > /tmp/requirements.txt
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))
PY
RUN pip install -r /tmp/requirements.txt
# only the guardian package: the developer tools (guardian_dev, bench) stay out of the image
COPY guardian ./guardian
COPY pyproject.toml README.md* ./
# A non-editable install; bytecode is compiled here because the runtime root
# filesystem is read-only.
RUN pip install --no-deps . \
 && python -m compileall -q /opt/guardian/lib

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="kafka-workload-guardian" \
      org.opencontainers.image.description="Finds runaway Kafka clients within seconds and sequesters exactly them." \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric uid/gid so Kubernetes can verify runAsNonRoot without
# looking the name up; the chart's securityContext uses the same ids.
RUN groupadd --system --gid 10001 guardian \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/guardian --create-home \
      --shell /usr/sbin/nologin guardian
COPY --from=build /opt/guardian /opt/guardian
COPY --chown=10001:10001 configs /etc/guardian/configs
ENV PATH=/opt/guardian/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    XDG_CACHE_HOME=/tmp/cache
USER 10001:10001
WORKDIR /home/guardian
# 8080: API (HTTP, /metrics, /healthz, /readyz); 9108: metrics and health of
# the stream processors and the action engine.
EXPOSE 8080 9108
ENTRYPOINT ["guardian"]
CMD ["--help"]
