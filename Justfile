# mediagate tasks. `just --list` shows them. Every recipe works on a fresh Debian machine.

set shell := ["bash", "-euo", "pipefail", "-c"]

venv := ".venv/bin"

# Install and start what the project needs (packages, PostgreSQL, RabbitMQ, the venv).
setup:
    source scripts/lib.sh && ensure_all

# Run the test suite (sets everything up first); extra args go to pytest.
test *args:
    ./scripts/test {{args}}

# Run the whole system natively: API, worker, clamd, S3 test server (no Docker needed).
dev:
    ./scripts/dev

# Serve the API with settings from the environment.
serve host="127.0.0.1" port="8000":
    {{venv}}/mediagate serve --host {{host}} --port {{port}}

# Apply database migrations (idempotent).
migrate:
    {{venv}}/mediagate migrate

# Run the processing worker.
worker:
    {{venv}}/mediagate worker

# Lint, format and types over src, tests and bench (also the first step of `just test`).
check:
    ./scripts/check

# The browser client's own tests (Node's test runner; also run by `just test`).
test-js:
    cd clients/js && node --test test/

# Format the browser client (prettier; `just check` checks it).
format-js:
    cd clients/js && npx prettier --write mediagate.js mediagate.d.ts test

# Benchmarks on the real stack; they print their numbers (tools installed if missing).
bench-api *args:
    source scripts/lib.sh && ensure_all && ensure_bench_tools
    {{venv}}/python bench/api_bench.py {{args}}

bench-worker *args:
    source scripts/lib.sh && ensure_all && ensure_bench_tools
    {{venv}}/python bench/worker_bench.py {{args}}

bench-webhooks *args:
    source scripts/lib.sh && ensure_all
    {{venv}}/python bench/webhook_bench.py {{args}}

bench-subscriptions *args:
    source scripts/lib.sh && ensure_all && ensure_bench_tools
    {{venv}}/python bench/subscriptions_bench.py {{args}}

bench-large *args:
    source scripts/lib.sh && ensure_all && ensure_bench_tools
    {{venv}}/python bench/large_upload_bench.py {{args}}

bench-burst *args:
    source scripts/lib.sh && ensure_all && ensure_bench_tools
    {{venv}}/python bench/burst_bench.py {{args}}

# On-prem stack with Docker compose.
up:
    docker compose --env-file deploy/compose/.env -f deploy/compose/compose.yaml up -d --build

down:
    docker compose --env-file deploy/compose/.env -f deploy/compose/compose.yaml down

logs *services:
    docker compose --env-file deploy/compose/.env -f deploy/compose/compose.yaml logs -f {{services}}
