#!/usr/bin/env bash
# The main job, for now: Pants 2.17.1 builds the bundled example repository
# (examples/basic) twice against `oci-cache serve`, the way two CI machines would:
#
#   1. a cold build: every process runs locally and is written to the cache;
#   2. a build on a "fresh machine" (empty local store, --no-local-cache): every process
#      should be served from the cache, with byte-identical outputs.
#
#   scripts/demo.sh
#
# Everything it writes is under .cache/demo/ (removed at the start of each demo). The
# server is started here by hand; a later version lets the Pants plugin start it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$PWD"

scripts/bootstrap.sh --pants
export NO_SCIE_WARNING=1

DEMO_DIR="$REPO_ROOT/.cache/demo"
BUILDROOT="$DEMO_DIR/repo"
PANTS="$REPO_ROOT/.venv-pants/bin/pants"
GOALS=(export-codegen test ::)
SERVER_PID=""

rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"
cp -R examples/basic "$BUILDROOT"
# Pants' default caches (~/.cache/pants) follow XDG_CACHE_HOME: keep them in the demo too.
export XDG_CACHE_HOME="$DEMO_DIR/xdg-cache"

# --- the cache server ---------------------------------------------------------------

stop_server() {
  [[ -n "$SERVER_PID" ]] || return 0
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
      kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
  fi
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

start_server() {
  .venv/bin/oci-cache serve --listen 127.0.0.1:0 --state-dir "$DEMO_DIR/server-state" \
    >"$DEMO_DIR/server.out" 2>"$DEMO_DIR/server.log" &
  SERVER_PID=$!
  trap stop_server EXIT
  trap 'exit 130' INT TERM # so that the EXIT trap stops the server
  for _ in $(seq 1 300); do
    if [[ -s "$DEMO_DIR/server.out" ]]; then
      break
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  SERVER_ADDRESS="$(sed -n '1s/^listening on //p' "$DEMO_DIR/server.out")"
  if [[ "$SERVER_ADDRESS" != grpc://* ]]; then
    echo "demo: oci-cache serve did not start; its log ($DEMO_DIR/server.log):" >&2
    cat "$DEMO_DIR/server.log" >&2
    exit 1
  fi
}

# --- Pants ----------------------------------------------------------------------------

now() { date +%s.%N; }
seconds_since() { minus "$(now)" "$1"; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a - b }'; }

# pants_in_buildroot NAME ARGS...: one --no-pantsd run whose own directories are all
# under .cache/demo/NAME; output in .cache/demo/NAME.log, wall time in $ELAPSED.
pants_in_buildroot() {
  local name="$1"
  shift
  local run_dir="$DEMO_DIR/$name" start status=0
  mkdir -p "$run_dir/sandboxes"
  start="$(now)"
  (cd "$BUILDROOT" && "$PANTS" --no-pantsd --no-pantsrc --no-watch-filesystem \
    --pants-workdir="$run_dir/workdir" \
    --pants-subprocessdir="$run_dir/pids" \
    --local-store-dir="$run_dir/local-store" \
    --named-caches-dir="$run_dir/named-caches" \
    --local-execution-root-dir="$run_dir/sandboxes" \
    "$@") >"$DEMO_DIR/$name.log" 2>&1 || status=$?
  ELAPSED="$(seconds_since "$start")"
  if [[ $status -ne 0 ]]; then
    echo "demo: pants ($name) failed with exit code $status; last lines of $DEMO_DIR/$name.log:" >&2
    tail -n 40 "$DEMO_DIR/$name.log" >&2
    exit 1
  fi
}

# build NAME ARGS...: the example build with the remote cache on, outputs in dist-NAME.
build() {
  local name="$1"
  shift
  pants_in_buildroot "$name" \
    --pants-distdir="$BUILDROOT/dist-$name" \
    --remote-store-address="$SERVER_ADDRESS" --remote-cache-read --remote-cache-write \
    --stats-log --ignore-warnings="['Please run with \`--plugins=hdrhistogram\`']" \
    "$@" "${GOALS[@]}"
}

# counter NAME COUNTER: a value from the --stats-log block of that run's log.
counter() {
  awk -v key="$2:" '/Counters:/ { on = 1; next } on && $1 == key { value = $2 } END { print value + 0 }' \
    "$DEMO_DIR/$1.log"
}

# --- the demo -------------------------------------------------------------------------

start_server
echo "demo: oci-cache serve is listening on $SERVER_ADDRESS (pid $SERVER_PID)"

echo "demo: measuring Pants start-up (pants --version) ..."
pants_in_buildroot startup --version
startup_seconds="$ELAPSED"

echo "demo: build 1 (cold cache) ..."
build cold
cold_seconds="$ELAPSED"

echo "demo: build 2 (fresh local store, --no-local-cache) ..."
build warm --no-local-cache
warm_seconds="$ELAPSED"

stop_server

cacheable="$(counter cold remote_cache_requests)"
written="$(counter cold remote_cache_write_successes)"
lookups="$(counter warm remote_cache_requests)"
hits="$(counter warm remote_cache_requests_cached)"
problems=0
for name in remote_cache_requests_uncached remote_cache_read_errors remote_cache_request_timeouts \
  remote_cache_speculation_local_completed_first remote_store_missing_digest; do
  problems=$((problems + $(counter warm "$name")))
done
if diff -r -q "$BUILDROOT/dist-cold" "$BUILDROOT/dist-warm" >"$DEMO_DIR/outputs.diff"; then
  identical="yes"
else
  identical="NO (see $DEMO_DIR/outputs.diff)"
fi

cat <<SUMMARY

=== pants-oci-cache demo: Pants 2.17.1, examples/basic (${GOALS[*]}) ===
Pants start-up alone (pants --version):  ${startup_seconds} s
Build 1, cold cache:                     ${cold_seconds} s (net of start-up $(minus "$cold_seconds" "$startup_seconds") s) - ${cacheable} remote-cacheable processes run locally, ${written} written to the cache
Build 2, fresh machine:                  ${warm_seconds} s (net of start-up $(minus "$warm_seconds" "$startup_seconds") s) - ${hits} of ${lookups} processes served from the cache, $((lookups - hits)) run locally
Outputs of both builds byte-identical:   ${identical}
Logs and the server's state:             ${DEMO_DIR#"$REPO_ROOT"/}/
SUMMARY

if [[ "$cacheable" -eq 0 || "$hits" -ne "$cacheable" || "$lookups" -ne "$cacheable" || "$problems" -ne 0 || "$identical" != "yes" ]]; then
  echo "demo: FAILED - build 2 was not served entirely from the cache (see $DEMO_DIR/warm.log)." >&2
  exit 1
fi
echo "demo: OK - build 2 was served entirely from the cache."
