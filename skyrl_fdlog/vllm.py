"""A Ray actor hosting a real vLLM engine, redirected before the engine starts.

As in SkyRL's BaseVLLMInferenceEngine, redirect() runs first in __init__: vLLM then starts its
EngineCore process (spawned, so it inherits fds 1 and 2), and model loading, KV cache set-up,
progress bars and C++ warnings from both processes land in the infra log.

vLLM starts EngineCore with the spawn method, which re-imports the parent's main module. Here
that is Ray's worker module, so a driver that creates this actor needs no
`if __name__ == "__main__":` guard; a script that creates `vllm.LLM` itself does.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import ray

from skyrl_fdlog.ray import redirect_actor_output

# vLLM's CPU backend reserves this many GiB for the KV cache; its default (4) is far more than
# a tiny model needs, and the demo shares 2 cores and a few GiB with the trainers.
CPU_KV_CACHE_GIB = "1"


class VLLMEngine:
    """Hosts one `vllm.LLM`; generate() returns the completions' text and token ids.

    Create it with `ray.remote(VLLMEngine)` (or `VLLMEngineActor` below). On a machine
    without CUDA it runs vLLM's CPU backend in float32 without graph capture.
    """

    def __init__(self, model: str, *, seed: int = 0, max_model_len: int = 256, **engine_kwargs: Any) -> None:
        redirect_actor_output(type(self).__name__)
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", CPU_KV_CACHE_GIB)
        import torch
        from vllm import LLM

        if not torch.cuda.is_available():
            engine_kwargs = {"dtype": "float32", "enforce_eager": True, **engine_kwargs}
        self.llm = LLM(model=model, seed=seed, max_model_len=max_model_len, **engine_kwargs)
        self.weights_dir = tempfile.TemporaryDirectory(prefix="skyrl-fdlog-weights-")

    def generate(
        self, prompts: list[str], *, n: int = 1, max_tokens: int = 16, temperature: float = 1.0
    ) -> list[list[dict]]:
        """For each prompt, n samples as {"text", "token_ids", "prompt_token_ids"}."""
        from vllm import SamplingParams

        params = SamplingParams(n=n, max_tokens=max_tokens, temperature=temperature)
        outputs = self.llm.generate(prompts, params, use_tqdm=True)
        # prompt_token_ids is None only for prompts given as embeddings, never passed here.
        return [
            [
                {
                    "text": sample.text,
                    "token_ids": list(sample.token_ids),
                    "prompt_token_ids": list(output.prompt_token_ids or ()),
                }
                for sample in output.outputs
            ]
            for output in outputs
        ]

    def update_weights(self, state_dict: dict) -> None:
        """Load new policy weights (Hugging Face name -> CPU tensor) into the running engine."""
        from safetensors.torch import save_file

        # vLLM's own in-place reload reads a checkpoint directory; this actor's private one
        # is overwritten at each update.
        save_file(state_dict, os.path.join(self.weights_dir.name, "model.safetensors"))
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": self.weights_dir.name})
        # Cached prefixes were computed with the old weights.
        self.llm.reset_prefix_cache()
        print(f"engine weights updated ({len(state_dict)} tensors)", flush=True)


VLLMEngineActor = ray.remote(VLLMEngine)
