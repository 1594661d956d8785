# syntax=docker/dockerfile:1
# chatsite's image: dependencies built in one stage, the app run as a non-root user in a slim
# second one. Each container runs one line of the Procfile (`honcho start web` by default;
# compose.yaml starts the worker the same way).

# The base image: Docker Hub's python:3.11-slim. A machine that cannot pull it builds on a stand-in
# made from Debian bookworm's own Python 3.11 (.ci/python-image, docs/deploy.md).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY chatsite chatsite
COPY conversations conversations
# The dependencies only: the app itself runs from /app (its templates, static files and
# catalogues are found next to manage.py), so the package is installed and taken out again.
RUN /venv/bin/pip install ".[s3]" && /venv/bin/pip uninstall -y chatsite

FROM ${PYTHON_IMAGE}
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONPATH=/app \
    HOST=0.0.0.0 \
    PORT=8000 \
    MEDIA_ROOT=/var/lib/chatsite/media
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin chatsite \
    && mkdir -p /var/lib/chatsite/media && chown chatsite /var/lib/chatsite/media
COPY --from=build /venv /venv
WORKDIR /app
COPY manage.py Procfile ./
COPY chatsite chatsite
COPY conversations conversations
COPY templates templates
COPY static static
COPY locale locale
COPY docs/openapi.yaml docs/openapi.yaml
# Hashed, compressed files for WhiteNoise. A build-time key only: collectstatic signs nothing,
# and the running container must be given its own SECRET_KEY.
RUN SECRET_KEY=collectstatic-only DEBUG=0 python manage.py collectstatic --noinput -v 0
USER chatsite
EXPOSE 8000
# Liveness (chatsite/health.py): answers while the process runs, touches no dependency.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8000')}/healthz\", timeout=2)"]
CMD ["honcho", "start", "--no-prefix", "web"]
