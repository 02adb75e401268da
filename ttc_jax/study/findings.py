"""The paper's findings, each read off a study's summary with its effect, its paired 95%
interval and a verdict from that interval (`ttc_jax.study.intervals.side`):

* "reproduces": the interval lies on the paper's side of zero;
* "does not reproduce": it lies on the other side;
* "inconclusive": it holds zero (the study is too small to tell);
* "partly reproduces": a finding of several parts, some reproducing and none contradicted;
* "not measurable here": the study lacks what the finding compares (budgets, bins,
  strategies), or every accuracy is 0% or every one 100%.

Nothing is tuned to make a finding hold: the effects are fixed by the finding's wording before
any study runs (``summary["effects"]``, `ttc_jax.study.analysis.effects`).
"""

from __future__ import annotations

import math

from ttc_jax.study.analysis import BASELINE, PAPER_FACTOR, effect_name
from ttc_jax.study.intervals import side

REPRODUCES, NOT, INCONCLUSIVE, PARTLY = (
    "reproduces",
    "does not reproduce",
    "inconclusive",
    "partly reproduces",
)


def pct(value) -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{100 * value:.1f}%"
    )


def listed(items) -> str:
    """English for a list: "1", "1 and 2", "1, 2 and 3"."""
    items = [str(x) for x in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def bins_text(bins) -> str:
    return "no bin" if not bins else ("bin " if len(bins) == 1 else "bins ") + listed(bins)


def points(found: dict) -> str:
    """An effect in accuracy points with its interval: "+4.0 points [-10.0, +18.0]"."""
    low, high = found["interval"]
    return f"{100 * found['effect']:+.1f} points [{100 * low:+.1f}, {100 * high:+.1f}]"


def combined(verdicts: list[str]) -> str:
    """One verdict for a finding of several parts."""
    if verdicts and all(v == REPRODUCES for v in verdicts):
        return REPRODUCES
    if REPRODUCES in verdicts:
        return PARTLY
    if NOT in verdicts:
        return NOT
    return INCONCLUSIVE


def _unmeasurable(finding: str, why: str) -> str:
    return f"{finding}: not measurable here ({why})."


def _degenerate(summary: dict) -> str | None:
    """Why no accuracy can be compared, when every one is 0% or every one is 100%."""
    values = {v for per in summary["accuracy"].values() for v in per.values() if v == v}
    if not values:
        return "no strategy has results"
    if values <= {0.0} or values <= {1.0}:
        return f"every strategy's accuracy is {pct(values.pop())} at every budget"
    return None


def _judged(summary: dict, parts: list[tuple[str, str, int]]) -> tuple[str, str]:
    """The combined verdict and the detail of ``parts`` (label, effect key, paper's sign)."""
    effects = summary["effects"]
    verdicts, details = [], []
    for label, key, sign in parts:
        verdict = side(effects[key], sign)
        verdicts.append(verdict)
        details.append(f"{label}: {points(effects[key])}, {verdict}")
    return combined(verdicts), "; ".join(details)


def findings(summary: dict) -> list[str]:
    """Plain statements, one per finding of the paper, each with its verdict."""
    why = _degenerate(summary)
    if why is not None:
        return [f"No finding is measurable here: {why} ({summary['questions']} questions)."]
    out = []
    effects = summary["effects"]
    budgets = summary["budgets"]
    for measure in ("oracle", "predicted"):
        finding = (
            f"Compute-optimal ({measure} bins) matches or beats best-of-N weighted at every budget"
        )
        parts = [
            (f"B={b}", key, +1)
            for b in budgets
            if (key := effect_name(f"compute_optimal_{measure}@{b}", f"{BASELINE}@{b}")) in effects
        ]
        if not parts:
            out.append(_unmeasurable(finding, "best-of-N weighted was not run"))
            continue
        verdict, detail = _judged(summary, parts)
        out.append(f"{finding}: {verdict} ({detail}).")
    finding = (
        f"Compute-optimal (oracle bins) at budget B beats best-of-N weighted at {PAPER_FACTOR}B"
    )
    parts = [
        (f"B={b} vs {PAPER_FACTOR * b}", key, +1)
        for b in budgets
        if (key := effect_name(f"compute_optimal_oracle@{b}", f"{BASELINE}@{PAPER_FACTOR * b}"))
        in effects
    ]
    if parts:
        verdict, detail = _judged(summary, parts)
        out.append(f"{finding}: {verdict} ({detail}).")
    else:
        out.append(
            _unmeasurable(finding, f"needs budgets B and {PAPER_FACTOR}B with best-of-N weighted")
        )
    out.extend(_beam_findings(summary))
    out.extend(_revision_findings(summary))
    out.extend(_exchange_findings(summary))
    return out


def _bins_of(effects: dict, key: str) -> list[int]:
    """The bins with a per-bin effect of ``key``."""
    return sorted(int(k.rsplit("bin ", 1)[1]) for k in effects if k.startswith(key + ", bin "))


def _pair_budgets(summary: dict, first: str, second: str) -> list[int]:
    return [
        b
        for b in summary["budgets"]
        if effect_name(f"{first}@{b}", f"{second}@{b}") in summary["effects"]
    ]


def _beam_findings(summary: dict) -> list[str]:
    shape = (
        "Beam search (M = sqrt N) beats best-of-N weighted at low budgets and falls behind at "
        "high ones"
    )
    by_bin = (
        "On the easiest bin beam search over-optimises (worse than best-of-N) at high budget, "
        "and wins on medium/hard bins"
    )
    fitted = [b for b in _pair_budgets(summary, "beam_msqrt", BASELINE) if b > 1]
    if len(fitted) < 2:
        why = "needs beam_msqrt and best_of_n_weighted at two budgets above 1; this study has " + (
            f"only B={fitted[0]}" if fitted else "none"
        )
        lines = [_unmeasurable(shape, why), _unmeasurable(by_bin, why)]
    else:
        low, high = fitted[0], fitted[-1]

        def key(b, x=None):
            return effect_name(f"beam_msqrt@{b}", f"{BASELINE}@{b}", x)

        verdict, detail = _judged(
            summary, [(f"B={low}", key(low), +1), (f"B={high}", key(high), -1)]
        )
        lines = [f"{shape}: {verdict} ({detail})."]
        bins = sorted(
            {
                int(k.rsplit("bin ", 1)[1])
                for k in summary["effects"]
                if k.startswith(key(low) + ", bin")
            }
        )
        if len(bins) < 2:
            lines.append(_unmeasurable(by_bin, f"needs two difficulty bins, has {len(bins)}"))
        else:
            hard = bins[1:-1] or bins[-1:]
            parts = [(f"bin {bins[0]} at B={high}", key(high, bins[0]), -1)] + [
                (f"bin {x} at B={low}", key(low, x), +1) for x in hard
            ]
            verdict, detail = _judged(summary, parts)
            lines.append(f"{by_bin}: {verdict} ({detail}).")
    finding = "Lookahead is worse than beam search without it at equal generation budget"
    parts = [
        (f"{label} at B={b}", effect_name(f"{label}@{b}", f"beam_msqrt@{b}"), -1)
        for label in ("lookahead_k1", "lookahead_k3")
        for b in _pair_budgets(summary, label, "beam_msqrt")
    ]
    if parts:
        verdict, detail = _judged(summary, parts)
        lines.append(f"{finding}: {verdict} ({detail}).")
    else:
        lines.append(_unmeasurable(finding, "needs lookahead and beam_msqrt at one budget"))
    return lines


def _revision_findings(summary: dict) -> list[str]:
    labels = [x for x in summary["labels"] if x.startswith("revisions_s")]
    if not labels:
        return []
    finding = (
        "Easy questions do best fully sequential and harder ones at an intermediate "
        "sequential:parallel ratio"
    )
    effects = summary["effects"]
    for b in sorted(summary["budgets"], reverse=True):
        full, middle = f"revisions_s{b}@{b}", None
        intermediate = [
            k.split(" - ")[0]
            for k in effects
            if k.endswith(f" - revisions_s1@{b}") and k.split(" - ")[0] != full
        ]
        if effect_name(full, f"revisions_s1@{b}") in effects and intermediate:
            middle = intermediate[0]
            break
    else:
        return [
            _unmeasurable(
                finding, "needs revisions at a budget with an intermediate ratio (B >= 4)"
            )
        ]
    bins = _bins_of(effects, effect_name(full, f"revisions_s1@{b}"))
    if len(bins) < 2:
        return [_unmeasurable(finding, f"needs two difficulty bins, has {len(bins)}")]
    parts = [
        (f"bin {bins[0]}, S={b} vs S=1", effect_name(full, f"revisions_s1@{b}", bins[0]), +1)
    ] + [
        (
            f"bin {x}, {middle.split('@')[0].replace('revisions_s', 'S=')} vs S=1",
            effect_name(middle, f"revisions_s1@{b}", x),
            +1,
        )
        for x in bins[1:]
    ]
    verdict, detail = _judged(summary, parts)
    return [f"{finding}: {verdict} (at B={b}; {detail})."]


def _exchange_findings(summary: dict) -> list[str]:
    data = summary.get("exchange")
    if not data:
        return ["FLOPs exchange: not run (no larger policy)."]
    lines = []
    for point in data["points"]:
        if "effect" not in point:
            lines.append(
                f"FLOPs exchange at R={point['ratio']:g}: not measured (the matched compute is "
                f"{point['multiplier']:.1f} samples; it needs a budget between "
                f"{point['multiplier'] / 2:.1f} and {point['multiplier']:.1f} in the grid)."
            )
            continue
        by_bin = point["effect_by_bin"]
        lines.append(
            f"FLOPs exchange at R={point['ratio']:g} (matched {point['multiplier']:.1f} "
            f"samples, budget {point['budget']}): the small model with test-time compute "
            f"{pct(point['small_overall'])} against the {data['size_ratio']:.1f}x model's "
            f"greedy {pct(point['large_overall'])}, {points(point['effect'])}; by bin: "
            + ", ".join(f"bin {x} {points(by_bin[x])}" for x in sorted(by_bin, key=int))
            + "."
        )
    finding = "Test-time compute beats the larger model on easy questions at low R"
    low_r = data["points"][0]
    if "effect" not in low_r:
        lines.append(_unmeasurable(finding, f"R={low_r['ratio']:g} was not measured"))
    else:
        easiest = sorted(low_r["effect_by_bin"], key=int)[0]
        found = low_r["effect_by_bin"][easiest]
        lines.append(
            f"{finding}: {side(found, +1)} (R={low_r['ratio']:g}, bin {easiest}: {points(found)})."
        )
    return lines


def caveats(summary: dict) -> list[str]:
    """Warnings about sizes the per-bin figures rest on."""
    counts = summary["difficulty"]["bin_counts"]["oracle"]
    num_bins = summary["difficulty"]["bins"]
    empty = [b for b in range(1, num_bins + 1) if counts.get(str(b), 0) == 0]
    single = [b for b in range(1, num_bins + 1) if counts.get(str(b), 0) == 1]
    out = []
    if empty:
        out.append(
            f"{summary['questions']} questions in {num_bins} bins: {bins_text(empty)} "
            f"{'is' if len(empty) == 1 else 'are'} empty, so the difficulty edges around "
            f"{'it' if len(empty) == 1 else 'them'} repeat and the deployed table fills "
            f"{'its row' if len(empty) == 1 else 'their rows'} from the nearest bin."
        )
    if single:
        out.append(f"{bins_text(single).capitalize()} rest on one question each.")
    return out
