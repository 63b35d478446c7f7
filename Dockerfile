# certainly-ingest container image.
#
# Builds on the official Python slim image by default, or on any Debian-like base that has
# python3 with venv (e.g. a debootstrap bookworm base: see tests/container/build_and_run.sh).
#
#   podman build -t certainly-ingest .                      # or: docker build -t certainly-ingest .
#   podman build --build-arg BASE_IMAGE=localhost/ingest-base:bookworm -t certainly-ingest .
#
# Package index: pip in the build stage reads the usual PIP_* variables; pass the host's with
# --build-arg PIP_INDEX_URL=... (and PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, PIP_CERT). They exist
# only in the build stage, never in the runtime image.

ARG BASE_IMAGE=python:3.11-slim-bookworm

# ----------------------------------------------------------------- dependencies, then build
FROM ${BASE_IMAGE} AS deps

# Lets tests/container/build_and_run.sh find and prune stale build-stage images.
LABEL certainly-ingest.stage="build"

ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_CERT

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python3 -m venv /opt/venv

WORKDIR /src
# The dependencies first, in a layer of their own: a change to the code alone then reinstalls
# only the package (seconds), not polars, pyarrow and deltalake. Only the base dependencies:
# no extras, so no IMAP server (pymap is in the demo extra).
COPY pyproject.toml ./
# An empty PIP_* variable would override pip's defaults with "", so drop the unset ones.
RUN for var in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_CERT; do \
        eval "value=\${$var:-}"; [ -n "$value" ] || unset "$var"; \
    done; \
    python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        >/tmp/requirements.txt \
    && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt

FROM deps AS build
COPY README.md ./
COPY ingest/ ./ingest/
# The package's own files (its folder, metadata and the `ingest` script) gathered under /app
# at their final paths: the runtime stage copies them on top of the dependencies' layer.
RUN for var in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_CERT; do \
        eval "value=\${$var:-}"; [ -n "$value" ] || unset "$var"; \
    done; \
    /opt/venv/bin/pip install --no-cache-dir --no-deps /src \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/ingest --help >/dev/null \
    && site="$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
    && mkdir /app && cd / \
    && tar -cf - "${site#/}/ingest" "${site#/}"/certainly_ingest-*.dist-info opt/venv/bin/ingest | tar -xf - -C /app

# -------------------------------------------------------------------------- runtime stage
FROM ${BASE_IMAGE}

ARG APP_UID=10001
# The public repository address, typed out: --build-arg SOURCE_URL=https://github.com/<org>/certainly-ingest
# Never pass `git remote get-url origin`: a clone URL may carry a token (https://user:token@...),
# and a label is readable by anyone who can pull the image.
ARG SOURCE_URL=""

LABEL org.opencontainers.image.title="certainly-ingest" \
      org.opencontainers.image.description="Hands-off archiver for Certainly chatbot message reports: export requests, IMAP attachment pickup, validated Parquet archive." \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="MIT"

# Two layers: the dependencies (hundreds of MB, unchanged while pyproject.toml is), then the
# package (a few hundred KB, near the end), so that a new version pulls and pushes little.
COPY --from=deps /opt/venv /opt/venv

# A non-root user owning /data (state and archive). useradd comes with Debian's passwd
# package (in every minbase); the fallback covers bases without it.
RUN if command -v useradd >/dev/null 2>&1; then \
        useradd --uid "${APP_UID}" --user-group --home-dir /data --no-create-home \
                --shell /usr/sbin/nologin ingest; \
    else \
        echo "ingest:x:${APP_UID}:${APP_UID}:certainly-ingest:/data:/usr/sbin/nologin" >> /etc/passwd; \
        echo "ingest:x:${APP_UID}:" >> /etc/group; \
    fi \
    && mkdir -p /data \
    && chown "${APP_UID}:${APP_UID}" /data \
    && chmod 0750 /data

ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    INGEST_STATE__PATH=/data/state.sqlite \
    INGEST_OUTPUT__ROOT=/data/archive

COPY --from=build /app/ /

USER ${APP_UID}:${APP_UID}
WORKDIR /data
VOLUME ["/data"]

ENTRYPOINT ["ingest"]
CMD ["run"]
