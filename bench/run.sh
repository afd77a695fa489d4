#!/usr/bin/env bash
# One command for every benchmark, with the peers side by side: writes docs/benchmarks/README.md
# (tables) and its SVG charts. Installs what it compares against — the zero-work hop (Debian's
# nginx-light), LiteLLM's proxy (PyPI litellm[proxy]) and BullMQ (npm) — and starts the local
# services (tests/services.sh).
#   bash bench/run.sh                      # 5 s per latency step
#   PODS_BENCH_SECONDS=30 bash bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/benchmarks

bash tests/services.sh
command -v nginx >/dev/null || { echo "installing nginx-light (the zero-work hop)"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; }
command -v litellm >/dev/null || { echo "installing litellm[proxy]"; python3 -m pip install -q 'litellm[proxy]'; }
(cd bench/bullmq && npm ci --no-audit --no-fund --silent)

# Absolute: cargo runs a bench from its package's folder.
PODS_BENCH_REPORT="$PWD/$out" cargo bench -p pods --bench suite -- peers
{
  echo
  echo "## Pods' own benchmarks (same run)"
  for b in plugins hotload websocket queue; do
    echo
    cargo bench -q -p pods --bench suite -- "$b" 2>/dev/null | grep -E '^(#|\||$)' | sed 's/^# /### /'
  done
  echo
  echo "_Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $(date -u +%Y-%m-%d)._"
} >> "$out/README.md"
echo "wrote $out/README.md"
