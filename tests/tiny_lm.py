"""A tiny randomly initialised Llama and a word-level tokenizer, built in memory (no download)."""

from __future__ import annotations

from pathlib import Path

WORDS = ("<pad> <eos> <unk> Input Label Text Answer : . the a movie film was is great awful fine bad good "
         "plot acting foo bar baz qux zap zip one two three four five six seven eight nine ten").split()


def tiny_tokenizer(words: tuple[str, ...] | list[str] = WORDS):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def tiny_lm(seed: int = 0, vocab: int = len(WORDS)):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      pad_token_id=0, eos_token_id=1, bos_token_id=1)
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg).eval()


def save_tiny(path: Path, model=None, tok=None) -> Path:
    """Save a tiny model + tokenizer as a Hugging Face directory (what `--model DIR` reads)."""
    (model or tiny_lm()).save_pretrained(path)
    (tok or tiny_tokenizer()).save_pretrained(path)
    return path
