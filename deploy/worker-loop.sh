#!/usr/bin/env bash
# Runs one `parley worker` and starts it again when it dies (what compose's `restart: unless-stopped` does),
# so `make cluster` loses only the dead worker's calls, not the whole cluster. honcho signals the whole
# process group: the worker gets SIGTERM itself and drains; this loop just waits for it and stops.
stop=0
trap 'stop=1' TERM INT
while :; do
  "$@" &
  child=$!
  while kill -0 "$child" 2>/dev/null; do wait "$child"; done
  wait "$child" 2>/dev/null; rc=$?
  [ "$stop" -eq 1 ] && exit 0
  echo "worker exited (status $rc); starting a new one in 1 s" >&2
  sleep 1
  [ "$stop" -eq 1 ] && exit 0
done
