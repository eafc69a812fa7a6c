"""Training curves as a PNG: the loss terms, the learning rate and the validation PSNR-Y over the steps.

Drawn from ``metrics.jsonl`` (so they can be redrawn for any run) with matplotlib's Agg backend,
and refreshed by the engine at each validation and at the end of the run.
"""

from __future__ import annotations

from pathlib import Path

from .log import TRAIN, VAL, read_metrics

_NOT_TERMS = {"kind", "step", "stage", "stage_step", "time", "timestamp", "lr", "steps_per_s", "hr_mpx_per_s"}
_LOGITS = {"d_real", "d_fake"}  # mean discriminator logits: not losses, and often negative


def draw_curves(metrics: Path, out: Path) -> Path | None:
    """Draw ``metrics`` into ``out`` (written through a temporary file); None when nothing is logged yet."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics)
    train = [r for r in records if r["kind"] == TRAIN]
    val = [r for r in records if r["kind"] == VAL]
    if not train:
        return None
    panels = 3 if val else 2  # validation PSNR only when the run validates
    figure, axes = plt.subplots(panels, 1, figsize=(8, 3 * panels), sharex=True)
    losses, lr, psnr = (*axes, None) if not val else axes
    terms = sorted({name for r in train for name in r if name not in _NOT_TERMS | _LOGITS})
    for name in terms:
        points = [(r["step"], r[name]) for r in train if name in r and r[name] is not None and r[name] > 0]
        if points:
            losses.plot(*zip(*points), label=name, linewidth=1)
    losses.set_yscale("log")
    losses.set_ylabel("loss (mean per logged window)")
    losses.legend(fontsize="small", ncol=3)
    rates = [(r["step"], r["lr"]) for r in train if r["lr"] > 0]  # a log scale shows no 0
    if rates:
        lr.plot(*zip(*rates), color="tab:purple")
    lr.set_ylabel("generator learning rate")
    lr.set_yscale("log")
    if psnr is not None:
        psnr.plot([r["step"] for r in val], [r["psnr_y"] for r in val], marker="o", color="tab:green")
        psnr.set_ylabel("validation PSNR-Y (dB)")
    axes[-1].set_xlabel("step")
    for axis in axes:
        for stage_start in _stage_starts(train):
            axis.axvline(stage_start, color="grey", linestyle=":", linewidth=1)
        axis.grid(alpha=0.3)
    figure.suptitle(f"{metrics.parent.name}: stages {', '.join(dict.fromkeys(r['stage'] for r in train))}")
    figure.tight_layout()
    partial = out.with_name(out.stem + ".partial.png")
    figure.savefig(partial, dpi=100)
    plt.close(figure)
    partial.replace(out)
    return out


def _stage_starts(train: list[dict]) -> list[int]:
    """The first logged step of every stage after the first."""
    starts, previous = [], train[0]["stage"]
    for record in train:
        if record["stage"] != previous:
            starts.append(record["step"] - record["stage_step"])
            previous = record["stage"]
    return starts
