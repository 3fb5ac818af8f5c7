"""Training, ranking and evaluation on what dataforge exports (the `train` extra: torch, transformers, peft).

Modules, one idea each: `config` (the YAML config), `deps` (the extra's import check), `runs` (the
catalog record every run writes), `model` (base model: bundled GGUF or a local HF directory),
`data` (rows -> tokens, completion masks, packing), `loop` (the shared optimizer loop with
checkpoints and resume), `sft` (LoRA SFT), `nat` (negative assistant training), `nce` (negative
calibrated enhancement); `ranker` (the (question, rationale) scorer) and `rank_train` (its command),
`voting` (self-consistency and adaptive self-consistency), `answers` (extraction and equivalence as
eval uses them), `evaluate` (`dataforge eval`), `hf_generate` (a transformers model behind the LLM
engine), `clf_eval` and `clf_run` (classification prompts by label log-likelihood), `eval_data` and
`eval_model` (what eval reads and loads), `options` (CLI flags -> options models). Nothing here
imports torch until a command needs it.
"""
