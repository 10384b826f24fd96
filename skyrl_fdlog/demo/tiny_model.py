"""A tiny random Llama and its tokenizer, built offline once and cached on disk.

No weights can be downloaded here, and the demo only needs something vLLM and torch really
load and run: a 2-layer Llama with random weights and a 512-token byte-level BPE tokenizer
trained on a few generated sentences. vLLM loads it in about 20 s on 2 CPU cores.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

# Bump when the model's shape or files change, so an old cache is never loaded.
MODEL_VERSION = "v1"
VOCAB_SIZE = 512
SPECIAL_TOKENS = ("<s>", "</s>", "<pad>")
SEED = 1234


def default_cache_dir() -> Path:
    """~/.cache/skyrl_fdlog (or $XDG_CACHE_HOME/skyrl_fdlog)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "skyrl_fdlog"


def tokenizer_corpus() -> list[str]:
    """Sentences in the demo's small language: numbers, counting and arithmetic in words.

    Varied enough that BPE learns all VOCAB_SIZE tokens, so every id the model can sample
    decodes to text.
    """
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    lines = []
    for a in range(10):
        for b in range(10):
            lines.append(f"{a} + {b} = {a + b}. {words[a]} plus {words[b]} is {a + b}.")
            lines.append(f"{a} * {b} = {a * b}. {words[a]} times {words[b]} makes {a * b}!")
            lines.append(f"count: {' '.join(str((a + i) % 10) for i in range(b + 1))}")
            lines.append(f"Q: what is {a}{b} minus {b}? A: the answer is {10 * a}.")
    lines += zen_of_python().splitlines()
    return lines


def zen_of_python() -> str:
    """English text that ships with every Python (the `this` module stores it in rot13)."""
    import codecs
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints the poem
        import this
    return codecs.decode(this.s, "rot13")


def build_tokenizer(directory: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(tokenizer_corpus(), trainer=trainer)
    bos, eos, pad = SPECIAL_TOKENS
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=bos, eos_token=eos, pad_token=pad, model_max_length=256
    )
    wrapped.save_pretrained(directory)


def build_model(directory: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as transformers_logging

    # The build runs on the driver, whose terminal is for training progress.
    transformers_logging.disable_progress_bar()

    bos, eos, pad = range(len(SPECIAL_TOKENS))
    config = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        # head_dim 64: vLLM's CPU attention rejects smaller heads such as 16.
        num_key_value_heads=1,
        head_dim=64,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=pad,
        dtype="float32",
    )
    torch.manual_seed(SEED)
    LlamaForCausalLM(config).save_pretrained(directory)


def ensure_tiny_model(cache_dir: str | os.PathLike | None = None) -> Path:
    """Return the directory of the tiny Llama, building it first if it is not cached.

    Safe when several processes call it at once: each builds into its own temporary
    directory and renames it into place; the first rename wins.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / f"tiny-llama-{MODEL_VERSION}"
    if (target / "config.json").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-llama-", dir=root))
    try:
        build_tokenizer(staging)
        build_model(staging)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "config.json").exists():
                raise  # not lost to a concurrent build: a real failure
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
