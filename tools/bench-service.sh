#!/usr/bin/env bash
# The service suite: the Tmem service beside redis-server (Debian package; Unix socket,
# persistence off), same pages, connections and pipelining depth. Not a test: CI never runs it.
#   tools/bench-service.sh [CORPUS] [JSON]     (defaults: ../shared/corpus/anon.pages when present, else the
#                                               benchmark's own fallback, pages of the .NET runtime; service.tmem-bench.json)
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=()
if [ -n "${1:-}" ]; then corpus=(--corpus "$1")
elif [ -f ../shared/corpus/anon.pages ]; then corpus=(--corpus ../shared/corpus/anon.pages)
fi
json=${2:-service.tmem-bench.json}
if ! command -v redis-server >/dev/null; then
  echo "installing redis-server (Debian package)" >&2
  if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq redis-server >/dev/null; fi
fi
redis-server --version
# The suite starts both servers itself (each a child process on a socket under /tmp) and stops them.
dotnet run -c Release --project tools/Tmem.Bench -- service "${corpus[@]}" --json "$json"
