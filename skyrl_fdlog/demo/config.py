"""The demo's configuration: SkyRL-shaped sections, every field settable as `section.key=value`."""

from __future__ import annotations

from dataclasses import dataclass, field

from skyrl_fdlog.config import TrainerConfig


@dataclass
class DemoTrainerConfig(TrainerConfig):
    steps: int = 20
    learning_rate: float = 1e-2
    num_policy_workers: int = 2
    seed: int = 42


@dataclass
class GeneratorConfig:
    prompts_per_step: int = 8
    samples_per_prompt: int = 4
    max_tokens: int = 6
    temperature: float = 1.0


@dataclass
class DataConfig:
    num_prompts: int = 64


@dataclass
class ModelConfig:
    # A Hugging Face model directory; empty means the tiny random Llama built by the demo.
    path: str = ""
    # Where the tiny Llama is built and kept; empty means ~/.cache/skyrl_fdlog.
    cache_dir: str = ""


# demo.fail_at's values: where the demo breaks on purpose, to watch a failure reach the terminal.
FAIL_AT_CHOICES = ("", "engine_start")


@dataclass
class WatchConfig:
    # "engine_start": the engine gets a copy of the model whose weights file is cut short, so
    # vLLM's EngineCore process fails while loading it and the engine's __init__ raises.
    fail_at: str = ""


@dataclass
class DemoConfig:
    trainer: DemoTrainerConfig = field(default_factory=DemoTrainerConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    demo: WatchConfig = field(default_factory=WatchConfig)
