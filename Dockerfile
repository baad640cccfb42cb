# One RaftKV node; configured entirely by RAFTKV_* environment variables (see `raftkv serve --help`).
FROM python:3.11-slim

RUN useradd --create-home --uid 10001 raftkv \
 && mkdir -p /data && chown raftkv:raftkv /data

WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY raftkv ./raftkv
COPY wire ./wire
COPY client ./client
COPY chaos ./chaos
RUN pip install --no-cache-dir . && rm -rf /src

USER raftkv
WORKDIR /home/raftkv
ENV RAFTKV_DATA_DIR=/data \
    RAFTKV_CLIENT_ADDR=0.0.0.0:7001 \
    RAFTKV_PEER_ADDR=0.0.0.0:7101
VOLUME ["/data"]
EXPOSE 7001 7101

# Healthy = the client port answers PING.
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
  CMD python -c "import socket; s = socket.create_connection(('127.0.0.1', 7001), 2); s.sendall(b'PING\r\n'); assert s.recv(7) == b'+PONG\r\n'"

ENTRYPOINT ["raftkv", "serve"]
