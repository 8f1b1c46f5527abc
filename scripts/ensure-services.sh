#!/usr/bin/env bash
# Start Redis and PostgreSQL when they are not answering (the tests need real servers).
set -uo pipefail
REDIS_HOST=127.0.0.1 REDIS_PORT=6379 PG_HOST=127.0.0.1 PG_PORT=5432

up() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

if ! up $REDIS_HOST $REDIS_PORT; then
  if command -v redis-server >/dev/null; then
    echo "starting redis-server on $REDIS_HOST:$REDIS_PORT"
    mkdir -p /tmp/parley-redis
    redis-server --daemonize yes --bind 127.0.0.1 --port $REDIS_PORT --save "" --appendonly no \
      --dir /tmp/parley-redis --logfile /tmp/parley-redis/redis.log
  else
    echo "Redis is not running on $REDIS_HOST:$REDIS_PORT and redis-server is not installed; Redis tests will be skipped" >&2
  fi
fi

if ! up $PG_HOST $PG_PORT; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    version=$(ls /etc/postgresql | head -n1)
    echo "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  else
    echo "PostgreSQL is not running on $PG_HOST:$PG_PORT and no cluster is installed; PostgreSQL tests will be skipped" >&2
  fi
fi

for i in $(seq 1 30); do
  { up $REDIS_HOST $REDIS_PORT || ! command -v redis-server >/dev/null; } && \
  { up $PG_HOST $PG_PORT || ! command -v pg_ctlcluster >/dev/null; } && exit 0
  sleep 0.5
done
exit 0
