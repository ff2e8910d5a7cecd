"""The network settings the gradient-based modules share (MACAW, meta-BC, multi-task AWR), as one typed config.

LightningCLI reads it from a YAML block (``model.init_args.net.width: 100``); in Python pass a
:class:`NetConfig` or a plain dict with the same keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from lit_offmeta.nn.layers import LAYER_TYPES
from lit_offmeta.nn.networks import layer_preset


class TypedConfig:
    """What the settings dataclasses share: built from a mapping (a YAML block, a checkpoint's hyperparameters)
    and written back as one. Subclasses are frozen dataclasses and name their YAML block in ``block``."""

    block = "config"

    @classmethod
    def of(cls, value: Any) -> Any:
        """``value`` as a config: an instance as is, a mapping by its keys, refusing unknown ones (naming the block
        and the known keys)."""
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping) and set(value) == {"class_path", "init_args"}:
            value = value["init_args"]  # LightningCLI's form in the hyperparameters of the checkpoints it writes
        if not isinstance(value, Mapping):
            raise TypeError(f"{cls.block}: expected a {cls.__name__} or a mapping of its fields, "
                            f"got {type(value).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"{cls.block}: unknown key(s) {unknown}; {cls.__name__} has {sorted(known)}")
        return cls(**value)

    def as_dict(self) -> dict[str, Any]:
        """The settings as plain data (what checkpoints and ``hparams.yaml`` hold)."""
        return asdict(self)


@dataclass(frozen=True)
class NetConfig(TypedConfig):
    """The policy and value MLPs: ``[in] + [width] * depth + [out]`` built from one layer type.

    Attributes:
        width: hidden width (paper: 100).
        depth: number of hidden layers (paper: 3).
        layer: ``weight_transform`` (MACAW's layer), ``bias_transform`` (the authors' code's "no WT") or
            ``linear``.
        equal_params: with a layer other than ``weight_transform``, widen each network until it has as many
            parameters as its weight-transform version ("No WT-Equal Params", paper Fig. 4 centre); otherwise the
            networks keep ``width`` ("No WT-Equal Width").
        latent_size: weight-transform latent size (paper: 100).
    """

    width: int = 100
    depth: int = 3
    layer: str = "weight_transform"
    equal_params: bool = False
    latent_size: int = 100

    block = "net"

    def __post_init__(self) -> None:
        if self.layer not in LAYER_TYPES:
            raise ValueError(f"net: layer must be one of {LAYER_TYPES}, got {self.layer!r}")
        for name in ("width", "depth", "latent_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"net: {name} must be an integer >= 1, got {value!r}")

    def widths(self, obs_dim: int, action_dim: int) -> tuple[int, int]:
        """``(policy_width, value_width)``: ``width``, or the equal-parameter widths when ``equal_params``."""
        if not self.equal_params or self.layer == "weight_transform":
            return self.width, self.width
        _, policy_width, value_width = layer_preset("equal_params", obs_dim, action_dim, self.width, self.depth,
                                                    self.latent_size, plain_layer=self.layer)
        return policy_width, value_width

