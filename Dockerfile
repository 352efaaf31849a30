# syntax=docker/dockerfile:1
# kassa's container image: `docker build -t kassa .`
# The builder installs the locked dependencies and kassa itself (as a wheel, migrations
# included) into /app/.venv; the runtime stage gets that virtual environment and nothing
# else from the build: no uv, no compilers, no source tree, no secrets.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ARG UV_VERSION=0.13.8
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /src
# Dependencies first, from the lock file alone, so that this layer is reused until
# uv.lock changes.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --no-install-project
COPY README.md ./
COPY src ./src
COPY migrations ./migrations
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="kassa" \
      org.opencontainers.image.description="An open-source payment gateway service" \
      org.opencontainers.image.licenses="MIT"
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# /srv/kassa is made here, by root: a WORKDIR that does not exist yet is created by some
# builders (buildah, podman) as the USER in effect at commit, which would hand it to kassa.
RUN groupadd --system --gid 10001 kassa \
    && useradd --system --uid 10001 --gid kassa --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin kassa \
    && install -d -o root -g root -m 0755 /srv/kassa
# Owned by root and read-only for the service user: the code cannot be changed at run time.
COPY --from=builder /app/.venv /app/.venv
COPY --chmod=0755 deploy/docker/entrypoint.sh /usr/local/bin/kassa-entrypoint
# An empty working directory: kassa reads `.env` from here, and the image has none;
# settings come from the environment (and secrets from the orchestrator's secret store).
WORKDIR /srv/kassa
USER 10001:10001
EXPOSE 8000
# The slim image has no curl; the interpreter kassa runs on does the probe, on the port the
# entry point serves on (KASSA_PORT, 8000 unless set).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('KASSA_PORT', '8000'), timeout=4).status == 200 else 1)"]
ENTRYPOINT ["kassa-entrypoint"]
CMD ["serve"]
