"""The study's figures, one per question the paper asks, drawn from the summary alone.

* ``accuracy_vs_budget.png``: accuracy against budget for every strategy;
* ``accuracy_by_bin.png``: the same per oracle difficulty bin;
* ``compute_optimal.png``: compute-optimal (oracle, predicted, charged) against best-of-N
  weighted and majority;
* ``revision_ratios.png``: accuracy against the sequential share of a revision budget, per bin;
* ``exchange.png``: the small model with test-time compute against the larger model, per bin
  and inference/pretraining ratio R.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display
import matplotlib.pyplot as plt

STYLE = {
    "majority": ("tab:gray", "o"),
    "best_of_n_weighted": ("tab:blue", "s"),
    "beam_m4": ("tab:orange", "^"),
    "beam_msqrt": ("tab:red", "v"),
    "lookahead_k1": ("tab:purple", "<"),
    "lookahead_k3": ("tab:pink", ">"),
    "dvts_m4": ("tab:green", "D"),
}


def _series(per_budget: dict) -> tuple[list[int], list[float]]:
    points = sorted((int(b), v) for b, v in per_budget.items() if v is not None)
    return [b for b, _ in points], [v for _, v in points]


def _budget_axis(axis, budgets) -> None:
    axis.set_xscale("log", base=2)
    axis.set_xticks(budgets, [str(b) for b in budgets])
    axis.set_xlabel("budget (generations per question)")
    axis.grid(alpha=0.3)


def _band(axis, intervals: dict | None, color) -> None:
    """The 95% intervals of a curve (budget -> [low, high]) as a shaded band."""
    points = sorted(
        (int(b), bounds)
        for b, bounds in (intervals or {}).items()
        if bounds and bounds[0] == bounds[0]
    )
    if points:
        axis.fill_between(
            [b for b, _ in points],
            [low for _, (low, _) in points],
            [high for _, (_, high) in points],
            color=color,
            alpha=0.12,
            linewidth=0,
        )


def _plot_labels(axis, accuracy: dict, labels, intervals: dict | None = None) -> int:
    """Draws each label's curve (and its interval band); returns how many it drew."""
    drawn = 0
    for label in labels:
        if label not in accuracy or label.startswith("revisions_s"):
            continue
        budgets, values = _series(accuracy[label])
        if not budgets:
            continue
        color, marker = STYLE.get(label, ("black", "."))
        axis.plot(budgets, values, marker=marker, color=color, label=label)
        _band(axis, (intervals or {}).get(label), color)
        drawn += 1
    return drawn


def _legend_below(figure, axis, panels_height: float = 0.85) -> None:
    """One legend under the panels, where it covers no data."""
    handles, labels = axis.get_legend_handles_labels()
    rows = -(-len(labels) // 4)
    figure.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8)
    figure.tight_layout(rect=(0, min(0.3, 0.06 * rows + 0.02), 1, panels_height + 0.1))


def accuracy_vs_budget(summary: dict, path: Path) -> bool:
    figure, axis = plt.subplots(figsize=(7, 4.5))
    if not _plot_labels(
        axis, summary["accuracy"], summary["labels"], summary.get("accuracy_interval")
    ):
        plt.close(figure)
        return False
    _budget_axis(axis, summary["budgets"])
    axis.set_ylabel("accuracy")
    axis.set_title("Accuracy against test-time budget, by strategy")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def accuracy_by_bin(summary: dict, path: Path) -> bool:
    per_label = {
        label: per
        for label, per in summary["accuracy_by_bin"]["oracle"].items()
        if not label.startswith("revisions_s")
    }
    bins = sorted({b for per in per_label.values() for acc in per.values() for b in acc}, key=int)
    if not bins:
        return False
    figure, axes = plt.subplots(1, len(bins), figsize=(3.2 * len(bins), 4.2), sharey=True)
    axes = [axes] if len(bins) == 1 else list(axes)
    for axis, b in zip(axes, bins, strict=True):
        view = {
            label: {budget: acc.get(b) for budget, acc in per.items()}
            for label, per in per_label.items()
        }
        bounds = summary.get("accuracy_by_bin_interval", {}).get("oracle", {})
        bands = {
            label: {budget: acc.get(b) for budget, acc in per.items()}
            for label, per in bounds.items()
        }
        _plot_labels(axis, view, summary["labels"], bands)
        _budget_axis(axis, summary["budgets"])
        axis.set_title(f"difficulty bin {b}" + (" (easiest)" if b == bins[0] else ""))
    axes[0].set_ylabel("accuracy")
    figure.suptitle("Accuracy by oracle difficulty bin")
    _legend_below(figure, axes[0])
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def compute_optimal(summary: dict, path: Path) -> bool:
    if not any(summary["compute_optimal"].values()):
        return False
    figure, axis = plt.subplots(figsize=(7, 4.5))
    _plot_labels(
        axis,
        summary["accuracy"],
        ("majority", "best_of_n_weighted"),
        summary.get("accuracy_interval"),
    )
    styles = {"oracle": "-", "predicted": "--", "predicted_charged": ":"}
    for measure, line in styles.items():
        curve = summary["compute_optimal"].get(measure, {})
        if curve:
            axis.plot(
                *_series(curve),
                line,
                marker="*",
                color="black",
                label=f"compute-optimal ({measure.replace('_', ', ')} bins)",
            )
    # The oracle curve's interval (its selection bootstrapped too); the others overlap it.
    _band(axis, summary.get("compute_optimal_interval", {}).get("oracle"), "black")
    _budget_axis(axis, summary["budgets"])
    axis.set_ylabel("accuracy")
    axis.set_title("Compute-optimal strategy selection against best-of-N")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def revision_ratios(summary: dict, path: Path) -> bool:
    per_label = summary["accuracy_by_bin"]["oracle"]
    revisions = {k: v for k, v in per_label.items() if k.startswith("revisions_s")}
    if not revisions:
        return False
    budget = max(int(b) for per in revisions.values() for b in per)
    lengths = sorted(
        int(k.removeprefix("revisions_s")) for k in revisions if str(budget) in revisions[k]
    )
    bins = sorted({b for per in revisions.values() for acc in per.values() for b in acc}, key=int)
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for b in bins:
        values = [revisions[f"revisions_s{s}"][str(budget)].get(b) for s in lengths]
        axis.plot([s / (budget // s) for s in lengths], values, marker="o", label=f"bin {b}")
    axis.set_xscale("log", base=2)
    axis.set_xlabel(f"sequential : parallel ratio at budget {budget}")
    axis.set_ylabel("accuracy")
    axis.set_title("Revisions: sequential against parallel, by oracle difficulty bin")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def _errors(values: dict, intervals: dict | None, bins) -> list[list[float]] | None:
    """Matplotlib's asymmetric error bars from 95% intervals (None without them)."""
    if not intervals:
        return None
    return [
        [max(0.0, values.get(b, 0) - intervals[b][0]) for b in bins],
        [max(0.0, intervals[b][1] - values.get(b, 0)) for b in bins],
    ]


def exchange(summary: dict, path: Path) -> bool:
    data = summary.get("exchange")
    if not data:
        return False
    points = [p for p in data["points"] if p["budget"] is not None]
    if not points:
        return False
    figure, axes = plt.subplots(
        1, len(points), figsize=(max(7.5, 4 * len(points)), 3.8), sharey=True
    )
    axes = [axes] if len(points) == 1 else list(axes)
    for axis, point in zip(axes, points, strict=True):
        bins = sorted(point["large_by_bin"], key=int)
        positions = range(len(bins))
        axis.bar(
            [x - 0.2 for x in positions],
            [point["small_by_bin"].get(b, 0) for b in bins],
            yerr=_errors(point["small_by_bin"], point.get("small_by_bin_interval"), bins),
            capsize=3,
            width=0.4,
            label=f"small + test-time compute (budget {point['budget']})",
        )
        axis.bar(
            [x + 0.2 for x in positions],
            [point["large_by_bin"][b] for b in bins],
            yerr=_errors(point["large_by_bin"], point.get("large_by_bin_interval"), bins),
            capsize=3,
            width=0.4,
            label=f"{data['size_ratio']:.1f}x larger, greedy",
        )
        axis.set_xticks(list(positions), bins)
        axis.set_xlabel("oracle difficulty bin")
        axis.set_title(f"R = {point['ratio']:g}")
        axis.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("accuracy")
    # Below the panels: bars reach the top of every panel, so a legend inside covers some.
    handles, labels = axes[-1].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=2, fontsize=8)
    figure.suptitle("Test-time compute against a larger model at matched FLOPs")
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


# Each figure's file and the function that draws it (False: nothing to show).
FIGURES = {
    "accuracy_vs_budget.png": accuracy_vs_budget,
    "accuracy_by_bin.png": accuracy_by_bin,
    "compute_optimal.png": compute_optimal,
    "revision_ratios.png": revision_ratios,
    "exchange.png": exchange,
}


def draw_all(summary: dict, directory: Path) -> list[str]:
    """Writes every figure the summary has data for; returns their file names (a figure
    with nothing to show is skipped, and an old copy of it removed)."""
    written = []
    for name, draw in FIGURES.items():
        if draw(summary, directory / name):
            written.append(name)
        else:
            (directory / name).unlink(missing_ok=True)
    return written
