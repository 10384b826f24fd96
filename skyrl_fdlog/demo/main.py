"""`skyrl-fdlog demo`: a small but real RL loop whose terminal shows only training progress.

A vLLM engine actor generates rollouts, a reward function scores them, two torch policy
workers take a data-parallel REINFORCE step (gloo), and the new weights go back into the
engine. Every actor redirects at init, so vLLM's start-up (EngineCore, model loading, KV
cache), the workers' logs and torch's C++ warnings go to the infra log; the driver prints
the configuration, dataset loading, per-step metrics and a progress bar, then where the infra
log is and how many lines each actor wrote there.

`demo.fail_at=engine_start` breaks the engine's start on purpose: vLLM's EngineCore fails to
load a model whose weights file is cut short, and the terminal shows what a user sees when an
actor dies: its error lines and last words (cause included), and where the infra log is.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from skyrl_fdlog import vllm
from skyrl_fdlog.config import load_config
from skyrl_fdlog.demo.config import FAIL_AT_CHOICES, DemoConfig
from skyrl_fdlog.demo.policy import PolicyWorker
from skyrl_fdlog.demo.summary import lines_per_actor
from skyrl_fdlog.demo.task import Problem, load_problems, reward
from skyrl_fdlog.demo.tiny_model import ensure_tiny_model
from skyrl_fdlog.ray import init_ray, redirected
from skyrl_fdlog.torch import create_worker_group

# Ray actor names, which are also the names in the infra log's records.
ENGINE_NAME = "vllm-engine-0"
POLICY_NAME_PREFIX = "policy"


@ray.remote
@redirected
class VLLMEngine(vllm.VLLMEngine):
    """The engine, under @redirected: when its __init__ raises, its last words (the cause that
    EngineCore printed among them) reach the terminal at once, before Ray's report of the
    exception (docs/integration.md, "When an actor fails")."""


# After an actor died: how long Ray's log monitor gets to forward its last words (printed by
# its log helper once the process is gone) before ray.shutdown() stops the forwarding.
LAST_WORDS_WAIT_S = 5.0


def main(overrides: Sequence[str] = ()) -> int:
    """Run the demo with Hydra-style overrides (e.g. `trainer.log_path=/tmp/logs`); 0 on success."""
    cfg = load_config(overrides, schema=DemoConfig)
    if cfg.demo.fail_at not in FAIL_AT_CHOICES:
        raise SystemExit(
            f"demo.fail_at={cfg.demo.fail_at!r} is not one of "
            f"{', '.join(repr(choice) for choice in FAIL_AT_CHOICES)}: use "
            f"demo.fail_at=engine_start to watch the engine fail at start"
        )
    print("Configuration:")
    print(OmegaConf.to_yaml(cfg), end="", flush=True)
    model_path = cfg.model.path or str(ensure_tiny_model(cfg.model.cache_dir or None))
    print(f"Model: {model_path}")
    problems = load_problems(cfg.data.num_prompts, cfg.trainer.seed)
    print(
        f"Loading dataset: {len(problems)} one-digit addition prompts, "
        f"{cfg.generator.prompts_per_step} per step, "
        f"{cfg.generator.samples_per_prompt} samples each",
        flush=True,
    )

    started = time.monotonic()
    log_file = init_ray(cfg.trainer.log_path)
    try:
        with tempfile.TemporaryDirectory(prefix="skyrl-fdlog-demo-") as scratch:
            engine_model = (
                broken_copy(model_path, Path(scratch)) if cfg.demo.fail_at == "engine_start" else model_path
            )
            rewards = train(cfg, model_path, engine_model, problems)
    except ray.exceptions.RayActorError as error:
        time.sleep(LAST_WORDS_WAIT_S)
        print(f"Training stopped: {str(error).splitlines()[0]}", flush=True)
        print(f"The actor's last lines are above; every line is in {log_file}", flush=True)
        return 1
    finally:
        ray.shutdown()
    print(f"Finished {cfg.trainer.steps} steps in {time.monotonic() - started:.0f} s", end="")
    print(f"; mean reward first step {rewards[0]:.3f}, last step {rewards[-1]:.3f}" if rewards else "")
    print_infra_summary(log_file)
    return 0


def train(cfg: DictConfig, model_path: str, engine_model: str, problems: list[Problem]) -> list[float]:
    """The RL loop; returns the mean reward of each step.  The engine loads engine_model (the
    policy's model_path, or a broken copy of it with demo.fail_at=engine_start)."""
    print(f"Starting the vLLM engine and {cfg.trainer.num_policy_workers} policy workers...", flush=True)
    # mypy does not apply class decorators, so it does not know that @ray.remote made an actor.
    engine = VLLMEngine.options(name=ENGINE_NAME, num_cpus=1).remote(  # type: ignore[attr-defined]
        engine_model, seed=cfg.trainer.seed
    )
    workers = create_worker_group(
        PolicyWorker,
        cfg.trainer.num_policy_workers,
        model_path,
        cfg.trainer.learning_rate,
        cfg.trainer.seed,
        name_prefix=POLICY_NAME_PREFIX,
        num_cpus=1 / cfg.trainer.num_policy_workers,
    )
    ray.get(engine.__ray_ready__.remote())
    print("Engine and workers ready; training.", flush=True)

    mean_rewards = []
    batch_size = cfg.generator.prompts_per_step
    with tqdm(total=cfg.trainer.steps, desc="training", unit="step", file=sys.stdout) as bar:
        for step in range(cfg.trainer.steps):
            # Walk through the dataset in order, wrapping around at its end.
            batch = [problems[(step * batch_size + i) % len(problems)] for i in range(batch_size)]
            metrics = train_step(cfg, engine, workers, batch)
            mean_rewards.append(metrics["reward"])
            bar.write(f"step {step + 1}/{cfg.trainer.steps} | {format_metrics(metrics)}")
            bar.update(1)
    return mean_rewards


def broken_copy(model_path: str, copy: Path) -> str:
    """A copy of the model directory in `copy` whose safetensors files are cut short."""
    for source in Path(model_path).iterdir():
        if source.suffix == ".safetensors":
            (copy / source.name).write_bytes(source.read_bytes()[:4096])
        elif source.is_file():
            shutil.copyfile(source, copy / source.name)
    return str(copy)


def train_step(cfg: DictConfig, engine: Any, workers: list[Any], batch: list[Problem]) -> dict[str, Any]:
    """Generate, score, train, sync weights; return the step's metrics."""
    t0 = time.monotonic()
    samples = ray.get(
        engine.generate.remote(
            [problem.prompt for problem in batch],
            n=cfg.generator.samples_per_prompt,
            max_tokens=cfg.generator.max_tokens,
            temperature=cfg.generator.temperature,
        )
    )
    t1 = time.monotonic()

    rollouts, scores = [], []
    for problem, group in zip(batch, samples):
        group_scores = [reward(sample["text"], problem.answer) for sample in group]
        # Group-relative advantage (as GRPO): better than the prompt's other samples is positive.
        baseline = statistics.fmean(group_scores)
        spread = statistics.pstdev(group_scores) or 1.0
        for sample, score in zip(group, group_scores):
            rollouts.append({**sample, "advantage": (score - baseline) / spread})
        scores += group_scores

    shards = [rollouts[rank :: len(workers)] for rank in range(len(workers))]
    results = ray.get([worker.train_step.remote(shard) for worker, shard in zip(workers, shards)])
    t2 = time.monotonic()
    # Every rank holds the same weights after the step; rank 0's go to the engine.
    ray.get(engine.update_weights.remote(workers[0].state_dict.remote()))
    t3 = time.monotonic()

    return {
        "reward": statistics.fmean(scores),
        "correct": sum(score == 1.0 for score in scores),
        "samples": len(scores),
        "loss": statistics.fmean(result["loss"] for result in results),
        "grad_norm": results[0]["grad_norm"],
        "response_tokens": statistics.fmean(len(rollout["token_ids"]) for rollout in rollouts),
        "generate_s": t1 - t0,
        "train_s": t2 - t1,
        "sync_s": t3 - t2,
    }


def format_metrics(metrics: dict[str, Any]) -> str:
    return (
        f"reward {metrics['reward']:.3f} | correct {metrics['correct']}/{metrics['samples']} | "
        f"loss {metrics['loss']:+.4f} | grad_norm {metrics['grad_norm']:.3f} | "
        f"response_tokens {metrics['response_tokens']:.1f} | "
        f"time generate {metrics['generate_s']:.2f}s train {metrics['train_s']:.2f}s "
        f"sync {metrics['sync_s']:.2f}s"
    )


def print_infra_summary(log_file: Path | None) -> None:
    if log_file is None:
        print(
            "SKYRL_DUMP_INFRA_LOG_TO_STDOUT is set: infrastructure output was shown above, "
            "no infra log was written."
        )
        return
    print(f"Infrastructure logs: {log_file}")
    counts = lines_per_actor(log_file)
    for actor, lines in sorted(counts.items()):
        print(f"  {actor:<24} {lines:>6} lines")
    print(f"  {'total':<24} {sum(counts.values()):>6} lines")
