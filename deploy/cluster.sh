#!/usr/bin/env bash
# `make cluster`: the compose topology as plain processes on one machine, run by honcho (a Procfile
# runner): Kamailio on SIP_PORT in front, NUM_WORKERS `parley worker`s behind it, `parley api` on API_PORT,
# and the dispatcher sync keeping Kamailio's worker set equal to the registry. PostgreSQL (DATABASE_URL) and
# Redis (REDIS_URL) come from the environment. SIGINT/SIGTERM stop every process (honcho).
set -euo pipefail
: "${DATABASE_URL:?set DATABASE_URL (postgresql://…): the workers share one database}"
: "${REDIS_URL:?set REDIS_URL (redis://…): the queue, the registry and the cluster caps live there}"
export SIP_HOST="${SIP_HOST:-127.0.0.1}" SIP_PORT="${SIP_PORT:-5060}" API_PORT="${API_PORT:-8000}"
export DATA_DIR="${DATA_DIR:-data}" NUM_WORKERS="${NUM_WORKERS:-2}"
# the workers hear every call from Kamailio: exempt it from the per-source SIP limits, honour its Via
export SIP_TRUSTED_SOURCES="${SIP_TRUSTED_SOURCES:-$SIP_HOST}"
PARLEY="${PARLEY:-parley}"
KAMAILIO="${KAMAILIO:-$(command -v kamailio || echo /usr/sbin/kamailio)}"
KAMCMD="${KAMCMD:-$(command -v kamcmd || echo /usr/sbin/kamcmd)}"
HERE="$(cd "$(dirname "$0")" && pwd)"
RUN="$(mkdir -p "$DATA_DIR/cluster" && cd "$DATA_DIR/cluster" && pwd)"
[ -x "$KAMAILIO" ] || { echo "kamailio is not installed (apt-get install kamailio)" >&2; exit 1; }
command -v honcho >/dev/null || { echo "honcho is not installed (pip install honcho)" >&2; exit 1; }
printf '# no worker registered yet\n' > "$RUN/dispatcher.list"
rm -f "$RUN/kamailio_ctl"
cat > "$RUN/Procfile" <<PROCFILE
kamailio: exec $KAMAILIO -DD -E -m ${KAMAILIO_SHM_MB:-128} -M 16 -f $HERE/kamailio/kamailio.cfg -P $RUN/kamailio.pid -A 'SIP_LISTEN=udp:$SIP_HOST:$SIP_PORT' -A 'DS_LIST="$RUN/dispatcher.list"' -A 'CTL_SOCKET="unix:$RUN/kamailio_ctl"' -A 'TRUNK_NETS="${TRUNK_NETS:-127.0.0.0/8}"'
api: exec $PARLEY api --port $API_PORT
dispatcher: exec $PARLEY cluster kamailio-sync --list $RUN/dispatcher.list --reload-cmd '$KAMCMD -s unix:$RUN/kamailio_ctl dispatcher.reload'
worker: exec $HERE/worker-loop.sh $PARLEY worker --sip-port 0 --health-port 0
PROCFILE
echo "cluster: Kamailio sip:$SIP_HOST:$SIP_PORT, API http://127.0.0.1:$API_PORT, $NUM_WORKERS worker(s); Ctrl-C stops all"
exec honcho -f "$RUN/Procfile" -d "$PWD" start -c "worker=$NUM_WORKERS"
