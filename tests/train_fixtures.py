"""A tiny randomly initialised Llama and word-level tokenizer, saved as a local HF model directory,
and a small export of prompt/completion rows, for the trainer's tests (seconds on CPU)."""

from __future__ import annotations

from pathlib import Path

WORDS = ("the a cat dog sat ran on mat log is good bad yes no one two three four five six seven eight nine ten "
         "plus equals answer question red blue green big small").split()
SPECIAL = ["<pad>", "<s>", "</s>", "<unk>", "<|user|>", "<|assistant|>", "<|system|>"]
CHAT_TEMPLATE = ("{% for m in messages %}{{ '<|' + m['role'] + '|> ' + m['content'] + ' </s> ' }}{% endfor %}"
                 "{% if add_generation_prompt %}{{ '<|assistant|> ' }}{% endif %}")


def make_tiny_model(directory: Path, seed: int = 0) -> Path:
    """Write a 2-layer Llama (hidden 32) with a ~40-word vocabulary to `directory`."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from transformers.utils import logging

    logging.disable_progress_bar()
    vocab = {t: i for i, t in enumerate([*SPECIAL, *WORDS])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                  unk_token="<unk>", additional_special_tokens=SPECIAL[4:])
    tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0)
    LlamaForCausalLM(cfg).save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


def rows(n: int, seed: int = 0) -> list[dict]:
    """Prompt/completion rows over the tiny vocabulary: `a b plus c` -> the colour word of (a+b+c) mod 3."""
    import random

    rnd = random.Random(seed)
    nums = WORDS[WORDS.index("one"):WORDS.index("ten") + 1]
    colours = ["red", "blue", "green"]
    out = []
    for _ in range(n):
        a, b = rnd.randrange(10), rnd.randrange(10)
        k = rnd.randrange(1, 4)
        prompt = " ".join(["question", nums[a], "plus", nums[b]] + ["the"] * k + ["answer"])
        out.append({"prompt": prompt, "completion": " " + colours[(a + b) % 3], "correct": (a + b) % 2 == 0})
    return out
