"""Training speed and memory of `dataforge train` (sft) against a plain transformers `Trainer` + peft loop.

Same base model, same LoRA settings, same encoded examples (prompt tokens masked), same batch size,
steps, learning-rate schedule and seed; each side runs in its own process so its peak memory (RSS, or
CUDA max allocated) is its own, and the sides run back to back in one invocation, so machine load
affects both alike. Reported as ratios. A third run, dataforge with packing, shows packing's gain in
useful (labelled) tokens per second.

    flock /work/heavy.lock python benchmarks/train.py --export out/e2e/export --steps 20

Timing covers the optimizer steps only (model loading and tokenising excluded on both sides).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "train.json"


def _examples(export: str, max_length: int, limit: int):
    from dataforge.export.manifest import read_export
    from dataforge.train import data as D
    from dataforge.train.model import load_tokenizer, resolve_base

    tok = load_tokenizer(resolve_base("bundled"))
    df = read_export(export).read_split("train").head(limit)
    rows = [{"format": "prompt_completion", "prompt": r["prompt"], "completion": r["completion"]}
            for r in df.iter_rows(named=True)]
    return D.encode_all(rows, tok, completion_only=True, max_length=max_length)[0], tok


def _peak_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(side: str, args) -> dict:
    import torch

    from dataforge.train.config import LoraSettings, TrainSettings
    from dataforge.train.model import load_base, pick_device, resolve_base

    device = pick_device()
    examples, tok = _examples(args.export, args.max_length, args.rows)
    model, _ = load_base(resolve_base("bundled"), device)
    lora = LoraSettings()
    ts = TrainSettings(learning_rate=3e-4, max_steps=args.steps, batch_size=args.batch_size, max_length=args.max_length,
                       warmup_ratio=0.1, log_every=10**9, packing=side == "dataforge-packed", seed=0)
    if side.startswith("dataforge"):
        from dataforge.train.runs import RunRecord
        from dataforge.train.sft import train_sft

        with tempfile.TemporaryDirectory() as tmp:
            record = RunRecord.start(Path(tmp) / "c.duckdb", kind="train", method="sft", config={})
            _, res = train_sft(model, examples=examples, eval_examples=[], lora=lora, ts=ts,
                               pad_id=tok.pad_token_id, device=device, record=record, output_dir=Path(tmp),
                               adapter_dir=Path(tmp) / "adapter", log=lambda m: None)
            record.close()
        return {"side": side, "seconds": res.seconds, "tokens": res.tokens, "label_tokens": res.label_tokens,
                "peak_mb": _peak_mb(device), "device": str(device)}

    # The reference: transformers' Trainer on a peft model, fed the same examples.
    from peft import get_peft_model
    from transformers import Trainer, TrainingArguments

    from dataforge.train.data import pad_batch
    from dataforge.train.sft import lora_config

    torch.manual_seed(0)
    peft_model = get_peft_model(model, lora_config(lora))
    seen = {"tokens": 0, "label_tokens": 0}

    def collate(batch):
        b = pad_batch(batch, tok.pad_token_id)
        return {"input_ids": b.input_ids, "attention_mask": b.attention_mask, "labels": b.labels}

    class CountingTrainer(Trainer):
        """Counts the tokens of the batches it trains on (accelerate's loader collates one batch ahead,
        so counting in the collator would count a batch that is never trained on)."""

        def compute_loss(self, model, inputs, *a, **kw):
            seen["tokens"] += int(inputs["attention_mask"].sum())
            seen["label_tokens"] += int((inputs["labels"][:, 1:] != -100).sum())
            return super().compute_loss(model, inputs, *a, **kw)

    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(output_dir=tmp, per_device_train_batch_size=args.batch_size, max_steps=args.steps,
                                  learning_rate=3e-4, lr_scheduler_type="cosine", warmup_steps=round(0.1 * args.steps),
                                  max_grad_norm=1.0, logging_steps=10**9, save_strategy="no", report_to=[], seed=0,
                                  dataloader_num_workers=0, remove_unused_columns=False, use_cpu=device.type != "cuda",
                                  disable_tqdm=True)
        trainer = CountingTrainer(model=peft_model, args=targs, train_dataset=examples, data_collator=collate)
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
    return {"side": side, "seconds": seconds, **seen, "peak_mb": _peak_mb(device), "device": str(device)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export", default=str(REPO / "out" / "e2e" / "export"),
                    help="an export directory with prompt/completion rows (README: the symbol-tuning export)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=768)
    ap.add_argument("--rows", type=int, default=400, help="training rows read from the export")
    ap.add_argument("--repeats", type=int, default=1,
                    help="rounds of the three sides, interleaved; each side's fastest round is reported")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args)))
        return
    if not (Path(args.export) / "manifest.json").is_file():
        sys.exit(f"no export at {args.export}; build and export the symbol-tuning mixture first (README, Training)")
    results, rounds = {}, []
    for side in [s for _ in range(args.repeats) for s in ("trainer", "dataforge", "dataforge-packed")]:
        cmd = [sys.executable, __file__, "--child", side, "--export", args.export, "--steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--max-length", str(args.max_length), "--rows", str(args.rows)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not line:
            sys.exit(f"{side} failed:\n{proc.stderr[-3000:]}")
        r = json.loads(line[0][7:])
        r["tokens_per_s"] = r["tokens"] / r["seconds"]
        r["label_tokens_per_s"] = r["label_tokens"] / r["seconds"]
        rounds.append(r)
        if side not in results or r["tokens_per_s"] > results[side]["tokens_per_s"]:
            results[side] = r
        print(f"{r['side']:17s} {r['tokens']:8,d} tokens in {r['seconds']:7.1f} s = {r['tokens_per_s']:8,.0f} tok/s, "
              f"{r['label_tokens_per_s']:7,.1f} labelled tok/s, peak {r['peak_mb']:7,.0f} MB ({r['device']})", flush=True)
    df, tr, pk = results["dataforge"], results["trainer"], results["dataforge-packed"]
    print(f"dataforge / Trainer: tokens/s x{df['tokens_per_s'] / tr['tokens_per_s']:.2f}, "
          f"peak memory x{df['peak_mb'] / tr['peak_mb']:.2f}")
    print(f"packing: labelled tokens/s x{pk['label_tokens_per_s'] / df['label_tokens_per_s']:.2f} "
          f"(same steps and batch size: {pk['label_tokens']:,} vs {df['label_tokens']:,} labelled tokens)")
    report = {
        "benchmark": "LoRA SFT of the bundled SmolLM2-135M-Instruct: dataforge train vs transformers Trainer + peft",
        "command": f"python benchmarks/train.py --export {args.export} --steps {args.steps} "
                   f"--batch-size {args.batch_size} --max-length {args.max_length} --rows {args.rows} --repeats {args.repeats}",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "results": results,
        "rounds": rounds,
        "tokens_per_s_ratio": round(df["tokens_per_s"] / tr["tokens_per_s"], 3),
        "peak_memory_ratio": round(df["peak_mb"] / tr["peak_mb"], 3),
        "packing_label_tokens_per_s_gain": round(pk["label_tokens_per_s"] / df["label_tokens_per_s"], 3),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
