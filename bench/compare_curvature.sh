#!/usr/bin/env bash
# Curvature speed against torch/scipy/numpy on the same machine in the same run (DESIGN §6).
#   bench/compare_curvature.sh          full set (~15 min on 2 cores)
#   bench/compare_curvature.sh quick    reduced set (~5 min)
# Prints a markdown table; JMH JSON and the table land in bench/target/compare/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/target/compare
mkdir -p "$out"
mvn -B -o -q -pl bench -am package -DskipTests -DskipITs

tokens=512,4096; dims=512,1024,2048,4096; eigh=1024,2048,4096; edit=4096
if [[ "${1:-}" == quick ]]; then
  tokens=4096; dims=1024,4096; eigh=1024,2048; edit=4096
fi

java -jar bench/target/benchmarks.jar \
  'AccumulationBenchmark|EighBenchmark|SelectionBenchmark|EditBenchmark' \
  -p tokens="$tokens" -p dim="$dims" -p n="$eigh" -p d="$edit" \
  -rf json -rff "$out/jmh.json" | tee "$out/jmh.log" | grep -E '^(Benchmark|[A-Z][a-zA-Z]+Benchmark\.)' || true

/usr/bin/python3 bench/compare_curvature.py "$out/jmh.json" "$out/table.md"
