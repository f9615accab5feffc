#!/bin/sh
# Quick start: install dependencies, build, start moed on its embedded synthetic
# model on a private socket, query it with moectl, then stop it.
set -e
cd "$(dirname "$0")/.."
tools/deps.sh
tools/build.sh
dir=$(mktemp -d)
sock="$dir/moed.sock"
./moed --socket "$sock" --plugin-dir plugins/.libs --state-dir "$dir" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
i=0
until ./moectl -s "$sock" status >/dev/null 2>&1; do
	i=$((i + 1)); [ $i -lt 100 ] || { echo "moed did not start"; exit 1; }; sleep 0.1
done
set -x
./moectl -s "$sock" status
./moectl -s "$sock" model
./moectl -s "$sock" route --layer 1 --random 2
./moectl -s "$sock" infer --layer 1 --random 4
