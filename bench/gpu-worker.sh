#!/usr/bin/env bash
# Proves and times the workers' GPU path on a machine with an NVIDIA GPU (CUDA 11.6-capable driver).
# NOT run in CI and never run in the session that wrote it (no GPU there): it is the recipe.
#
#   bench/gpu-worker.sh [tokens=512] [din=1024] [dout=1024] [records=400] [layers=4] [precision=FLOAT32]
#
# 1. builds curvature-nd4j with -Dcuda (nd4j-cuda-11.6 + bytedeco cuda redist, ~2.3 GB download);
# 2. runs the shared BlasBackendContract suite against Nd4jBlasBackend on CUDA (fails if ND4J
#    did not pick its CUDA backend);
# 3. runs the ingest benchmark (bench/worker-ingest.sh's WorkerIngestBench) with the CUDA backend
#    on the class path: Nd4jBlasBackend reports priority 100 on CUDA, so BlasBackends.best() and
#    every worker FactorAccumulator use it; the table's "BLAS backend" column must say nd4j-cuda.
# Compare its accumulation GFLOP/s with the CPU row of bench/worker-ingest-results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi >/dev/null || { echo "no NVIDIA GPU/driver here" >&2; exit 2; }
mvn -B -q -Dcuda -pl curvature-nd4j -am install -DskipTests
mvn -B -Dcuda -pl curvature-nd4j surefire:test -Dtest=Nd4jBlasBackendTest | tee /tmp/gpu-contract.log
grep -q "ND4J backend: nd4j-cuda" curvature-nd4j/target/surefire-reports/*-output.txt \
  || { echo "ND4J did not run on CUDA (see /tmp/gpu-contract.log)" >&2; exit 1; }
mvn -B -q -pl workers -am install -DskipTests
mvn -B -q -pl workers test-compile
mvn -B -q -pl workers dependency:build-classpath -Dmdep.includeScope=test -Dmdep.outputFile="$PWD/workers/target/bench-classpath.txt"
mvn -B -q -Dcuda -pl curvature-nd4j dependency:build-classpath -Dmdep.includeScope=runtime -Dmdep.outputFile="$PWD/curvature-nd4j/target/cuda-classpath.txt"
CP="workers/target/test-classes:workers/target/classes:curvature-nd4j/target/classes:$(cat curvature-nd4j/target/cuda-classpath.txt):$(cat workers/target/bench-classpath.txt)"
ARGS=(tokens=512 din=1024 dout=1024 records=400 layers=4 precision=FLOAT32 "$@")
OUT=$(mktemp)
java -Xmx8g -Dorg.apache.avro.SERIALIZABLE_PACKAGES=dev.curvewatch.avro -Dorg.slf4j.simpleLogger.log.org.apache.kafka=error \
  -cp "$CP" dev.curvewatch.workers.bench.WorkerIngestBench out="$OUT" "${ARGS[@]}"
grep -q "nd4j-cuda" "$OUT" || { echo "the worker did not use the CUDA backend" >&2; exit 1; }
{ echo; echo "### $(date -u +%Y-%m-%dT%H:%MZ) GPU $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1): bench/gpu-worker.sh ${ARGS[*]}"; echo; cat "$OUT"; } >> bench/worker-ingest-results.md
rm -f "$OUT"
