"""Reports of the transformer experiments: the result JSON, a markdown summary beside it and PNG
figures (the alarm over steps with the injection marked, ROC curves, before/after), like the
trainer's experiment reports. matplotlib is Debian's python3-matplotlib (headless Agg backend).
"""
import json
import math
from pathlib import Path

import numpy as np


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return ", ".join(_fmt(x) for x in v)
    return str(v)


def finite(x):
    """x with numpy scalars as Python numbers and every non-finite float as None: standard JSON
    (an unlimited answer budget is inf; Java's and most other JSON readers refuse Infinity)."""
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    if isinstance(x, np.ndarray):
        return finite(x.tolist())
    if isinstance(x, (np.integer, np.bool_)):
        return x.item()
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


def write(result, path):
    """Writes result (a dict) to path (.json), the markdown report (.md) and the PNG figures
    (<stem>-signal.png, -roc.png, -edit.png); returns the paths written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(finite(result), indent=1, allow_nan=False))
    stem = path.with_suffix("")
    pngs = {"signal": Path(f"{stem}-signal.png"), "roc": Path(f"{stem}-roc.png"), "edit": Path(f"{stem}-edit.png")}
    signal_plot(result, pngs["signal"])
    if "error" in result["injected"]["final"]:  # no edit: nothing to draw a ROC or a before/after of
        del pngs["roc"], pngs["edit"]
    else:
        roc_plot(result, pngs["roc"])
        edit_plot(result, pngs["edit"])
    md = path.with_suffix(".md")
    md.write_text(markdown(result, {k: p.name for k, p in pngs.items()}))
    return [path, md, *pngs.values()]


def signal_plot(result, out):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4))
    inject = result["injected"]["injection_step"]
    threshold = result.get("alarm_threshold", 3.0)
    for run, style in (("injected", "-"), ("clean", "--")):
        layers = sorted({l for r in result[run]["refreshes"] for l in r["layers"]})
        for layer in layers:
            # the layer's own refreshes only (live, each layer is calibrated at its own steps)
            points = [(r["step"], r["layers"][layer]["surprise"]) for r in result[run]["refreshes"] if r["layers"].get(layer)]
            ax.plot([p[0] for p in points], [p[1] for p in points], style, marker="o", ms=3, label=f"{run}: {layer}")
    ax.axhline(threshold, color="red", lw=0.8, label=f"alert threshold ({threshold:g})")
    if inject is not None:
        ax.axvline(inject, color="gray", lw=1, ls=":", label=f"injection (step {inject})")
    alert = result["injected"]["first_alert"]
    if alert is not None:
        ax.axvline(alert, color="red", lw=1, ls=":", label=f"first alert (step {alert})")
    ax.set_xlabel("training step")
    ax.set_ylabel("memorization_outliers (−log10 p)")
    ax.set_title(f"{result['experiment']} seed {result['seed']}: the run-level alarm")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def roc_plot(result, out):
    plt = _plt()
    d = result["injected"]["final"].get("detection") or {"roc": {}}
    panels = [(k, v) for k, v in (("per example", ("example_score", "example_loss")),
                                  ("per token (secret characters)", ("token_score", "token_loss"))) if v[0] in d["roc"]]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4), squeeze=False)
    for ax, (title, (score, loss)) in zip(axes[0], panels):
        for key, label in ((score, "memorization score"), (loss, "loss baseline")):
            fpr, tpr = d["roc"][key]
            ax.plot(fpr, tpr, label=label)
        ax.plot([0, 1], [0, 1], color="gray", lw=0.5)
        ax.set_title(title)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def edit_plot(result, out):
    plt = _plt()
    bars = result["injected"]["final"].get("before_after", {})
    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = list(bars)
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [bars[n][0] for n in names], width=0.4, label="before")
    ax.bar([x + 0.2 for x in xs], [bars[n][1] for n in names], width=0.4, label="after the calibrated edit")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names, fontsize=8)
    ax.legend(fontsize=8)
    ax.set_title("the calibrated edit (layers and ρ from probes only)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def markdown(result, pngs):
    inj, clean = result["injected"], result["clean"]
    lines = [f"# {result['experiment']} — seed {result['seed']}, size {result['size']}", ""]
    if result.get("command"):
        lines += [f"Command: `{result['command']}`", ""]
    lines += ["## Targets", "", "| target | value | met |", "|---|---|---|"]
    for name, t in result["targets"].items():
        lines.append(f"| {name} | {_fmt(t['value'])} | {'yes' if t['pass'] else '**no**'} |")
    lines += ["", f"![alarm]({pngs['signal']})", "", "## The alarm at every refresh", "",
              "| run | step | layer | ρ | over every probe | of them memorized | expected | −log10 p |", "|---|---|---|---|---|---|---|---|"]
    for name, run in (("injected", inj), ("clean", clean)):
        for r in run["refreshes"]:
            for layer, e in r["layers"].items():
                if e is None:
                    lines.append(f"| {name} | {r['step']} | {layer} | 1 (no edit) | | | | |")
                    continue
                mem = e.get("canaries_over", e.get("flipped_over", ""))
                lines.append(f"| {name} | {r['step']} | {layer} | {e['rho']:.4f} | {e['count']} | {mem} | {e['expected']:.2f} | "
                             f"{e['surprise']:.2f} |")
    for name, run in (("injected", inj), ("clean", clean)):
        if run.get("alerts"):
            lines += ["", f"Alerts of the {name} run: " + "; ".join(
                f"step {a['step']} {a['rule']} {a['layer']} {a['status']}" for a in run["alerts"])]
    f = inj["final"]
    if "error" in f:
        return "\n".join(lines + ["", f"The edit: {f['error']}", ""])
    lines += ["", "## The calibrated edit", "", f"Per-layer ρ (probes only): {_fmt(list(f['rhos'].items()))}", "",
              "| | before | after |", "|---|---|---|"]
    for k, (b, a) in f["before_after"].items():
        lines.append(f"| {k} | {b:.4g} | {a:.4g} |")
    lines += ["", f"![edit]({pngs['edit']})", "", "## Detection (injected run, at the end)", ""]
    d = f.get("detection") or {}
    if f.get("service_detection"):
        lines.append("- the service's own PEAK scores at its latest calibration, AUROC per layer: " + ", ".join(
            f"{l} {v['auroc']:.3f} ({v['positives']} of {v['examples']}, step {v['step']})"
            for l, v in f["service_detection"].items() if v))
    for k, v in d.items():
        if k not in ("roc", "example_scores"):
            lines.append(f"- {k}: {_fmt(v) if not isinstance(v, dict) else json.dumps(v, default=float)}")
    lines += ["", f"![roc]({pngs['roc']})", ""]
    return "\n".join(lines)


def seeds_table(results):
    """A markdown table of several seeds' results (for the README)."""
    if not results:
        return ""
    keys = list(dict.fromkeys(k for r in results for k in r["targets"]))  # a seed whose edit failed has fewer
    lines = ["| seed | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for r in results:
        cells = []
        for k in keys:
            t = r["targets"].get(k)
            cells.append("–" if t is None else f"{_fmt(t['value'])}{'' if t['pass'] else ' ✗'}")
        lines.append(f"| {r['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

