"""Configuration with Hydra-style overrides, as in SkyRL: `trainer.log_path=/path/to/logs`.

Where the infra log goes is `trainer.log_path`, next to SkyRL's `trainer.ckpt_path` and
`trainer.export_path`. It defaults to a node-local directory; point it at shared storage to
get one file for all nodes (docs/integration.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from skyrl_fdlog import DEFAULT_LOG_PATH

# Hydra is an optional dependency (the demo extra): the capture and the reader run without it.
try:
    from hydra import compose, initialize
    from hydra.core.config_store import ConfigStore
    from omegaconf import DictConfig
except ImportError as error:
    raise ImportError(
        f"skyrl_fdlog.config needs Hydra and OmegaConf, which are not installed ({error}); "
        "install them with: pip install 'skyrl-fdlog[demo]'",
        name=error.name,
    ) from error


@dataclass
class TrainerConfig:
    # Directory for infra-YYMMDD_HHMMSS.log files; created on each node that writes to it.
    log_path: str = DEFAULT_LOG_PATH


@dataclass
class Config:
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


def load_config(overrides: Sequence[str] = (), schema: type = Config) -> DictConfig:
    """The dataclass `schema` with Hydra overrides applied (`key.sub=value`, `+new=value`).

    Hydra checks the overrides against the schema: an unknown key or a value of the wrong
    type raises hydra.errors.ConfigCompositionException naming it.
    """
    name = f"{schema.__module__}.{schema.__qualname__}"
    ConfigStore.instance().store(name=name, node=schema)
    with initialize(version_base=None, config_path=None):
        return compose(config_name=name, overrides=list(overrides))
