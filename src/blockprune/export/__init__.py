"""Export: a plan and its base model become a checkpoint with the removed weights physically absent.

Formats (one module each, registered in `registry.FORMATS`, every module imported here;
docs/add-an-export-format.md adds one):
- `vanilla` (vanilla.py): only whole layers removed -> the same family with fewer layers, indices
  renumbered; a width plan with the same widths in every layer -> the family's config, narrower.
- `remote-code` (remote_code.py): blocks removed inside layers -> the base family's weights minus the
  removed ones, and a modeling file shipped in the checkpoint (`trust_remote_code=True`); width-pruned
  models get the width modeling file, which resizes each layer on load (width.py).
- `nemotron-nas` (nemotron_nas.py): Llama-layout models -> the DeciLM / Nemotron-NAS layout
  (`block_configs` with no-op attention and FFN) that vLLM serves natively, plus a modeling file for
  transformers.
- `gguf` (gguf_file.py): Llama-layout models -> one .gguf file for llama.cpp (arch `llama`, or `deci` with
  per-layer head counts and FFN widths), tokenizer and pruning record inside; `Job.options["outtype"]`.
  The only format that writes a file, not a folder (`Format.file`).
- `auto` (writer.py): vanilla when it can express the plan (no removal at all included), else remote-code.

A width-pruned checkpoint pruned again in depth (per-layer widths in `config.blockprune["widths"]`) is
written by the width modeling file, its new removals merged with any earlier ones: `auto` and
`remote-code` give that, `vanilla` and `nemotron-nas` are refused (they cannot express per-layer widths).

A depth-pruned checkpoint loaded with its shipped code (remote-code or nemotron-nas) can be pruned and
exported again: its earlier removals (`config.blockprune["removed"]`) join the new ones in every format
(`vanilla` when together they are whole layers, `auto` choosing it then), the code written imports the
transformers classes beneath the loaded ones, and `config.blockprune` keeps the dense original's base
model, parameter count and family, with the record it was loaded with under "pruned_from".

Modules: common.py (the job, provenance, templates, saving), registry.py, writer.py (`export`,
`export_width`, `auto`), one module per format, load.py. Nothing here imports the CLI or the plan.
"""
from __future__ import annotations

from ..registry import import_all
from .common import Job, mask_modules
from .load import load
from .registry import FORMATS, Format, choices, register, unregister
from .writer import choose_format, export, export_width

# every module of this package, so every format registers: the built-ins first, in the order `--format` lists
import_all(__name__, __path__, first=("vanilla", "remote_code", "nemotron_nas", "gguf_file"))

__all__ = ["FORMATS", "Format", "Job", "choices", "choose_format", "export", "export_width", "load", "mask_modules",
           "register", "unregister"]
