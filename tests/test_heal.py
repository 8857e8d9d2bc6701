"""Healing (LoRA recovery fine-tuning) on tiny models: what trains, what carries loss, merge, resume, formats."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from blockprune.errors import UserError
from blockprune.export import export, load
from blockprune.heal import IGNORE, HealOptions, collate, heal, instruction_example, load_examples, token_nll
from conftest import byte_tokenizer, tiny_llama

ROWS = [{"instruction": f"Name item {i}.", "input": "a list" if i % 3 == 0 else "",
         "output": f"Item {i} is {'x' * (i % 7 + 3)}."} for i in range(24)]
# tiny settings: short run, a context long enough for an Alpaca prompt in byte tokens
FAST = dict(rank=4, alpha=8, steps=4, max_length=256, val_size=4, save_every=2, lr=5e-3, dropout=0.1)


@pytest.fixture
def instructions(tmp_path):
    p = tmp_path / "instr.json"
    p.write_text(json.dumps(ROWS))
    return str(p)


def pruned_checkpoint(path: Path, removed, fmt: str, seed: int = 0) -> str:
    tok = byte_tokenizer()
    model = tiny_llama(seed, 4, vocab_size=len(tok), max_position_embeddings=512)
    export(model, removed, path, fmt=fmt, meta={"method": "test"}, tokenizer=tok)
    return str(path)


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_prompt_tokens_carry_no_loss():
    tok = byte_tokenizer()
    row = ROWS[3]
    ex = instruction_example(tok, row, 512)
    from blockprune.data import alpaca_prompt
    n_prompt = len(tok(alpaca_prompt(row)).input_ids)
    assert (ex.labels[:n_prompt] == IGNORE).all()
    assert torch.equal(ex.labels[n_prompt:], ex.ids[n_prompt:])
    assert ex.ids[-1] == tok.eos_token_id  # the response ends with eos, which is learned too
    # the loss counts exactly the response tokens (and eos), nothing of the prompt
    model = tiny_llama(0, 2, vocab_size=len(tok), max_position_embeddings=512)
    _, n = token_nll(model, collate([ex], 0), "cpu")
    assert n == len(ex.ids) - n_prompt


def test_loss_mode_instruction_vs_text(instructions, tmp_path):
    tok = byte_tokenizer()
    data = load_examples(HealOptions(data=instructions, max_length=512, val_size=4), tok)
    assert data.mode == "response" and data.describe()["loss_on"] == "response tokens"
    assert len(data.val) == 4 and len(data.train) == len(ROWS) - 4
    assert all((e.labels == IGNORE).any() for e in data.train)
    text = tmp_path / "t.txt"
    text.write_text("plain text for healing. " * 60)
    plain = load_examples(HealOptions(data=str(text), max_length=64, val_size=2), tok)
    assert plain.mode == "all" and plain.describe()["loss_on"] == "all tokens"
    assert all(torch.equal(e.labels, e.ids) for e in plain.train + plain.val)


@pytest.mark.parametrize("name", ["rows.json", "rows.jsonl"])
def test_training_data_not_utf8_is_a_user_error(tmp_path, name):
    """Instruction files are read by blockprune.data: Latin-1 bytes fail as one line saying what to do."""
    bad = tmp_path / name
    row = json.dumps(ROWS[0], ensure_ascii=False).replace("Name", "Nómé")
    bad.write_bytes(((row if name.endswith("l") else f"[{row}]") + "\n").encode("latin-1"))
    with pytest.raises(UserError, match="is not UTF-8 text .*convert it to UTF-8"):
        load_examples(HealOptions(data=str(bad), max_length=512, val_size=0), byte_tokenizer())


def test_only_lora_parameters_change(instructions, tmp_path):
    ckpt = pruned_checkpoint(tmp_path / "ckpt", {"attn.1", "mlp.1"}, "vanilla")
    before = {k: v.clone() for k, v in load(ckpt).state_dict().items()}
    seen = {}

    def check(step, peft_model):
        if step == FAST["steps"]:
            seen.update({k: v.detach().clone() for k, v in peft_model.named_parameters()})
            seen["trainable"] = {k for k, v in peft_model.named_parameters() if v.requires_grad}

    heal(ckpt, tmp_path / "out", data=instructions, progress=False, on_step=check, **FAST)
    trainable = seen.pop("trainable")
    assert trainable and all("lora_" in k for k in trainable)
    lora_b = [k for k in trainable if "lora_B" in k]
    assert lora_b and all(seen[k].abs().max() > 0 for k in lora_b)  # B starts at zero: it has moved
    for k, v in seen.items():
        if "lora_" not in k:
            base_name = k.removeprefix("base_model.model.").replace(".base_layer", "")
            assert torch.equal(v, before[base_name]), k
    # every linear layer but the head carries an adapter
    assert not any("lm_head" in k or "embed" in k for k in trainable)
    assert any("q_proj" in k for k in trainable) and any("down_proj" in k for k in trainable)


@pytest.mark.parametrize("fmt,removed", [("vanilla", {"attn.2", "mlp.2"}), ("remote-code", {"attn.1", "mlp.3"}),
                                         ("nemotron-nas", {"attn.2", "mlp.1"})])
def test_merged_checkpoint_equals_adapter_model(instructions, tmp_path, fmt, removed):
    from peft import PeftModel

    ckpt = pruned_checkpoint(tmp_path / "ckpt", removed, fmt)
    result = heal(ckpt, tmp_path / "out", data=instructions, progress=False, **FAST)
    healed = load(result.checkpoint)
    wrapped = PeftModel.from_pretrained(load(ckpt), tmp_path / "out" / "adapter").eval()
    ids = torch.randint(1, 200, (2, 40))
    assert torch.allclose(logits(healed, ids), logits(wrapped, ids), atol=1e-4)
    assert not torch.allclose(logits(healed, ids), logits(load(ckpt), ids), atol=1e-4)  # it did learn something
    # the same format as the input: config (with the healing added) and code files carried over
    src = json.loads((Path(ckpt) / "config.json").read_text())
    out = json.loads((result.checkpoint / "config.json").read_text())
    healing = out["blockprune"].pop("healing")
    assert out["blockprune"] == src["blockprune"] and out.get("auto_map") == src.get("auto_map")
    assert sorted(p.name for p in Path(ckpt).glob("*.py")) == sorted(p.name for p in result.checkpoint.glob("*.py"))
    assert healing["steps"] == 4 and healing["options"]["rank"] == 4 and healing["tokens"] > 0
    assert healing["data"]["loss_on"] == "response tokens" and healing["val_loss_after"] is not None
    assert set(load_file(result.checkpoint / "model.safetensors")) == set(load_file(Path(ckpt) / "model.safetensors"))


def test_resume_continues_from_saved_adapter_and_step(instructions, tmp_path):
    ckpt = pruned_checkpoint(tmp_path / "ckpt", {"attn.1", "mlp.1"}, "vanilla")
    full = heal(ckpt, tmp_path / "full", data=instructions, progress=False, **FAST)

    class Killed(Exception):
        pass

    def kill(step, _):
        if step == 3:  # after the checkpoint at step 2; step 3's work is lost
            raise Killed

    with pytest.raises(Killed):
        heal(ckpt, tmp_path / "cut", data=instructions, progress=False, on_step=kill, **FAST)
    assert json.loads((tmp_path / "cut" / "adapter" / "state.json").read_text())["step"] == 2
    with pytest.raises(UserError, match="already holds"):
        heal(ckpt, tmp_path / "cut", data=instructions, progress=False, **FAST)
    resumed = heal(ckpt, tmp_path / "cut", data=instructions, progress=False, resume=True, **FAST)
    assert resumed.record["steps"] == full.record["steps"] == 4
    assert [h["loss"] for h in resumed.record["history"]] == [h["loss"] for h in full.record["history"]]
    a = load_file(tmp_path / "full" / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "cut" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(UserError, match="different"):
        heal(ckpt, tmp_path / "cut", data=instructions, progress=False, resume=True, **{**FAST, "rank": 8})


def test_run_folder_input_and_cli(instructions, tmp_path, capsys):
    from blockprune import prune
    from blockprune.cli import main
    from conftest import save_tiny_checkpoint

    base = save_tiny_checkpoint(tmp_path / "base", max_position_embeddings=512)
    calib = tmp_path / "calib.txt"
    calib.write_text("the cat sat on the mat. " * 40)
    run = prune(str(base), tmp_path / "run", num_blocks=2, calibration=str(calib), nsamples=4, seqlen=32,
                progress=False, export=False)
    code = main(["heal", str(run.out), "--data", instructions, "--rank", "4", "--steps", "2", "--val-size", "2",
                 "--quiet"])
    assert code in (0, None)
    printed = capsys.readouterr().out
    assert "response tokens" in printed and "healed 2 steps" in printed
    healed = load(run.out / "healed" / "model")
    assert set(healed.config.blockprune["removed"]) == set(run.plan.removed_blocks)
    assert healed.config.blockprune["healing"]["steps"] == 2
    # the record names its input relative to itself (no path of this machine) and the machine it was timed on
    record = json.loads((run.out / "healed" / "heal.json").read_text())
    assert record["input"] == ".." and not Path(record["input"]).is_absolute()
    assert record["machine"]["cpu"]["model"] and record["machine"]["torch_threads"] >= 1


def test_width_pruned_run_keeps_its_format(instructions, tmp_path):
    from peft import PeftModel

    from blockprune import prune
    from conftest import save_tiny_checkpoint

    base = save_tiny_checkpoint(tmp_path / "base", max_position_embeddings=512)
    run = prune(str(base), tmp_path / "run", method="width-magnitude", ratio=0.2, calibration=instructions,
                nsamples=4, seqlen=32, progress=False)
    result = heal(run.out, data=instructions, progress=False, **FAST)
    src = json.loads((run.checkpoint / "config.json").read_text())
    out = json.loads((result.checkpoint / "config.json").read_text())
    assert out["auto_map"] == src["auto_map"] and out["blockprune"]["widths"] == src["blockprune"]["widths"]
    ids = torch.randint(1, 200, (1, 30))
    wrapped = PeftModel.from_pretrained(load(run.checkpoint), run.out / "healed" / "adapter").eval()
    assert torch.allclose(logits(load(result.checkpoint), ids), logits(wrapped, ids), atol=1e-4)


def test_report_shows_dense_pruned_and_healed_side_by_side(instructions, tmp_path):
    from blockprune import prune
    from blockprune.evaluate import evaluate, load_subject
    from blockprune.report import build
    from test_evaluate import ROWS, tiny_checkpoint, write_data

    base = tiny_checkpoint(tmp_path / "base")
    data = write_data(tmp_path / "data")
    calib = tmp_path / "calib.txt"
    calib.write_text("\n\n".join(ROWS))
    run = prune(str(base), tmp_path / "run", num_blocks=2, calibration=str(calib), seqlen=16, nsamples=2,
                progress=False)
    healed = heal(run.out, tmp_path / "healed", data=instructions, progress=False, **FAST)
    for target, out in ((base, tmp_path / "dense"), (run.out, run.out / "eval"), (tmp_path / "healed", None)):
        subject = load_subject(str(target))
        evaluate(subject, ["wikitext2"], out=out or tmp_path / "healed" / "eval", seqlen=16, data_dir=data,
                 with_cost=False, progress=False)
    assert subject.healing["steps"] == FAST["steps"]  # the heal folder resolved to its merged checkpoint
    md = build([tmp_path / "dense", run.out, tmp_path / "healed"], tmp_path / "report").read_text()
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [r["label"] for r in report["table"]] == ["dense", "run", "healed"]
    assert [r["method"] for r in report["table"]] == ["dense", "blockpruner", f"blockpruner + LoRA ({FAST['steps']} steps)"]
    # the healed model's eval ran without cost figures: its ratio comes from its parameter count
    assert report["table"][2]["ratio"] == pytest.approx(run.plan.steps[-1]["ratio"], rel=1e-6)
    assert report["table"][0]["ratio"] == 0
    ppl = [r["wikitext2"] for r in report["table"]]
    assert len(set(ppl)) == 3  # three different models
    assert "## Healing" in md and f"{healed.record['val_loss_before']:.3f} → {healed.record['val_loss_after']:.3f}" in md
    assert report["healing"]["healed"]["steps"] == FAST["steps"]


def test_recovery_is_each_average_over_the_dense_average():
    from blockprune.report import add_recovery, markdown_table

    rows = [{"label": n, "method": m, "ratio": r, "wikitext2": p, "tasks": {"piqa": a}, "average": a}
            for n, m, r, p, a in (("d", "dense", 0.0, 10.0, 0.5), ("p", "blockpruner", 0.2, 30.0, 0.4),
                                  ("h", "blockpruner + LoRA (4 steps)", 0.2, 20.0, 0.45))]
    assert add_recovery(rows)
    assert [r["recovery"] for r in rows] == pytest.approx([1.0, 0.8, 0.9])
    lines = markdown_table(rows, recovery=True).splitlines()
    assert lines[0].endswith("| Avg. | % of dense |") and lines[3].endswith("| 40.00 | 80.00 |")
    assert not add_recovery(rows[1:])
