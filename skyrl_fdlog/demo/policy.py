"""The policy workers: data-parallel REINFORCE on the rollouts, gradients averaged with
torch.distributed (gloo on CPU)."""

from __future__ import annotations

from typing import Any

import ray

from skyrl_fdlog.torch import DistributedTorchWorker


@ray.remote
class PolicyWorker(DistributedTorchWorker):
    """One data-parallel rank holding a full copy of the policy and its optimizer."""

    def __init__(self, world_size: int, rank: int, model_path: str, learning_rate: float, seed: int) -> None:
        super().__init__(world_size, rank)
        import torch
        from transformers import AutoModelForCausalLM

        # Two workers and the engine share 2 cores; more threads would only contend.
        torch.set_num_threads(1)
        torch.manual_seed(seed)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=learning_rate)
        parameters = sum(p.numel() for p in self.model.parameters())
        print(f"policy rank {rank}/{world_size}: loaded {model_path} ({parameters:,} parameters)", flush=True)

    def train_step(self, rollouts: list[dict[str, Any]]) -> dict[str, float]:
        """One optimizer step on this rank's share of the rollouts; every rank applies the
        same averaged gradient, so the copies stay identical.

        Each rollout has prompt_token_ids, token_ids (the response) and advantage.
        """
        import torch
        import torch.distributed as dist

        self.model.train()
        logprob_sums = [self._response_logprob(r["prompt_token_ids"], r["token_ids"]) for r in rollouts]
        advantages = torch.tensor([r["advantage"] for r in rollouts], dtype=torch.float32)
        loss = -(advantages * torch.stack(logprob_sums)).mean()
        self.optimizer.zero_grad()
        loss.backward()
        for parameter in self.model.parameters():
            if parameter.grad is not None:
                dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
                parameter.grad /= self.world_size
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=1.0)
        self.optimizer.step()
        tokens = sum(len(r["token_ids"]) for r in rollouts)
        print(
            f"policy rank {self.rank}: step on {len(rollouts)} rollouts, {tokens} tokens, "
            f"loss {loss.item():.4f}",
            flush=True,
        )
        return {"loss": loss.item(), "grad_norm": grad_norm.item(), "tokens": float(tokens)}

    def _response_logprob(self, prompt_ids: list[int], response_ids: list[int]) -> Any:
        import torch

        ids = torch.tensor([prompt_ids + response_ids])
        logits = self.model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1]
        logprobs = torch.log_softmax(logits, dim=-1)
        return logprobs.gather(1, torch.tensor(response_ids).unsqueeze(1)).sum()

    def state_dict(self) -> dict[str, Any]:
        """The policy's weights by Hugging Face name, for the inference engine."""
        return {name: tensor.detach().clone() for name, tensor in self.model.state_dict().items()}
