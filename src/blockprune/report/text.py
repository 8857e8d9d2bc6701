"""A run's search in words: what its step scores measure, which of them are not final, how candidates
were scored, a width plan's one line, and the report's notes on racing and the overfitting monitor."""
from __future__ import annotations

from .. import monitor
from ..plan import Plan


def score_metric(plan: Plan) -> str:
    """What the step scores measure: calibration perplexity unless the method recorded another metric."""
    return next((s["metric"] for s in plan.steps if s.get("metric")), "ppl")


def approximate(step: dict) -> set[str]:
    """A step's candidates without a final score: they left a race early, or (two-precision racing) were
    scored in the fast precision only, so their score is not comparable with the decided ones'."""
    units = set(step.get("partial") or {})
    if step.get("precision"):
        units |= set(step["scores"]) - set(step["precision"]["decided_in_full"])
    return units


def scorer_note(plan: Plan) -> str:
    """How the candidates were scored, in words (for figure titles and the report)."""
    metric = score_metric(plan)
    if plan.method in ONE_PASS:
        how = f"{plan.options.get('scorer', 'incremental')} scorer" if metric == "ppl" else metric
        return f"scored once on the dense model ({how}), removed in that order"
    if metric != "ppl":
        return f"{metric} of each candidate on the model as pruned so far"
    scorer = plan.options.get("scorer", "incremental")
    if scorer == "racing" or (scorer == "fast" and plan.options.get("fast_dtype", "none") == "none"):
        return (f"racing scorer (z = {plan.options.get('racing_z', 2.5):g}): a candidate that clearly trails the "
                f"leader leaves early")
    if scorer == "fast":
        return (f"two-precision racing (z = {plan.options.get('racing_z', 2.5):g}): candidates race in "
                f"{plan.options['fast_dtype']}, the near-ties are decided in {plan.options.get('dtype', 'fp32')} "
                f"on every window")
    return f"{scorer} scorer: every candidate on every window"


ONE_PASS = ("blockpruner-oneshot", "shortgpt", "relative-magnitude")


def describe_width(plan: Plan) -> str:
    """A width plan's one line, as its method words it (prune's summary says the same)."""
    from ..methods import METHODS

    method = METHODS[plan.method] if plan.method in METHODS else None
    return (method.describe(plan) if method else None) or f"{plan.width['ratio']:.1%} of parameters in heads and channels"


def race_note(plan: Plan) -> str:
    early = [len(approximate(s)) for s in plan.steps]
    if not any(early):
        return ""
    how = ("left the race early or were scored in the fast precision only" if any(s.get("precision") for s in plan.steps)
           else "left the race early")
    return (f"; {sum(early)} of {sum(len(s['scores']) for s in plan.steps)} candidate scores {how} "
            f"(hatched in the importance figure: not final, so not comparable)")


def monitor_lines(plan: Plan) -> list[str]:
    v = monitor.check(plan)
    if v is None:
        return []
    ppl = lambda x: "inf" if x is None else f"{x:.3f}"  # noqa: E731
    ratio = "–" if v["log_ratio"] is None else f"{v['log_ratio']:.2f}"
    lines = [f"- validation perplexity ({plan.validation.get('source')}, {plan.validation.get('windows')} windows): "
             f"{ppl(v['dense_ppl'])} dense → {ppl(v['pruned_ppl'])}; its log rise over calibration's {ratio} "
             f"(the monitor warns above {v['threshold']:g})"]
    if v["warning"]:
        lines.append(f"- **warning:** {v['warning']}")
    return lines
