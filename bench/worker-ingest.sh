#!/usr/bin/env bash
# Ingest benchmark of the workers module (DESIGN.md §6 "ingest"): on one fresh local Kafka 4.3.1
# broker, in one run: kafka-producer-perf-test (org.apache.kafka.tools.ProducerPerformance) with
# the capture record size, then captures through producer -> worker -> committed checkpoint at
# full speed and paced at 0.7x the perf-test rate (lag), then a worker alone on captures produced
# beforehand, then accumulation GFLOP/s inside the worker vs FactorAccumulator alone.
#
#   bench/worker-ingest.sh [tokens=512] [din=256] [dout=256] [records=1000] [layers=4] [precision=FLOAT64]
#
# Writes the result table to bench/worker-ingest-results.md (appends one table per run).
set -euo pipefail
cd "$(dirname "$0")/.."
mvn -B -q -pl workers -am install -DskipTests >/dev/null
mvn -B -q -pl workers test-compile >/dev/null
mvn -B -q -pl workers dependency:build-classpath -Dmdep.includeScope=test -Dmdep.outputFile="$PWD/workers/target/bench-classpath.txt" >/dev/null
# private copies: other builds re-installing snapshot jars into ~/.m2 mid-run must not swap classes under us
LIB=workers/target/bench-lib
rm -rf "$LIB" && mkdir -p "$LIB"
CP="workers/target/test-classes:workers/target/classes"
IFS=: read -ra JARS < workers/target/bench-classpath.txt || true  # no trailing newline
for j in "${JARS[@]}"; do
  dest="$LIB/$(basename "$(dirname "$(dirname "$j")")")-$(basename "$j")"
  cp "$j" "$dest"
  CP="$CP:$dest"
done
OUT=$(mktemp)
java -Xmx3g -Dorg.apache.avro.SERIALIZABLE_PACKAGES=dev.curvewatch.avro \
  -Dorg.slf4j.simpleLogger.log.org.apache.kafka=error \
  -cp "$CP" dev.curvewatch.workers.bench.WorkerIngestBench out="$OUT" "$@"
{
  echo
  echo "### $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores: ${OPENBLAS_NUM_THREADS:+OPENBLAS_NUM_THREADS=$OPENBLAS_NUM_THREADS }bench/worker-ingest.sh $*"
  echo
  cat "$OUT"
} >> bench/worker-ingest-results.md
rm -f "$OUT"
