# Shared set-up for scripts/run, scripts/test and scripts/bench: makes a fresh machine ready
# and does nothing that is already done. Source it; do not run it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
mkdir -p var

export DATABASE_URL="${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/mailer}"
export AMQP_URL="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2F}"
export RABBITMQ_API="${RABBITMQ_API:-http://guest:guest@127.0.0.1:15672/api}"
export PYTHONUNBUFFERED=1

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_install() {
  log "installing $* with apt"
  if [ ! -f var/.apt-updated ]; then $SUDO apt-get update -qq && touch var/.apt-updated; fi
  # No daemon may start from a package's postinst (postfix in particular): we start what we need.
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null || { $SUDO rm -f /usr/sbin/policy-rc.d; return 1; }
  $SUDO rm -f /usr/sbin/policy-rc.d
}

ensure_python() {
  local stamp=var/.venv-stamp want
  want="$(sha256sum pyproject.toml | cut -c1-16)"
  if [ ! -x .venv/bin/python ]; then
    log "creating the virtual environment"
    python3 -m venv .venv
  fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing the project and its dependencies"
    .venv/bin/pip install -q --upgrade pip >/dev/null
    .venv/bin/pip install -q -e '.[test]'
    echo "$want" > "$stamp"
  fi
}

pg_up() { .venv/bin/python - "$DATABASE_URL" <<'PY' >/dev/null 2>&1
import sys, psycopg
from urllib.parse import urlsplit, urlunsplit
u = urlsplit(sys.argv[1]); psycopg.connect(urlunsplit(u._replace(path="/postgres")), connect_timeout=3).close()
PY
}

ensure_postgres() {
  pg_up && return 0
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql
    # A developer database on loopback: trust local TCP connections, as the defaults expect.
    local hba; hba="$(ls /etc/postgresql/*/main/pg_hba.conf | head -n1)"
    $SUDO sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  log "starting PostgreSQL"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 60); do pg_up && return 0; sleep 1; done
  log "PostgreSQL does not answer on $DATABASE_URL"; return 1
}

ensure_database() {
  .venv/bin/python - "$DATABASE_URL" <<'PY'
import sys, psycopg
from psycopg import sql
from urllib.parse import urlsplit, urlunsplit
u = urlsplit(sys.argv[1]); name = u.path.lstrip("/")
with psycopg.connect(urlunsplit(u._replace(path="/postgres")), autocommit=True) as c:
    if not c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        print(f"created database {name}", file=sys.stderr)
PY
  .venv/bin/python -m app.migrate
}

amqp_up() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
api_up() { curl -fsS -o /dev/null "${RABBITMQ_API%/}/overview" 2>/dev/null || .venv/bin/python -c "import requests,sys; from app.broker_setup import _api; b,a=_api('$RABBITMQ_API'); requests.get(b+'/overview',auth=a,timeout=3).raise_for_status()" 2>/dev/null; }

ensure_rabbitmq() {
  if ! amqp_up; then
    command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
    log "starting RabbitMQ"
    $SUDO rabbitmq-server -detached || true
    for _ in $(seq 90); do amqp_up && break; sleep 1; done
    amqp_up || { log "RabbitMQ does not answer on 127.0.0.1:5672"; return 1; }
  fi
  if ! api_up; then
    log "enabling the RabbitMQ management plugin"
    $SUDO rabbitmq-plugins enable rabbitmq_management >/dev/null
    for _ in $(seq 60); do api_up && break; sleep 1; done
  fi
  .venv/bin/python -m app.broker_setup
}

ensure_assets() {
  [ -f app/static/vendor/pico.min.css ] && return 0
  if command -v npm >/dev/null; then
    log "fetching front-end assets from npm"
    npm install --silent --no-audit --no-fund --prefix var/npm @picocss/pico@2 >/dev/null 2>&1 || { log "npm install failed: the UI stays unstyled"; return 0; }
    mkdir -p app/static/vendor
    cp var/npm/node_modules/@picocss/pico/css/pico.min.css app/static/vendor/
  else
    log "npm not found: the UI stays unstyled"
  fi
}

ensure_secret() {
  if [ -z "${SECRET_KEY:-}" ]; then
    [ -s var/secret_key ] || { head -c 32 /dev/urandom | base64 | tr -d '\n=' > var/secret_key; chmod 600 var/secret_key; }
    SECRET_KEY="$(cat var/secret_key)"
    export SECRET_KEY
  fi
}

setup_all() {
  ensure_python
  ensure_postgres
  ensure_database
  ensure_rabbitmq
  ensure_assets
  ensure_secret
}
