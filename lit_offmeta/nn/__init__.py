"""Networks for gradient-based meta-RL: weight/bias-transform layers, MACAW's policy and value MLPs."""

from lit_offmeta.nn.config import NetConfig
from lit_offmeta.nn.layers import (
    LAYER_TYPES,
    BiasTransformLinear,
    PlainLinear,
    WeightTransformLinear,
    make_layer,
)
from lit_offmeta.nn.networks import (
    POLICY_STD,
    LayerWeights,
    MeanPolicyNetwork,
    MetaMLP,
    PolicyNetwork,
    ValueNetwork,
    Weights,
    gaussian_log_prob,
    layer_preset,
    num_parameters,
)

__all__ = [
    "LAYER_TYPES",
    "POLICY_STD",
    "BiasTransformLinear",
    "LayerWeights",
    "MeanPolicyNetwork",
    "MetaMLP",
    "NetConfig",
    "PlainLinear",
    "PolicyNetwork",
    "ValueNetwork",
    "WeightTransformLinear",
    "Weights",
    "gaussian_log_prob",
    "layer_preset",
    "make_layer",
    "num_parameters",
]
