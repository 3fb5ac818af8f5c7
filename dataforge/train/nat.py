"""Negative Assistant Training (`method: nat`), after the negative-data paper (Li et al., 2024).

Stage 1 trains a negative LoRA on the negative rationales (plain LoRA SFT). Stage 2 freezes it and
trains, in every adapted layer, a positive LoRA and an integration unit on the positive rationales:

    h_pos = base(x) + LoRA_pos(x)          h_neg = base(x) + LoRA_neg(x)
    q = W_q x     k_b = W_k h_b     v_b = MLP(h_b)      (MLP: Linear, GELU, Linear starting at zero)
    alpha = beta * (2 * softmax(q.k_pos / T, q.k_neg / T)[neg] - 1)        in [-beta, beta]
    y = base(x) + (1 - alpha) * v_pos + alpha * v_neg

The LoRA branches are peft's own modules (adapters `negative` and `positive` of one `PeftModel`);
each adapted layer's forward is replaced by the function above. A `NATModel` runs in three modes:
`mixed` (y above), `negative` (base + LoRA_neg) and `base` (the frozen model alone).

Saved layout of a nat output_dir: `negative/` and `positive/` (peft adapters),
`integration_units.safetensors`, `nat.json` (unit settings and layer names).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from dataforge.errors import UserError
from dataforge.train.deps import quiet_peft

MODES = ("mixed", "negative", "base")
UNITS_FILE = "integration_units.safetensors"
NAT_FILE = "nat.json"


def missing_part(output_dir: Path) -> str | None:
    """The first file or folder a finished nat output_dir lacks (None: it has them all)."""
    for need in ("negative", "positive", UNITS_FILE, NAT_FILE):
        if not (Path(output_dir) / need).exists():
            return need
    return None


class IntegrationUnit(nn.Module):
    """Mixes one layer's positive and negative branch outputs, per token (see the module doc)."""

    def __init__(self, in_features: int, out_features: int, width: int, beta: float = 0.5,
                 temperature: float = 1.0):
        super().__init__()
        self.beta, self.temperature = beta, temperature
        self.query = nn.Linear(in_features, width, bias=False)
        self.key = nn.Linear(out_features, width, bias=False)
        self.value = nn.Sequential(nn.Linear(out_features, width), nn.GELU(), nn.Linear(width, out_features))
        nn.init.zeros_(self.value[2].weight)
        nn.init.zeros_(self.value[2].bias)

    def alpha(self, x, h_pos, h_neg):
        """Mixing weight per token, shape (..., 1), within [-beta, beta]."""
        q = self.query(x)
        scores = torch.stack([(q * self.key(h_pos)).sum(-1), (q * self.key(h_neg)).sum(-1)], dim=-1)
        w_neg = torch.softmax(scores / self.temperature, dim=-1)[..., 1]
        return (self.beta * (2 * w_neg - 1)).unsqueeze(-1)

    def forward(self, x, base, h_pos, h_neg):
        a = self.alpha(x, h_pos, h_neg)
        return base + (1 - a) * self.value(h_pos) + a * self.value(h_neg)


def _lora_delta(layer, name: str, x, dropout: bool):
    a = layer.lora_A[name]
    xin = x.to(a.weight.dtype)
    if dropout:
        xin = layer.lora_dropout[name](xin)
    return layer.lora_B[name](a(xin)) * layer.scaling[name]


def _nat_forward(layer, unit, mode: list[str]) -> Callable:
    def forward(x, *args, **kwargs):
        base = layer.base_layer(x, *args, **kwargs)
        if mode[0] == "base":
            return base
        h_neg = base + _lora_delta(layer, "negative", x, dropout=False).to(base.dtype)  # frozen: no dropout
        if mode[0] == "negative":
            return h_neg
        h_pos = base + _lora_delta(layer, "positive", x, dropout=True).to(base.dtype)
        return unit(x, base, h_pos, h_neg)

    return forward


def _unit_key(module_name: str) -> str:
    return module_name.replace(".", "__")


class NATModel(nn.Module):
    """A base model with frozen negative LoRA, positive LoRA and integration units; see module doc."""

    def __init__(self, peft_model, *, unit_width: int, beta: float, temperature: float):
        super().__init__()
        from peft.tuners.lora import LoraLayer

        self.peft = peft_model
        self.settings = {"unit_width": unit_width, "beta": beta, "temperature": temperature}
        self._mode = ["mixed"]
        self.units = nn.ModuleDict()
        self.layer_names: list[str] = []
        for name, module in peft_model.named_modules():
            if isinstance(module, LoraLayer) and "negative" in module.lora_A and "positive" in module.lora_A:
                base = module.get_base_layer()
                unit = IntegrationUnit(base.in_features, base.out_features, unit_width, beta, temperature)
                unit.to(base.weight.device)
                self.units[_unit_key(name)] = unit
                module.forward = _nat_forward(module, unit, self._mode)
                self.layer_names.append(name)
        if not self.layer_names:
            raise UserError("NAT found no layer with both a negative and a positive LoRA")

    @property
    def mode(self) -> str:
        return self._mode[0]

    def set_mode(self, mode: str) -> None:
        """`mixed` (positive LoRA + integration units), `negative` (negative LoRA only), `base`."""
        if mode not in MODES:
            raise UserError(f"NAT mode {mode!r}: choose one of {', '.join(MODES)}")
        self._mode[0] = mode

    def forward(self, **kwargs):
        return self.peft(**kwargs)

    def generate(self, **kwargs):
        return self.peft.generate(**kwargs)

    @property
    def config(self):
        return self.peft.config

    def parts(self) -> dict[str, list[tuple[str, Any]]]:
        """Parameters by part: `negative`, `positive` (LoRA), `units`, `base`."""
        out: dict[str, list] = {"negative": [], "positive": [], "units": [], "base": []}
        for n, p in self.named_parameters():
            if n.startswith("units."):
                out["units"].append((n, p))
            elif ".negative." in n or n.endswith(".negative"):
                out["negative"].append((n, p))
            elif ".positive." in n or n.endswith(".positive"):
                out["positive"].append((n, p))
            else:
                out["base"].append((n, p))
        return out

    def freeze_for_stage2(self) -> None:
        """Only the positive LoRA and the integration units train."""
        parts = self.parts()
        for key, params in parts.items():
            for _, p in params:
                p.requires_grad_(key in ("positive", "units"))

    def save(self, output_dir: Path) -> None:
        """Write `positive/` (peft format), the units and `nat.json` (`negative/` is stage 1's)."""
        from safetensors.torch import save_file

        with tempfile.TemporaryDirectory(dir=output_dir) as tmp:
            self.peft.save_pretrained(tmp, selected_adapters=["positive"])
            src = Path(tmp) / "positive"
            if not src.is_dir():
                src = Path(tmp)
            dest = output_dir / "positive"
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(src, dest)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.units.state_dict().items()},
                  str(output_dir / UNITS_FILE))
        (output_dir / NAT_FILE).write_text(json.dumps({**self.settings, "layers": self.layer_names},
                                                      indent=2) + "\n", encoding="utf-8")

    @classmethod
    def build(cls, base_model, negative_dir: Path, lora, settings, seed: int):
        """Stage 2's model: the base with the frozen negative adapter and a fresh positive one."""
        from peft import PeftModel

        from dataforge.train.sft import lora_config

        with quiet_peft():
            peft_model = PeftModel.from_pretrained(base_model, str(negative_dir), adapter_name="negative",
                                                   is_trainable=False)
        torch.manual_seed(seed)
        peft_model.add_adapter("positive", lora_config(lora))
        nat = cls(peft_model, unit_width=settings.unit_width, beta=settings.beta,
                  temperature=settings.temperature)
        nat.freeze_for_stage2()
        return nat

    @classmethod
    def load(cls, base_model, output_dir: Path):
        """A finished NAT model from its output_dir (all parameters frozen)."""
        from peft import PeftModel
        from safetensors.torch import load_file

        output_dir = Path(output_dir)
        missing = missing_part(output_dir)
        if missing is not None:
            raise UserError(f"{output_dir} lacks {missing}: not the output_dir of a finished nat run")
        settings = json.loads((output_dir / NAT_FILE).read_text(encoding="utf-8"))
        with quiet_peft():
            peft_model = PeftModel.from_pretrained(base_model, str(output_dir / "negative"), adapter_name="negative")
            peft_model.load_adapter(str(output_dir / "positive"), adapter_name="positive")
        nat = cls(peft_model, unit_width=settings["unit_width"], beta=settings["beta"],
                  temperature=settings["temperature"])
        nat.units.load_state_dict(load_file(str(output_dir / UNITS_FILE)))
        nat.units.to(next(peft_model.parameters()).device)
        for p in nat.parameters():
            p.requires_grad_(False)
        return nat


def train_nat(model, *, cfg, examples, negative_examples, eval_examples, pad_id: int, device, record,
              output_dir: Path, state: dict[str, Any] | None, log: Callable[[str], None]) -> dict[str, Any]:
    """Both stages; a resumed run skips stage 1 when its checkpoint is from stage 2. Returns metrics."""
    from dataforge.train.data import Batches
    from dataforge.train.loop import total_steps, train_loop
    from dataforge.train.sft import eval_loss_fn, lm_loss, train_sft

    ts = cfg.train
    metrics: dict[str, Any] = {}
    negative_dir = output_dir / "negative"
    if state is None or state["stage"] == "negative":
        record.stage = "negative"
        if not negative_examples:
            raise UserError("negative_data: no negative example fits in train.max_length")
        peft_model, res = train_sft(model, examples=negative_examples, eval_examples=[], lora=cfg.lora, ts=ts,
                                    pad_id=pad_id, device=device, record=record, output_dir=output_dir,
                                    adapter_dir=negative_dir, stage="negative", steps=cfg.nat.negative_steps,
                                    resume=state, log=log)
        metrics.update(res.metrics("negative_"))
        model = peft_model.unload()  # the base model again, without the LoRA layers
        state = None
    else:  # resumed in stage 2: stage 1's metrics come from the checkpoint
        metrics.update(state.get("carry", {}))
    record.stage = "positive"
    nat = NATModel.build(model, negative_dir, cfg.lora, cfg.nat, ts.seed + 1)
    batches = Batches(examples, batch_size=ts.batch_size, seed=ts.seed, packing=ts.packing,
                      max_length=ts.max_length, pad_id=pad_id)
    steps = total_steps(ts, batches)
    trainable = sum(p.numel() for p in nat.parameters() if p.requires_grad)
    log(f"positive: {len(examples):,} examples, {steps} steps, {len(nat.layer_names)} layers with integration "
        f"units, {trainable:,} trainable parameters")
    res = train_loop(model=nat, loss_fn=lm_loss(nat), batches=batches, ts=ts, steps=steps, device=device,
                     record=record, output_dir=output_dir, stage="positive", log=log, resume=state,
                     carry=dict(metrics), eval_fn=eval_loss_fn(nat, eval_examples, ts.batch_size, pad_id, device))
    nat.save(output_dir)
    metrics.update(res.metrics("positive_"))
    metrics["eval_loss"] = res.eval_loss
    return metrics
