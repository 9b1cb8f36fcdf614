"""The paper's two experiments on real transformers and real text (issue 12), with reports.

    /usr/bin/python3 clients/python/examples/transformer_experiments.py canaries --seeds 1 2 3 --out results/
    /usr/bin/python3 clients/python/examples/transformer_experiments.py noisy-labels --seeds 1 2 3 --out results/
    ... --size ci                         # the reduced size CI asserts
    ... --set steps=240 canaries=12       # any field of the experiment's config (JSON values; lists as JSON)
    ... --live                            # through a live pipeline this command starts (./curvewatch broker,
                                          # worker, streams, service; logs under <out>/pipeline)
    ... --live --bootstrap HOST:PORT --service http://HOST:PORT --token TOKEN   # through a running one, whose
                                          # service has memorization/pipeline/service.properties

canaries: a causal transformer LM (examples/textlm) on Debian's fortunes quotes, canaries injected
mid-run. noisy-labels: all-MiniLM-L6-v2 (its ONNX weights from the Maven Central jar in the local
Maven repository, -Dmaven.repo.local of $MAVEN_OPTS or ~/.m2) classifying fortunes categories, 10%
of the labels flipped mid-run. Each seed runs the injected run and a clean control of the same
length and writes <out>/<experiment>-<size>-seed<N>.json, .md and PNG figures; several seeds also
write <out>/<experiment>-<size>-seeds.md. The exit status is 1 when a target is missed.
"""
import argparse
import contextlib
import json
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from memorization import canaries, noisy_labels, report  # noqa: E402
from memorization.alarm import ALARM_HOLD, ALARM_THRESHOLD  # noqa: E402

EXPERIMENTS = {"canaries": canaries, "noisy-labels": noisy_labels}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", choices=sorted(EXPERIMENTS))
    p.add_argument("--size", choices=("full", "ci"), default="full")
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--out", type=Path, default=Path("results"))
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--live", action="store_true", help="through the broker, worker, streams and service")
    p.add_argument("--bootstrap", help="--live: Kafka bootstrap servers of the pipeline")
    p.add_argument("--service", help="--live: the service's base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--token", default=None, help="--live: bearer token for the edit request")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override fields of the size's config, e.g. steps=240 'edit_layers=[\"blocks.1.mlp.fc\"]'")
    p.add_argument("--run-prefix", default="science", help="--live: run ids are <prefix>-<experiment>-<size>-<seed>-injected|clean")
    return p.parse_args(argv)


def overrides_of(pairs):
    """{field: value} of KEY=VALUE pairs, the value read as JSON when it is JSON (else a string)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set wants KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main(argv=None):
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    module = EXPERIMENTS[args.experiment]
    command = "/usr/bin/python3 clients/python/examples/transformer_experiments.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    overrides = overrides_of(args.set)
    results, missed = [], False
    name = f"{'transformer-canaries' if args.experiment == 'canaries' else 'minilm-noisy-labels'}-{args.size}" + \
        ("-live" if args.live else "")
    with contextlib.ExitStack() as stack:
        if args.live and not args.bootstrap:
            from memorization.pipeline import Pipeline
            p = stack.enter_context(Pipeline(args.out / "pipeline"))
            args.bootstrap, args.service, args.token = p.bootstrap, p.url, p.token
        elif args.live and not args.service:
            raise SystemExit("--live --bootstrap needs --service (and --token)")
        for seed in args.seeds:
            started = time.time()
            if args.live:
                from memorization import live
                result = live.experiment(args.experiment, args.size, seed, args.bootstrap, args.service, args.token,
                                         f"{args.run_prefix}-{args.experiment}-{args.size}-{seed}", **overrides)
            else:
                result = module.experiment(args.size, seed, **overrides)
            result.update({"command": command, "seconds": round(time.time() - started, 1),
                           "mode": "live" if args.live else "offline", "alarm_threshold": ALARM_THRESHOLD,
                           "alarm_hold": ALARM_HOLD})
            paths = report.write(result, args.out / f"{name}-seed{seed}.json")
            results.append(result)
            failed = [k for k, t in result["targets"].items() if not t["pass"]]
            missed |= bool(failed)
            print(f"seed {seed}: {len(result['targets']) - len(failed)}/{len(result['targets'])} targets met"
                  + (f"; missed: {', '.join(failed)}" if failed else "") + f" ({result['seconds']:.0f} s); wrote {paths[0]}",
                  flush=True)
    if len(results) > 1:
        (args.out / f"{name}-seeds.md").write_text(f"Command: `{command}`\n\n" + report.seeds_table(results) + "\n")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
