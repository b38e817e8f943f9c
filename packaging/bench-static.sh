#!/usr/bin/env bash
# The static (musl) binaries against the glibc ones, run alike and
# interleaved: the time for `dispatch-agent run --until-idle` to send
# FILES files of 4 KiB to a local target (file poller, 8 at a time, default
# durability), and the agent's own figure for compiling the seven built-ins
# (`plugins`, an empty module cache). Medians of REPS runs each.
# Needs `cargo xtask build` and `cargo xtask dist` first.
#   packaging/bench-static.sh [FILES=2000] [REPS=7]
set -euo pipefail
cd "$(dirname "$0")/.."
files=${1:-2000}
reps=${2:-7}
glibc=target/release/dispatch-agent
musl=target/x86_64-unknown-linux-musl/release/dispatch-agent
for b in "$glibc" "$musl"; do [ -x "$b" ] || { echo "no $b: build it first" >&2; exit 1; }; done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/empty"

send() { # binary → seconds
  local w="$work/run"
  rm -rf "$w" && mkdir -p "$w/src" "$w/dst"
  head -c $((files * 4096)) /dev/urandom | split -b 4096 -a 6 - "$w/src/f"
  printf '[agent]\njournal = "journal.sqlite"\n[[poller]]\nname = "frames"\npath = "src"\nplugin = "file"\nstability = "0s"\nmax_transfers = 8\ntarget = { kind = "local", destination = "dst" }\n' >"$w/agent.toml"
  sync
  local s e
  s=$(date +%s.%N)
  env -i HOME="$work" "$1" run --config "$w/agent.toml" --until-idle >/dev/null 2>"$w/err" || { cat "$w/err" >&2; exit 1; }
  e=$(date +%s.%N)
  [ "$(ls "$w/dst" | wc -l)" = "$files" ] && [ -z "$(ls "$w/src")" ] || { echo "not every file was sent" >&2; exit 1; }
  echo "$e - $s" | bc
}
compile() { # binary → ms, as the agent reports it
  local h="$work/home"
  rm -rf "$h" && mkdir -p "$h"
  env -i HOME="$h" "$1" plugins --poll-root "$work/empty" 2>&1 | tail -1 | awk '{print $(NF-1)}'
}
median() { sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }

for what in send compile; do
  : >"$work/g" && : >"$work/m"
  for _ in $(seq "$reps"); do
    $what "$glibc" >>"$work/g"
    $what "$musl" >>"$work/m"
  done
  g=$(median <"$work/g") m=$(median <"$work/m")
  echo "$what: glibc $g, musl $m (median of $reps; musl/glibc $(echo "scale=2; $m / $g" | bc))"
done
