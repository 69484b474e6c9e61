#!/usr/bin/env bash
# Pants end to end: the same Pants 2.17.1 build of examples/basic (export-codegen test ::),
# warm from a FRESH Pants local store, served by
#
#   (a) plugin     this project's pants_oci_cache plugin, cache_from/cache_to a local Debian
#                  docker-registry on 127.0.0.1, its daemon already running (as on a
#                  developer's machine, or in a CI job after its first Pants run) but on a
#                  FRESH state dir: the daemon imported the cache image from the registry
#                  when an untimed `pants --version` started it, and every blob of the timed
#                  run is read through from the registry (its local store is empty);
#   (a2) plugin, first run on a fresh machine: no daemon yet, fresh state dir, so the run
#                  also launches the daemon (Python + grpcio start-up) and imports;
#   (b) buildgrid  BuildGrid 0.4.4's in-memory CAS + ActionCache (the peer, already running),
#                  Pants pointed at it with remote_store_address + remote_cache_read/write;
#   (c) local      Pants' own local cache: the local store of a cold run, no remote cache
#                  (the ceiling: no network, no daemon);
#
# plus `pants --version` (Pants start-up alone, the floor every run pays). Each remote cache
# is seeded by one cold run; then N rounds run round-robin (start-up, local, buildgrid,
# plugin, plugin on a fresh machine) and the medians are compared: of the wall times, and
# net of start-up (per round, each run minus that round's start-up run). Every warm run's --stats-log counters are checked: all remote-cacheable processes
# served from the cache, and the plugin's runs end with the end-of-run export (which finds
# the image at the ref up to date).
#
#   bench/pants_bench.sh [--runs N]      (default 3; about 1 min + 45 s per round)
#
# Targets (issue 4): plugin <= 0.9 x buildgrid and plugin <= 1.2 x local, judged on (a), both
# net of start-up and on wall time (the issue's wording; Pants' ~6 s start-up dominates it);
# (a2)'s ratios are printed too. Exit status 0 whether or
# not a target is met; 1 when a run fails or a warm run is not served entirely from its cache.
#
# Everything lives under .cache/bench/ (gitignored): BuildGrid's venv (bgvenv/, created with
# pyenv's Python 3.11 and `pip install buildgrid==0.4.4` when absent; BUILDGRID_VENV=DIR
# uses another), logs and per-run directories (run/, removed at each start). The registry,
# BuildGrid and the plugin's daemons are stopped by PID on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$PWD"

RUNS=3
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --runs=*) RUNS="${1#--runs=}"; shift ;;
    -h | --help) sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "pants_bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if ! [[ "$RUNS" =~ ^[1-9][0-9]*$ ]]; then
  echo "pants_bench: --runs takes a positive integer" >&2
  exit 2
fi

BENCH_DIR="$REPO_ROOT/.cache/bench"
WORK="$BENCH_DIR/run"
BUILDROOT="$WORK/repo"
PANTS="$REPO_ROOT/.venv-pants/bin/pants"
OCI_CACHE="$REPO_ROOT/.venv/bin/oci-cache"
BG_VENV="${BUILDGRID_VENV:-$BENCH_DIR/bgvenv}"
GOALS=(export-codegen test ::)
export NO_SCIE_WARNING=1

log() { echo "pants_bench: $*" >&2; }
now() { date +%s.%N; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b <= 0) print "n/a"; else printf "%.2f", a / b }'; }
verdict() { awk -v r="$1" -v t="$2" 'BEGIN { if (r == "n/a") print "n/a"; else print ((r <= t) ? "PASS" : "FAIL") }'; }
median() { # median of the arguments
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.2f", v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
free_port() {
  "$REPO_ROOT/.venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_for_port() { # PORT PID NAME: until something accepts on 127.0.0.1:PORT
  local deadline=$((SECONDS + 60))
  until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
    if ! kill -0 "$2" 2>/dev/null; then log "$3 exited during start-up (see its log)"; exit 1; fi
    if ((SECONDS > deadline)); then log "$3 did not listen on port $1 within 60 s"; exit 1; fi
    sleep 0.05
  done
}

# --- prerequisites ----------------------------------------------------------------------
[[ -x "$PANTS" && -x "$OCI_CACHE" ]] || scripts/bootstrap.sh --pants
command -v docker-registry >/dev/null || { log "docker-registry is not installed (Debian package docker-registry)"; exit 1; }
if [[ ! -x "$BG_VENV/bin/bgd" ]]; then
  py311="$(ls -d "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/3.11.*/bin/python3.11 2>/dev/null | tail -n 1 || true)"
  [[ -n "$py311" ]] || py311="$(command -v python3.11 || true)"
  [[ -n "$py311" ]] || { log "BuildGrid 0.4.4 needs Python 3.11 (pyenv install 3.11)"; exit 1; }
  log "creating BuildGrid's venv in ${BG_VENV#"$REPO_ROOT"/} ($py311; pip install buildgrid==0.4.4) ..."
  mkdir -p "$BENCH_DIR"
  "$py311" -m venv "$BG_VENV"
  "$BG_VENV/bin/pip" install -q buildgrid==0.4.4 >"$BENCH_DIR/bgvenv-install.log" 2>&1 \
    || { log "pip install buildgrid failed; see $BENCH_DIR/bgvenv-install.log"; rm -rf "$BG_VENV"; exit 1; }
fi

# --- servers, stopped by PID on exit ----------------------------------------------------
SERVER_PIDS=()
STATE_DIRS=()
stop_process() { # PID: TERM, then KILL after 5 s
  local pid="$1" i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
  kill -KILL "$pid" 2>/dev/null || true
}
stop_daemons() { # STATE_DIR: the plugin's daemons there (oci-cache stop, then their PIDs)
  local dir="$1" file pid
  [[ -d "$dir" ]] || return 0
  "$OCI_CACHE" stop --state-dir "$dir" --no-export --timeout 20s >>"$WORK/stop.log" 2>&1 || true
  for file in "$dir"/*/daemon.json; do
    [[ -f "$file" ]] || continue
    pid="$("$REPO_ROOT/.venv/bin/python" -c 'import json, sys; print(int(json.load(open(sys.argv[1]))["pid"]))' "$file" 2>/dev/null || true)"
    [[ -n "$pid" ]] && stop_process "$pid"
  done
}
cleanup() {
  local dir pid
  for dir in "${STATE_DIRS[@]}"; do stop_daemons "$dir"; done
  for pid in "${SERVER_PIDS[@]}"; do stop_process "$pid"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$WORK"
mkdir -p "$WORK"
cp -R examples/basic "$BUILDROOT"
export XDG_CACHE_HOME="$WORK/xdg-cache" # Pants' default caches stay in the bench too

# docker-registry: filesystem storage in the bench, plain HTTP on loopback (config as JSON,
# which is YAML).
REGISTRY_PORT="$(free_port)"
mkdir -p "$WORK/registry/storage"
cat >"$WORK/registry/config.yml" <<JSON
{"version": 0.1,
 "log": {"level": "error", "accesslog": {"disabled": true}},
 "storage": {"filesystem": {"rootdirectory": "$WORK/registry/storage"},
             "delete": {"enabled": true},
             "maintenance": {"uploadpurging": {"enabled": false}}},
 "http": {"addr": "127.0.0.1:$REGISTRY_PORT", "secret": "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"},
 "health": {"storagedriver": {"enabled": false}}}
JSON
docker-registry serve "$WORK/registry/config.yml" >"$WORK/registry.log" 2>&1 </dev/null &
SERVER_PIDS+=("$!")
wait_for_port "$REGISTRY_PORT" "$!" docker-registry

# BuildGrid: CAS, ByteStream and ActionCache of instance "" over one in-memory LRU storage.
BG_PORT="$(free_port)"
cat >"$WORK/buildgrid.yml" <<YAML
server:
  - !channel
    address: "127.0.0.1:$BG_PORT"
    insecure-mode: true
authorization:
  method: none
storages:
  - !lru-storage &memory
    size: 2048M
caches:
  - !lru-action-cache &memory-ac
    storage: *memory
    max-cached-refs: 100000
    allow-updates: true
    cache-failed-actions: true
instances:
  - name: ""
    services:
      - !cas
        storage: *memory
      - !bytestream
        storage: *memory
      - !action-cache
        cache: *memory-ac
YAML
"$BG_VENV/bin/bgd" server start "$WORK/buildgrid.yml" >"$WORK/buildgrid.log" 2>&1 </dev/null &
SERVER_PIDS+=("$!")
wait_for_port "$BG_PORT" "$!" BuildGrid

# The plugin, installed in-repo as docs/pants.md describes; the state dir is per run.
CACHE_REF="type=registry,ref=127.0.0.1:$REGISTRY_PORT/bench/basic:cache"
cat >"$BUILDROOT/oci-cache.toml" <<TOML
[GLOBAL]
pythonpath = ["$REPO_ROOT/src/python"]
backend_packages.add = ["pants_oci_cache"]

[oci-cache]
cache_from = ["$CACHE_REF"]
cache_to = ["$CACHE_REF"]
python = "$REPO_ROOT/.venv/bin/python"
# The most that recording for `oci-cache explain` costs: input trees listed too (auto would
# list them only for a mode=max cache_to).
explain_input_trees = "on"
TOML

# --- Pants runs -------------------------------------------------------------------------

# pants_run NAME ARGS...: one --no-pantsd run with every directory of its own (a fresh
# local store unless LOCAL_STORE names one) under run/NAME; output in run/NAME.log, wall
# seconds in $ELAPSED.
pants_run() {
  local name="$1" start status=0
  shift
  local dir="$WORK/$name"
  mkdir -p "$dir/sandboxes"
  start="$(now)"
  RUN_START="$start"
  (cd "$BUILDROOT" && "$PANTS" --no-pantsd --no-pantsrc --no-watch-filesystem \
    --pants-workdir="$dir/workdir" --pants-subprocessdir="$dir/pids" \
    --named-caches-dir="$dir/named-caches" --local-execution-root-dir="$dir/sandboxes" \
    --local-store-dir="${LOCAL_STORE:-$dir/local-store}" "$@") >"$WORK/$name.log" 2>&1 || status=$?
  ELAPSED="$(minus "$(now)" "$start")"
  if [[ $status -ne 0 ]]; then
    log "pants ($name) failed with exit code $status; last lines of $WORK/$name.log:"
    tail -n 30 "$WORK/$name.log" >&2
    exit 1
  fi
}
build() { # NAME ARGS...: the example build
  local name="$1"
  shift
  pants_run "$name" --pants-distdir="$BUILDROOT/dist-$name" --stats-log \
    --ignore-warnings="['Please run with \`--plugins=hdrhistogram\`']" "$@" "${GOALS[@]}"
}
counter() { # NAME COUNTER: from the --stats-log block of that run
  awk -v key="$2:" '/Counters:/ { on = 1; next } on && $1 == key { v = $2 } END { print v + 0 }' "$WORK/$1.log"
}
# served NAME local|remote: exits unless all $cacheable remote-cacheable processes came from
# that cache (Pants also runs ~18 per-session processes, e.g. binary look-ups, every time).
served() {
  local hits
  hits="$(counter "$1" "$2_cache_requests_cached")"
  if [[ "$hits" -ne "$cacheable" || "$(counter "$1" remote_cache_read_errors)" -ne 0 \
    || "$(counter "$1" remote_cache_write_attempts)" -ne 0 ]]; then
    log "$1: $hits of $cacheable cacheable processes came from the $2 cache (see $WORK/$1.log)"
    exit 1
  fi
}
plugin_args() { # STATE_DIR: the plugin's configuration for one run, in PLUGIN_ARGS
  STATE_DIRS+=("$1")
  PLUGIN_ARGS=("--pants-config-files=+['$BUILDROOT/oci-cache.toml']" "--oci-cache-state-dir=$1"
    --remote-cache-read --remote-cache-write "--log-levels-by-target={'pants_oci_cache.end_of_run': 'debug'}")
}
# daemon_ready STATE_DIR: seconds from the start of the last run to the daemon's "serving on".
daemon_ready() {
  local stamp
  stamp="$(sed -n 's/^\([0-9-]* [0-9:]*\),\([0-9]*\) INFO .*serving on .*/\1.\2/p' "$1"/*/daemon.log | head -n 1)"
  [[ -n "$stamp" ]] && minus "$(date -d "$stamp" +%s.%N)" "$RUN_START" || echo "n/a"
}
# recording_seconds LOG: what recording for `oci-cache explain` cost that run (the
# plugin's debug line: descriptions, input trees, the misses' causes).
recording_seconds() { sed -n 's/^.*recording for `oci-cache explain` took \([0-9.]*\)s.*/\1/p' "$1" | tail -n 1; }
# share PART WHOLE: PART as a percentage of WHOLE.
share() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b <= 0) print "n/a"; else printf "%.2f%%", 100 * a / b }'; }
# export_seconds LOG: the export time in the plugin's summary line of that run.
export_seconds() { sed -n 's/^.*oci-cache: .* in \([0-9.]*\)s$/\1/p' "$1" | tail -n 1; }
BUILDGRID_ARGS=(--remote-store-address="grpc://127.0.0.1:$BG_PORT" --remote-cache-read --remote-cache-write)

bench_start=$SECONDS
log "cold runs: local store; BuildGrid seeded; plugin exporting to the registry ..."
build local-cold
cold_local="$ELAPSED"
build buildgrid-cold "${BUILDGRID_ARGS[@]}"
cold_buildgrid="$ELAPSED"
plugin_args "$WORK/plugin-cold/state"
build plugin-cold "${PLUGIN_ARGS[@]}"
cold_plugin="$ELAPSED"
stop_daemons "$WORK/plugin-cold/state" # exported at the end of the run; the next runs import
cacheable="$(counter buildgrid-cold remote_cache_requests)"
[[ "$(counter buildgrid-cold remote_cache_write_successes)" -eq "$cacheable" ]] \
  || { log "BuildGrid stored $(counter buildgrid-cold remote_cache_write_successes) of $cacheable results"; exit 1; }
[[ "$(counter plugin-cold remote_cache_write_successes)" -eq "$cacheable" ]] \
  || { log "the plugin stored $(counter plugin-cold remote_cache_write_successes) of $cacheable results"; exit 1; }
grep -q 'oci-cache: .*exported' "$WORK/plugin-cold.log" \
  || { log "the plugin's cold run printed no export summary (see $WORK/plugin-cold.log)"; exit 1; }

STARTUP=() WARM_LOCAL=() WARM_BUILDGRID=() WARM_PLUGIN=() FRESH_PLUGIN=() READY=() EXPORT=() FRESH_EXPORT=() RECORDING=()
for ((i = 1; i <= RUNS; i++)); do
  log "round $i of $RUNS: start-up, local, buildgrid, plugin (daemon running), plugin (fresh machine) ..."
  pants_run "startup-$i" --version
  STARTUP+=("$ELAPSED")
  LOCAL_STORE="$WORK/local-cold/local-store" build "local-warm-$i"
  WARM_LOCAL+=("$ELAPSED")
  served "local-warm-$i" local
  build "buildgrid-warm-$i" --no-local-cache "${BUILDGRID_ARGS[@]}"
  WARM_BUILDGRID+=("$ELAPSED")
  served "buildgrid-warm-$i" remote
  # (a): an untimed run starts the daemon on a fresh state dir (it imports the image), then
  # the timed build, from a fresh Pants local store.
  plugin_args "$WORK/plugin-warm-$i/state"
  pants_run "plugin-start-$i" "${PLUGIN_ARGS[@]}" --version
  build "plugin-warm-$i" --no-local-cache "${PLUGIN_ARGS[@]}"
  WARM_PLUGIN+=("$ELAPSED")
  served "plugin-warm-$i" remote
  EXPORT+=("$(export_seconds "$WORK/plugin-warm-$i.log")")
  RECORDING+=("$(recording_seconds "$WORK/plugin-warm-$i.log")")
  stop_daemons "$WORK/plugin-warm-$i/state"
  # (a2): the first run on a fresh machine: it launches the daemon itself.
  plugin_args "$WORK/plugin-fresh-$i/state"
  build "plugin-fresh-$i" --no-local-cache "${PLUGIN_ARGS[@]}"
  FRESH_PLUGIN+=("$ELAPSED")
  served "plugin-fresh-$i" remote
  READY+=("$(daemon_ready "$WORK/plugin-fresh-$i/state")")
  FRESH_EXPORT+=("$(export_seconds "$WORK/plugin-fresh-$i.log")")
  stop_daemons "$WORK/plugin-fresh-$i/state"
done
bench_seconds=$((SECONDS - bench_start))

# --- report -----------------------------------------------------------------------------
startup="$(median "${STARTUP[@]}")"
local_m="$(median "${WARM_LOCAL[@]}")"
bg_m="$(median "${WARM_BUILDGRID[@]}")"
plugin_m="$(median "${WARM_PLUGIN[@]}")"
fresh_m="$(median "${FRESH_PLUGIN[@]}")"
# Net of start-up, paired by round (each run minus the start-up run of its own round, then
# the median): load that drifts over the benchmark cancels out within a round.
paired_net() { # NAME-OF-ARRAY: median over rounds of (run - start-up of that round)
  local -n runs="$1"
  local nets=() j
  for ((j = 0; j < ${#runs[@]}; j++)); do nets+=("$(minus "${runs[$j]}" "${STARTUP[$j]}")"); done
  median "${nets[@]}"
}
net_local="$(paired_net WARM_LOCAL)"
net_bg="$(paired_net WARM_BUILDGRID)"
net_plugin="$(paired_net WARM_PLUGIN)"
net_fresh="$(paired_net FRESH_PLUGIN)"
r_bg="$(ratio "$net_plugin" "$net_bg")"
r_local="$(ratio "$net_plugin" "$net_local")"
summary="$(grep -o 'oci-cache: [0-9]* hits\{0,1\},.*' "$WORK/plugin-warm-$RUNS.log" | tail -n 1 || true)"
row() { printf '%-40s %7s %7s   %s\n' "$@"; }

echo
echo "=== Pants 2.17.1, examples/basic (${GOALS[*]}), --no-pantsd; $RUNS warm runs each, medians ==="
echo "$(nproc) CPUs; $cacheable remote-cacheable processes ($(counter local-cold local_cache_requests) local-cache lookups); every warm run served all of them from its cache"
row "" "wall s" "net s" "runs (wall s; net = median of run - start-up of its round)"
row "pants --version (start-up)" "$startup" "-" "${STARTUP[*]}"
row "(c) local: Pants' local store" "$local_m" "$net_local" "${WARM_LOCAL[*]}"
row "(b) buildgrid: BuildGrid in memory" "$bg_m" "$net_bg" "${WARM_BUILDGRID[*]}"
row "(a) plugin: daemon running, registry" "$plugin_m" "$net_plugin" "${WARM_PLUGIN[*]}"
row "(a2) plugin: fresh machine, registry" "$fresh_m" "$net_fresh" "${FRESH_PLUGIN[*]}"
echo "(a) end-of-run export (s): ${EXPORT[*]}"
echo "(a2) daemon serving after (s from Pants start): ${READY[*]}; end-of-run export (s): ${FRESH_EXPORT[*]}"
echo "cold runs (seeding, wall s): local $cold_local, buildgrid $cold_buildgrid, plugin $cold_plugin"
cold_recording="$(recording_seconds "$WORK/plugin-cold.log")"
warm_recording="$(median "${RECORDING[@]:-0}")"
echo "recording for oci-cache explain (target <= 2% of the run net of start-up): cold run ${cold_recording:-n/a} s of $(minus "$cold_plugin" "$startup") s ($(share "$cold_recording" "$(minus "$cold_plugin" "$startup")")); (a) warm runs ${RECORDING[*]:-n/a} s, median of $net_plugin s ($(share "$warm_recording" "$net_plugin"))"
echo "last (a) run: $summary"
echo
printf '%-24s %9s %9s %8s  %s\n' "ratio" "net" "wall" "target" "verdict: net of start-up / wall"
w_bg="$(ratio "$plugin_m" "$bg_m")"
w_local="$(ratio "$plugin_m" "$local_m")"
printf '%-24s %9s %9s %8s  %s / %s\n' "plugin / buildgrid" "$r_bg" "$w_bg" "<= 0.9" "$(verdict "$r_bg" 0.9)" "$(verdict "$w_bg" 0.9)"
printf '%-24s %9s %9s %8s  %s / %s\n' "plugin / local" "$r_local" "$w_local" "<= 1.2" "$(verdict "$r_local" 1.2)" "$(verdict "$w_local" 1.2)"
printf '%-24s %9s %9s %8s\n' "(a2) fresh / buildgrid" "$(ratio "$net_fresh" "$net_bg")" "$(ratio "$fresh_m" "$bg_m")" "-"
printf '%-24s %9s %9s %8s\n' "(a2) fresh / local" "$(ratio "$net_fresh" "$net_local")" "$(ratio "$fresh_m" "$local_m")" "-"
printf '%-24s %9s %9s %8s\n' "buildgrid / local" "$(ratio "$net_bg" "$net_local")" "$(ratio "$bg_m" "$local_m")" "-"
echo "benchmark time: ${bench_seconds} s; logs in ${WORK#"$REPO_ROOT"/}/"
