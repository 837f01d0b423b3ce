# Shared set-up steps for scripts/test and scripts/dev. Safe to run again: each step
# checks first and only installs or starts what is missing. Debian/Ubuntu, as root or
# with sudo.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
export POSTGRES_ADMIN_URL=${POSTGRES_ADMIN_URL:-postgresql://postgres:postgres@127.0.0.1:5432/postgres}
export AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

wait_for_port() {
  local port=$1 what=$2
  for _ in $(seq 1 120); do
    port_open "$port" && return 0
    sleep 1
  done
  echo "$what did not open port $port" >&2
  return 1
}

ensure_packages() {
  local missing=()
  command -v clamd >/dev/null || missing+=(clamav-daemon clamav)
  command -v ffmpeg >/dev/null || missing+=(ffmpeg)
  command -v ffprobe >/dev/null || missing+=(ffmpeg)
  command -v psql >/dev/null || port_open 5432 || missing+=(postgresql)
  command -v rabbitmq-server >/dev/null || port_open 5672 || missing+=(rabbitmq-server)
  python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  # Validates deploy/compose/compose.yaml in the tests (no Docker engine needed).
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  # The browser client's unit tests, and the demo page's end-to-end test in a real browser.
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
  command -v chromium >/dev/null || missing+=(chromium)
  # promtool for the alert rules' unit tests, and Prometheus to evaluate them for real.
  command -v promtool >/dev/null || missing+=(prometheus)
  # A real S3 store for the tests and `scripts/dev`: Ceph's RADOS Gateway.
  command -v radosgw >/dev/null || missing+=(ceph-mon ceph-osd radosgw ceph-common)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

ensure_postgres() {
  if ! port_open 5432; then
    log "starting PostgreSQL"
    local version
    version=$(ls /etc/postgresql | sort -V | tail -1)
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
    wait_for_port 5432 PostgreSQL
  fi
  # Fresh installs authenticate TCP clients by password: give postgres the one we use.
  if ! psql "$POSTGRES_ADMIN_URL" -qtAc 'select 1' >/dev/null 2>&1; then
    as_root su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
  fi
}

ensure_rabbitmq() {
  if ! port_open 5672; then
    log "starting RabbitMQ"
    as_root rabbitmq-server -detached
    wait_for_port 5672 RabbitMQ
  fi
}

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
  fi
  local stamp="$VENV/.installed-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    log "installing Python dependencies"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q -e "$ROOT[dev]"
    touch "$stamp"
  fi
}

ensure_all() {
  ensure_packages
  ensure_postgres
  ensure_rabbitmq
  ensure_venv
}

ensure_bench_tools() {
  local missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  command -v vips >/dev/null || missing+=(libvips-tools)
  command -v clamdscan >/dev/null || missing+=(clamdscan)
  if [ ${#missing[@]} -gt 0 ]; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  "$VENV/bin/python" -c 'import pyvips' 2>/dev/null || "$VENV/bin/pip" install -q -e "$ROOT[dev,bench]"
}
