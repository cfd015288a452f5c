#!/usr/bin/env bash
# Packs tmem, tmem-admin and tmem-server as .NET tools into a local feed, installs them from it
# as a user would (dotnet tool install --add-source), and runs them: each --version, then the
# server on a socket of its own, `tmem ping` and `tmem stats` against it, and a clean stop.
# Run by .ci/run after the tests; needs only the .NET SDK.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/tmem-tools-XXXXXX)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
feed="$work/feed"
tools="$work/tools"
# A version of its own (0.1.0-check.TIME), so that no package cached from an earlier run is installed instead.
suffix="check.$(date +%s)"
for project in tools/Tmem.Cli tools/Tmem.Admin hosting/Tmem.Service; do
  dotnet pack "$project" -c Release -o "$feed" --version-suffix "$suffix" -v q --nologo
done
# Only the local feed: the packages must come from it.
cat >"$work/nuget.config" <<CONFIG
<?xml version="1.0" encoding="utf-8"?>
<configuration><packageSources><clear /><add key="local" value="$feed" /></packageSources></configuration>
CONFIG
for package in Tmem.Cli Tmem.Admin Tmem.Server; do
  dotnet tool install "$package" --tool-path "$tools" --configfile "$work/nuget.config" --prerelease >/dev/null
done
export PATH="$tools:$PATH"
tmem --version
tmem-admin --version
tmem-server --version
cd "$work"
tmem-server --Tmem:DataDirectory="$work/data" --Tmem:Service:SocketPath="$work/tmem.sock" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  [ -S "$work/tmem.sock" ] && grep -q "Listening on Unix socket" "$work/server.log" && break
  sleep 0.1
done
tmem --socket "$work/tmem.sock" ping
tmem --socket "$work/tmem.sock" stats --section server
kill -TERM "$server_pid"
wait "$server_pid"
server_pid=
tmem-admin inspect "$work/data" >/dev/null
echo "tools: tmem, tmem-admin and tmem-server install from a local feed and run"
