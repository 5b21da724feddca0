# The Engage Streams application image: one image, two roles.
#   docker build -t engage-streams .
#   docker run ... engage-streams connector   (webhook receiver, CONNECTOR_PORT 8080)
#   docker run ... engage-streams worker      (stream worker, WORKER_WEB_PORT 6066)
# Settings are environment variables (see `engage-streams <command> --help`).
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first so code changes do not reinstall them (the README glob tolerates its absence).
COPY pyproject.toml README.md* ./
COPY engage_streams ./engage_streams
COPY connectors ./connectors
COPY streams ./streams
COPY simulator ./simulator
# devkit/data/prometheus/alerts.yml links to prometheus/alerts.yml (package data of the demo).
COPY devkit ./devkit
COPY prometheus ./prometheus
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /var/lib/engage-streams --create-home engage

USER engage
# Listen on every interface inside the container (the defaults are 127.0.0.1); the worker keeps
# its RocksDB tables under ENGAGE_DATA_DIR, which docker-compose.yml puts on a volume.
ENV CONNECTOR_HOST=0.0.0.0 \
    WORKER_WEB_HOST=0.0.0.0 \
    ENGAGE_DATA_DIR=/var/lib/engage-streams

EXPOSE 8080 6066
ENTRYPOINT ["engage-streams"]
CMD ["connector"]
