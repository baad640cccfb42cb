# One RaftKV node; configured entirely by RAFTKV_* environment variables (see `raftkv serve --help`).
# `raftkv-chaos image build` builds it anywhere: it makes a local base image where no registry
# answers and puts the project's wheels (built on the host) in .wheels/. A plain
# `docker build .` works too where PyPI is reachable from the build (no .wheels/ then).
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
# Marks the build stage's leftover image, which `raftkv-chaos image build` prunes.
LABEL raftkv.stage=build
WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY raftkv ./raftkv
COPY wire ./wire
COPY client ./client
COPY chaos ./chaos
COPY .dockerignore .wheels* ./wheels/
# Wheels given: install only them (--no-index: no network needed). Otherwise from PyPI.
RUN python3 -m venv /opt/raftkv \
 && if ls wheels/*.whl >/dev/null 2>&1; then \
      /opt/raftkv/bin/pip install --no-cache-dir --no-index --find-links wheels raftkv; \
    else \
      /opt/raftkv/bin/pip install --no-cache-dir .; \
    fi

FROM ${BASE}
# /secrets: owned by raftkv, so a fresh volume mounted there (docker-compose.secure.yml's
# secrets container) is writable by the non-root user, as /data is.
RUN useradd --create-home --uid 10001 raftkv \
 && mkdir -p /data /secrets && chown raftkv:raftkv /data /secrets
COPY --from=build /opt/raftkv /opt/raftkv

USER raftkv
WORKDIR /home/raftkv
ENV PATH=/opt/raftkv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    RAFTKV_DATA_DIR=/data \
    RAFTKV_CLIENT_ADDR=0.0.0.0:7001 \
    RAFTKV_PEER_ADDR=0.0.0.0:7101 \
    RAFTKV_METRICS_ADDR=0.0.0.0:9001
VOLUME ["/data"]
EXPOSE 7001 7101 9001

# Healthy = /readyz answers 200: the node knows a leader it heard from within an election
# timeout (or leads with a quorum) and has applied close to the commit index; a node cut off
# from its peers (or still electing after the start period) is unhealthy, not just alive.
# The timeout allows for a Python start on a loaded machine (~0.5 s of imports at load 20).
HEALTHCHECK --interval=10s --timeout=10s --start-period=20s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9001/readyz', timeout=3)"]

# raftkv serve is PID 1 and stops gracefully on SIGTERM (a leader hands over first);
# docker stop / podman stop send SIGTERM, then SIGKILL after the grace period.
STOPSIGNAL SIGTERM
ENTRYPOINT ["raftkv", "serve"]
