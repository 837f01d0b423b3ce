# One image for api, worker, migrate and storage-setup: `docker run mediagate <command>`.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 mediagate \
    && useradd --system --uid 10001 --gid mediagate --home-dir /app --shell /usr/sbin/nologin mediagate

WORKDIR /app
# The migrations live beside src/ (the package finds them there), so the project is
# installed in place rather than as a wheel.
COPY pyproject.toml README.md ./
COPY src ./src
COPY piccolo_migrations ./piccolo_migrations
# The browser client the API serves at /client/mediagate.js.
COPY clients/js/mediagate.js ./clients/js/
RUN pip install -e . && python -c "import mediagate.cli"

USER mediagate
ENTRYPOINT ["mediagate"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
