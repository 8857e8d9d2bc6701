"""blockprune estimate: what a prune run will need (memory, by item) and take (candidate-windows, time),
from the model's config alone: no weights are loaded."""
from __future__ import annotations

NAME = "estimate"
HELP = "estimate a prune run's peak memory and time from the model's config, before running it"
DESCRIPTION = ("Take prune's options and print what the run will need: peak memory broken down (weights, the fast "
               "scorer's copy, boundary caches, the leader copy, activations), the candidate-windows it scores and "
               "a time range from timing one layer of the model's shapes on this device. No weights are loaded. "
               "`prune` makes the same check before loading weights and refuses a run that will not fit "
               "(--force overrides). Exit status 1 when the run would not fit.")


def add_arguments(p) -> None:
    from . import prune

    prune.add_arguments(p, estimate=True)
    p.add_argument("--json", action="store_true", help="print the estimate as JSON")
    p.add_argument("--no-timing", action="store_true", help="skip timing one layer on this device (no time range)")


def run(args) -> int:
    import json

    from .. import estimate
    from .prune import options_from

    opts = options_from(args, "estimate")
    opts.check_all_used()
    est = estimate.estimate(args.model, opts, args.device, args.data_dir, args.out, timing=not args.no_timing)
    fixes = [] if est.fits else estimate.suggestions(args.model, opts, args.device, args.data_dir, args.out, est)
    if args.json:
        d = est.to_json()
        d["would_fit_with"] = [{"options": flag, "needed": e.memory.needed} for flag, e in fixes]
        print(json.dumps(d, indent=1))
    else:
        print(estimate.render(est))
        for flag, e in fixes:
            print(f"would fit with {flag}: needs {estimate._needs(e, args.device)}")
        if not est.fits and not fixes:
            print("no option makes it fit (--cache-every, --cache-device disk, --dtype bf16, --batch-size 1 tried)")
    return 0 if est.fits else 1
