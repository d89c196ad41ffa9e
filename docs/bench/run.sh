#!/usr/bin/env bash
# Same-run benchmark of the chat example against a real Pomelo 2.2.7 serving the same contract,
# with `pomelo bench`; see docs/BENCHMARKS.md. Everything listens on 127.0.0.1 only.
#
#   POMELO_PEER=/path/to/pomelo-peer docs/bench/run.sh
#
# POMELO_PEER is the directory of the peer's start.sh and stop.sh (started with PEER_NODELAY=1).
# Knobs: DURATION (10s), WARMUP (2s), CLIENTS (50), ROUNDS (2: A B A B), IDLE (5000 connections),
# FANOUT_INFLIGHT (8), PUSH_FLUSH (2ms: also fan-out rounds with the frontends started with
# -push-flush PUSH_FLUSH, against the peer again; empty for none),
# ONE_PROCESS (1: also measure the example with every server in one process),
# OUT (directory of the JSON results; default a new temporary one).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
: "${POMELO_PEER:?set POMELO_PEER to the directory of the Pomelo peer (start.sh, stop.sh)}"
D=${DURATION:-10s} W=${WARMUP:-2s} C=${CLIENTS:-50} ROUNDS=${ROUNDS:-2} IDLE=${IDLE:-5000}
M=${FANOUT_INFLIGHT:-8} ONE=${ONE_PROCESS:-1} PF=${PUSH_FLUSH-2ms}
OUT=${OUT:-$(mktemp -d)}
BIN=$(mktemp -d)
mkdir -p "$OUT"
cd "$ROOT"
go build -o "$BIN/pomelo" ./cmd/pomelo
go build -o "$BIN/chat" ./example/chat
bench() { "$BIN/pomelo" bench "$@" -q -d "$D" --warmup "$W"; }

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  "$POMELO_PEER/stop.sh" >/dev/null || true
  rm -rf "$BIN"
}
trap cleanup EXIT

# ready URL: waits until one client can connect.
ready() {
  for _ in $(seq 1 50); do
    "$BIN/pomelo" bench idle -q --url "$1" -c 1 -d 10ms --warmup 0 >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "$1 did not come up" >&2; return 1
}

# A: the example split like a deployment: gate and connectors in one process, chat servers in another.
CLUSTER=docs/bench/cluster.json
# frontends [FLAGS...]: starts the gate and both connectors in one process; its pid in FE.
frontends() {
  POMELO_SECRET=bench-secret "$BIN/chat" -cluster "$CLUSTER" -servers gate-1,connector-1,connector-2 -web off -max-conns -1 "$@" >>"$OUT/frontends.log" 2>&1 &
  FE=$!; PIDS+=("$FE")
}
frontends
POMELO_SECRET=bench-secret "$BIN/chat" -cluster "$CLUSTER" -servers chat-1,chat-2 >"$OUT/backends.log" 2>&1 &
BE=$!; PIDS+=("$BE")
ready ws://127.0.0.1:3014/
sleep 2 # the processes see each other (probe 1 s)

# B: the Pomelo peer, frontend and backend processes.
PEER_NODELAY=1 "$POMELO_PEER/start.sh" | tee "$OUT/peer.txt"
PFE=$(sed -n 's/.*connector pid \([0-9]*\).*/\1/p' "$OUT/peer.txt")
PBE=$(sed -n 's/.*chat pid \([0-9]*\).*/\1/p' "$OUT/peer.txt")
[ -n "$PFE" ] && [ -n "$PBE" ] || { echo "no peer pids (was it running already? stop it first)" >&2; exit 1; }

A_WS=(--gate ws://127.0.0.1:3014/ --pids "$FE,$BE")
A_IDLE=(--url ws://127.0.0.1:3010/,ws://127.0.0.1:3011/ --pids "$FE,$BE")
A_TCP=(--url tcp://127.0.0.1:3020,tcp://127.0.0.1:3021 --pids "$FE,$BE")
B_WS=(--url ws://127.0.0.1:3110/ --pids "$PFE,$PBE")
B_TCP=(--url tcp://127.0.0.1:3110 --pids "$PFE,$PBE")

LINE='def line: if .scenario == "idle" then "\(.ops) connections held, rss/conn \((.rssPerConnKB // 0) * 10 | floor / 10) kB" else "\(.opsPerSecond // 0 | floor) \(.unit)/s, cpu/op \((.cpuPerOpUs // 0) * 10 | floor / 10) us, p99 \((.latency.p99Us // 0) / 100 | floor / 10) ms, tool cpu \((.toolCpuSeconds // 0) * 100 / .seconds | floor)%" end;'
# run NAME ARGS...: one round, text on the terminal, JSON in $OUT/NAME.json.
run() {
  local name=$1; shift
  echo "== $name"
  bench "$@" --json >"$OUT/$name.json"
  jq -r "$LINE"' "   " + line + ", errors \(.errors // {})"' "$OUT/$name.json"
}

# Idle first, on fresh processes: RSS grows with what a process has done before.
run idle-pomelo-go idle -c "$IDLE" "${A_IDLE[@]}"
run idle-pomelo idle -c "$IDLE" "${B_WS[@]}"
for r in $(seq 1 "$ROUNDS"); do
  run "echo-pomelo-go-$r" echo -c "$C" -k 1 "${A_WS[@]}"
  run "echo-pomelo-$r" echo -c "$C" -k 1 "${B_WS[@]}"
done
for r in $(seq 1 "$ROUNDS"); do
  run "fanout-pomelo-go-$r" fanout -c "$C" -k "$M" "${A_WS[@]}"
  run "fanout-pomelo-$r" fanout -c "$C" -k "$M" "${B_WS[@]}"
done
run echo-tcp-pomelo-go-1 echo -c "$C" -k 1 "${A_TCP[@]}"
run echo-tcp-pomelo-1 echo -c "$C" -k 1 "${B_TCP[@]}"

if [ -n "$PF" ]; then
  # The same fan-out with the frontends holding pushes up to PUSH_FLUSH (Config.PushFlushInterval).
  kill -TERM "$FE"; wait "$FE" 2>/dev/null || true
  frontends -push-flush "$PF"
  ready ws://127.0.0.1:3014/
  sleep 2
  A_WS=(--gate ws://127.0.0.1:3014/ --pids "$FE,$BE")
  for r in $(seq 1 "$ROUNDS"); do
    run "fanout-pushflush-$r" fanout -c "$C" -k "$M" "${A_WS[@]}"
    run "fanout-pomelo-again-$r" fanout -c "$C" -k "$M" "${B_WS[@]}"
  done
fi

if [ "$ONE" = 1 ]; then
  kill -TERM "$FE" "$BE"; wait "$FE" "$BE" 2>/dev/null || true; PIDS=()
  POMELO_SECRET=bench-secret "$BIN/chat" -cluster "$CLUSTER" -web off -max-conns -1 >"$OUT/one.log" 2>&1 &
  ONEPID=$!; PIDS+=("$ONEPID")
  ready ws://127.0.0.1:3014/
  run echo-one-process-1 echo -c "$C" -k 1 --gate ws://127.0.0.1:3014/ --pids "$ONEPID"
  run fanout-one-process-1 fanout -c "$C" -k "$M" --gate ws://127.0.0.1:3014/ --pids "$ONEPID"
fi

# The means of the rounds: ops/s, server CPU per op, p99 (ms).
echo "== means of the rounds (results in $OUT)"
for s in echo fanout echo-tcp idle; do
  for t in pomelo-go pomelo pushflush pomelo-again one-process; do
    files=$(ls "$OUT"/$s-$t-[0-9]*.json "$OUT/$s-$t.json" 2>/dev/null) || true
    [ -n "$files" ] || continue
    # shellcheck disable=SC2086
    jq -rs --arg n "$s $t" "$LINE"' {scenario: .[0].scenario, ops: .[0].ops, seconds: 1, toolCpuSeconds: (map(.toolCpuSeconds / .seconds) | add / length), unit: .[0].unit, opsPerSecond: (map(.opsPerSecond) | add / length),
      cpuPerOpUs: (map(.cpuPerOpUs // 0) | add / length), latency: {p99Us: (map(.latency.p99Us // 0) | add / length)},
      rssPerConnKB: (map(.rssPerConnKB // 0) | add / length)} | $n + ": " + line' $files
  done
done
