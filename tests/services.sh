#!/usr/bin/env bash
# Starts (installing if missing) the local services the tests talk to. Idempotent; called by tests/run.sh.
set -euo pipefail

postgres_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

if ! postgres_up; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "installing PostgreSQL"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  conf=/etc/postgresql/$version/main
  # Trust local TCP connections, as the tests expect.
  if ! grep -q "pods-ci" "$conf/pg_hba.conf"; then
    sed -i '1i host all all 127.0.0.1/32 trust # pods-ci\nhost all all ::1/128 trust # pods-ci' "$conf/pg_hba.conf"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do postgres_up && break; sleep 1; done
fi
postgres_up || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
echo "PostgreSQL is up on 127.0.0.1:5432"

# Redis on 127.0.0.1:6379 (the redis queue and event relay tests).
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
if ! redis_up; then
  if ! command -v redis-server >/dev/null; then
    echo "installing Redis"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
  redis-server --bind 127.0.0.1 --port 6379 --save "" --appendonly no --daemonize yes
  for _ in $(seq 1 30); do redis_up && break; sleep 0.5; done
fi
redis_up || { echo "Redis is not reachable on 127.0.0.1:6379" >&2; exit 1; }
echo "Redis is up on 127.0.0.1:6379"

# moto_server on 127.0.0.1:5055 (SQS and DynamoDB tests). The tests start it too if it is not
# running; starting it here keeps its start-up out of the first test's time.
if ! command -v moto_server >/dev/null; then
  echo "installing moto[server]"
  python3 -m pip install -q 'moto[server]'
fi
# schemathesis (tests/tests/schema.rs runs it against the served OpenAPI document).
if ! command -v schemathesis >/dev/null; then
  echo "installing schemathesis"
  python3 -m pip install -q schemathesis
fi
# The official OpenAI Python SDK (tests/tests/all/openai_door.rs calls Pods through it) and
# Prometheus' own parser (tests/tests/all/metrics.rs reads /metrics with it).
if ! python3 -c "import openai" 2>/dev/null; then
  echo "installing openai"
  python3 -m pip install -q openai
fi
if ! python3 -c "import prometheus_client" 2>/dev/null; then
  echo "installing prometheus-client"
  python3 -m pip install -q prometheus-client
fi
# OpenTelemetry's protobuf types (tests/otlp/receiver.py decodes the exported traces with them).
if ! python3 -c "import opentelemetry.proto" 2>/dev/null; then
  echo "installing opentelemetry-proto"
  python3 -m pip install -q opentelemetry-proto
fi
moto_up() { curl -s -o /dev/null "http://127.0.0.1:5055/moto-api/" 2>/dev/null; }
if ! moto_up; then
  nohup moto_server -H 127.0.0.1 -p 5055 >/tmp/pods-moto.log 2>&1 &
  for _ in $(seq 1 60); do moto_up && break; sleep 0.5; done
fi
moto_up || { echo "moto_server is not reachable on 127.0.0.1:5055 (see /tmp/pods-moto.log)" >&2; exit 1; }
echo "moto_server is up on 127.0.0.1:5055"

# The console's browser tests (tests/tests/all/console.rs): Node.js, Debian's chromium, and the
# console's npm packages as package-lock.json pins them (playwright-core among them).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "installing Node.js"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
# (The lockfile is copied beside the packages once installed: a changed lockfile reinstalls.)
if ! cmp -s console/package-lock.json console/node_modules/.pods-lock.json; then
  echo "installing the console's npm packages"
  (cd console && npm ci --no-audit --no-fund --loglevel=error && cp package-lock.json node_modules/.pods-lock.json)
fi
echo "Node.js $(node --version), chromium and the console's packages are ready"
