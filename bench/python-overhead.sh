#!/usr/bin/env bash
# What watching costs a PyTorch fine-tune (issue 11), measured as a user runs it: the pipeline started
# by the launcher with its defaults (broker, worker, streams, service on this host), the transformer
# example of clients/python/examples with its defaults, and an unwatched copy of the same run (same
# seed, same batches) trained in alternating blocks in the same process, so both copies see the same
# machine. Prints the example's summary, the pipeline's CPU seconds and the service's calibrations of
# each layer (valid ones, probe baseline, ρ); writes them under $DIR.
#
#   bench/python-overhead.sh [DIR] [extra arguments of transformer_canaries.py]
#
# Environment: CURVEWATCH_NICE (the launcher's default applies when unset), PORT_BASE (default 39190),
# KEEP_DATA=1 to keep the broker's data (~1.5 GB) after the run. PIPELINE_CPUS and TRAINER_CPUS (taskset
# lists, e.g. 1 and 0) place the pipeline and the trainer on cores of their own, as when the pipeline runs
# on other hosts; pass --threads N to match torch's threads to the trainer's cores.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${1:-/tmp/curvewatch-overhead}"
shift || true
base="${PORT_BASE:-39190}"
for port in "$base" "$((base + 1))" "$((base + 2))"; do
  # a pipeline left from an earlier run on these ports would join this one (a second worker w0 fences the first)
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "port $port is in use: stop what runs there or set PORT_BASE" >&2; exit 1; fi
done
rm -rf "$dir" && mkdir -p "$dir"
export CURVEWATCH_JAVA_OPTS="${CURVEWATCH_JAVA_OPTS:--Xmx1g}"
cd "$here"
CURVEWATCH_NO_BUILD= ./curvewatch --help >/dev/null  # builds the launcher first, outside the measurement
pids=()
stop() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # the broker's data is ~1.5 GB a run: kept only with KEEP_DATA=1 (summary, logs and CPU figures stay)
  [[ "${KEEP_DATA:-}" == 1 ]] || rm -rf "$dir/broker" "$dir/streams-state" "$dir/snapshots"
}
trap stop EXIT
pin() {  # taskset prefix for a CPU list, nothing when unset
  [[ -n "$1" ]] && echo taskset -c "$1"
  return 0
}
read -ra pipeline_pin <<< "$(pin "${PIPELINE_CPUS:-}")"
read -ra trainer_pin <<< "$(pin "${TRAINER_CPUS:-}")"
start() { local name="$1"; shift; "${pipeline_pin[@]}" ./curvewatch "$@" >"$dir/$name.log" 2>&1 & pids+=("$!"); }
start broker broker --port "$base" --controller-port "$((base + 1))" --data-dir "$dir/broker"
for _ in $(seq 120); do grep -q "bootstrap=" "$dir/broker.log" 2>/dev/null && break; sleep 1; done
bootstrap="127.0.0.1:$base"
start worker worker --bootstrap "$bootstrap" --instance-id w0
start streams streams --bootstrap "$bootstrap" --set "state.dir=$dir/streams-state"
start service service --bootstrap "$bootstrap" --http-port "$((base + 2))" --snapshot-dir "$dir/snapshots"
for _ in $(seq 120); do curl -sf "http://127.0.0.1:$((base + 2))/health" >/dev/null 2>&1 && break; sleep 1; done
cpu() {  # user+system CPU seconds of a process and its children (the broker command runs Kafka in a child JVM)
  local total=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    total="$(awk -v hz="$(getconf CLK_TCK)" -v t="$total" '{print t + ($14 + $15) / hz}' "/proc/$p/stat" 2>/dev/null || echo "$total")"
  done
  echo "$total"
}
declare -A before
for i in "${!pids[@]}"; do before[$i]="$(cpu "${pids[$i]}")"; done
echo "pipeline up (nice ${CURVEWATCH_NICE:-10 by default}, cores ${PIPELINE_CPUS:-all}; trainer's cores ${TRAINER_CPUS:-all}); training $(date -u +%H:%M:%S)"
"${trainer_pin[@]}" /usr/bin/python3 clients/python/examples/transformer_canaries.py --bootstrap "$bootstrap" --run-id overhead \
  --baseline --layers blocks.0.mlp.fc,blocks.1.mlp.fc --summary "$dir/summary.json" "$@" 2>&1 | tee "$dir/trainer.log" | grep -E "step +[0-9]*00 |overhead end|^done" || true
names=(broker worker streams service)
{
  echo "{"
  for i in "${!pids[@]}"; do
    printf '  "%s_cpu_s": %.1f%s\n' "${names[$i]}" "$(echo "$(cpu "${pids[$i]}") - ${before[$i]}" | bc -l)" "$([[ $i -lt 3 ]] && echo ,)"
  done
  echo "}"
} > "$dir/pipeline-cpu.json"
echo "pipeline CPU during training: $(tr -d '\n' < "$dir/pipeline-cpu.json")"
sleep 5  # the last answers on their way through the service
# the service's calibrations of each watched layer: valid ones, their mode's probe baseline, ρ
python3 - "http://127.0.0.1:$((base + 2))" "$dir/summary.json" "$dir/calibrations.json" <<'EOF'
import json, sys, urllib.request
url, summary, out = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3]
report = {}
for layer in summary["layers"]:  # the run and layers the example watched
    def points(name):
        with urllib.request.urlopen(f"{url}/api/runs/{summary['run_id']}/signals?layer={layer}&name={name}",
                                    timeout=30) as r:
            return [p for s in json.load(r)["series"] for p in s["points"]]
    validity, rhos = points("calibration_valid"), points("calibrated_rho")
    valid = [p for p in validity if p["value"] == 1.0]
    report[layer] = {"calibrations": len(validity), "valid": len(valid),
                     # per calibration: its mode's probe baseline (accuracy: degenerate at 0 or 1; else the loss)
                     "probe_baseline": [("accuracy" if p["attributes"].get("accuracy_mode") == 1.0 else "loss",
                                         round(p["attributes"]["baseline"], 3)) for p in valid],
                     "calibrated_rho": sorted(round(p["value"], 3) for p in rhos)}
json.dump(report, open(out, "w"), indent=1)
print("calibrations:", json.dumps(report))
EOF
python3 - "$dir/summary.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
print(json.dumps({k: s.get(k) for k in ("overhead_end_to_end", "overhead_end_to_end_cpu", "overhead", "candidates",
                                        "dead_letters", "watched", "unwatched")}, indent=1)[:4000])
EOF
