"""Training, ranking and evaluation on what dataforge exports (the `train` extra: torch, transformers, peft).

Modules, one idea each: `config` (the YAML config), `deps` (the extra's import check), `runs` (the
catalog record every run writes), `model` (base model: bundled GGUF or a local HF directory),
`data` (rows -> tokens, completion masks, packing), `loop` (the shared optimizer loop with
checkpoints and resume), `sft` (LoRA SFT), `nat` (negative assistant training), `nce` (negative
calibrated enhancement). Nothing here imports torch until a command needs it.
"""
