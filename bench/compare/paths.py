"""Why a search wins or loses (issue 30, item 3): every method's removal set side by side and its
calibration-perplexity path against parameters removed, from a comparison folder.

    python bench/compare/paths.py bench/compare/smollm2-r20-paper [METHODS] [--no-figure]

Prints a Markdown table (per method: attention and MLP blocks removed, whole layers among them, the layers
touched, ratio, calibration and validation perplexity, and for a population search its seeds and
generations) and writes OUT/paths.png: calibration perplexity (log scale) after each removal against the
share of parameters removed, one line per method. Greedy searches draw the path they took; one-shot
methods the order they removed in; a population search has no path, so it is drawn as its final set's
prefixes in execution order (dashed), with its seeds as points. Methods still running show what they have."""
from __future__ import annotations

import sys
from pathlib import Path

from blockprune.compare import parse_methods
from blockprune.plan import Plan
from blockprune.units import parse_unit

DEFAULT = ("shortgpt,relative-magnitude,layer-ppl,blockpruner-oneshot,blockpruner,blockpruner-refined,"
           "blockpruner-joint,blockpruner-evo")


def composition(plan: Plan) -> dict:
    blocks = sorted(plan.removed_blocks, key=lambda b: (parse_unit(b)[1], b))
    attn = [parse_unit(b)[1] for b in blocks if b.startswith("attn.")]
    mlp = [parse_unit(b)[1] for b in blocks if b.startswith("mlp.")]
    whole = sorted(set(attn) & set(mlp))
    return {"attn": len(attn), "mlp": len(mlp), "layers": whole,
            "attn_only": sorted(set(attn) - set(mlp)), "mlp_only": sorted(set(mlp) - set(attn))}


def table(plans: dict[str, Plan]) -> str:
    head = ["Method", "Status", "Ratio", "Attn", "MLP", "Whole layers", "Attention only", "MLP only",
            "Calib. PPL", "Validation PPL"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    fmt = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    for label, plan in plans.items():
        c, o = composition(plan), plan.outcome
        lines.append("| " + " | ".join([label, plan.status, f"{o.ratio:.1%}", str(c["attn"]), str(c["mlp"]),
                                        ", ".join(map(str, c["layers"])) or "–",
                                        ", ".join(map(str, c["attn_only"])) or "–",
                                        ", ".join(map(str, c["mlp_only"])) or "–", fmt(o.ppl),
                                        fmt(o.validation_ppl)]) + " |")
    return "\n".join(lines)


def search_notes(plans: dict[str, Plan]) -> list[str]:
    notes = []
    for label, plan in plans.items():
        s = plan.search
        if not s:
            continue
        seeds = "; ".join(f"{x['source']} {x['ppl']:.2f} ({len(x['completed'])} units, {x['ratio']:.1%})"
                          for x in s["seeds"])
        hist = s.get("history", [])
        accepted = [h["generation"] for h in hist if h["accepted"]]
        notes.append(f"- {label}: seeds (completed to the budget, calibration ppl): {seeds}. {len(hist)} of "
                     f"{s['generations']} generations of {s['offspring']} offspring run, "
                     f"{len(accepted)} accepted (generations {', '.join(map(str, accepted)) or 'none'}); parent "
                     f"{s['parent_ppl']:.2f}; candidate-windows {s['evaluated_windows']} of "
                     f"{s['exhaustive_windows']} exhaustive.")
        for h in hist:
            notes.append(f"  - generation {h['generation']}: {h['offspring']} offspring, {h['finished']} ran every "
                         f"window, {h['evaluated_windows']} candidate-windows, parent ppl {h['ppl']:.3f}"
                         + (" (accepted)" if h["accepted"] else ""))
    return notes


def figure(plans: dict[str, Plan], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for label, plan in plans.items():
        ratios = [0.0] + [s["ratio"] for s in plan.steps]
        ppls = [plan.dense.get("ppl")] + [s["ppl"] for s in plan.steps]
        style = "--" if plan.search else "-"
        line, = ax.plot([100 * r for r in ratios], ppls, style, marker=".", label=label, linewidth=1.2)
        if plan.search:
            for seed in plan.search["seeds"]:
                ax.plot(100 * seed["ratio"], seed["ppl"], "o", mfc="none", color=line.get_color())
    ax.set_yscale("log")
    ax.set_xlabel("parameters removed (%)")
    ax.set_ylabel("calibration perplexity (log scale)")
    ax.set_title("Calibration perplexity along each method's removals")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(folder: str, methods: str = DEFAULT, draw: bool = True) -> None:
    out = Path(folder)
    plans = {e.label: Plan.load(out / e.folder) for e in parse_methods(methods)
             if (out / e.folder / "plan.json").exists()}
    print(table(plans))
    notes = search_notes(plans)
    if notes:
        print("\n" + "\n".join(notes))
    if draw:  # --no-figure: print only (the RESULTS check must not redraw a committed figure)
        figure(plans, out / "paths.png")
        print(f"\n(figure: {out / 'paths.png'})")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--no-figure"]
    main(*args[:2], draw="--no-figure" not in sys.argv)
