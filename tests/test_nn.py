"""Layers and networks of lit_offmeta.nn: effective weights, Appendix B's rank property, presets, materialise."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lit_offmeta.nn import (
    BiasTransformLinear,
    PlainLinear,
    PolicyNetwork,
    ValueNetwork,
    WeightTransformLinear,
    gaussian_log_prob,
    layer_preset,
    make_layer,
    num_parameters,
)


@pytest.mark.parametrize("layer", ["weight_transform", "bias_transform", "linear"])
def test_layer_forward_is_linear_map_with_effective_weights(layer):
    """Every layer computes x W^T + b with the (W, b) that `effective` returns."""
    torch.manual_seed(0)
    module = make_layer(layer, 4, 3, latent_size=6)
    x = torch.randn(5, 4)
    weight, bias = module.effective(dict(module.named_parameters()))
    assert weight.shape == (3, 4) and bias.shape == (3,)
    torch.testing.assert_close(module(x), x @ weight.T + bias)


def test_weight_transform_effective_weights_by_hand():
    """[vec(W); b] = G z + c, with W read row-major (out, in)."""
    layer = WeightTransformLinear(2, 2, latent_size=1)
    with torch.no_grad():
        layer.generator.weight.copy_(torch.tensor([[1.0], [2.0], [3.0], [4.0], [5.0], [6.0]]))
        layer.generator.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, 0.5, -0.5]))
        layer.latent.copy_(torch.tensor([2.0]))
    weight, bias = layer.effective(dict(layer.named_parameters()))
    torch.testing.assert_close(weight, torch.tensor([[2.0, 4.0], [6.0, 8.0]]))
    torch.testing.assert_close(bias, torch.tensor([10.5, 11.5]))


def test_bias_transform_effective_bias_by_hand():
    layer = BiasTransformLinear(1, 2)
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([1.0, 2.0]))
        layer.bias_transform.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        layer.bias_latent.copy_(torch.tensor([1.0, -1.0]))
    _, bias = layer.effective(dict(layer.named_parameters()))
    torch.testing.assert_close(bias, torch.tensor([0.0, 1.0]))


def _one_step_weight_update(layer: nn.Module, lr: float = 0.1) -> torch.Tensor:
    """Change of the effective weight matrix after one SGD step on ONE sample's squared error."""
    torch.manual_seed(1)
    x, target = torch.randn(1, 8), torch.randn(1, 8)
    params = dict(layer.named_parameters())
    loss = ((layer(x) - target) ** 2).sum()
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
    before, _ = layer.effective(params)
    after, _ = layer.effective({k: p - lr * grads[k] for k, p in params.items()})
    return (after - before).detach()


def test_weight_transform_one_step_update_has_rank_above_one():
    """Appendix B: a WT layer's one-step update of W has rank up to the latent size (+1); a Linear's is 1."""
    torch.manual_seed(0)
    wt_rank = torch.linalg.matrix_rank(_one_step_weight_update(WeightTransformLinear(8, 8, latent_size=16)))
    linear_rank = torch.linalg.matrix_rank(_one_step_weight_update(PlainLinear(8, 8)))
    assert linear_rank == 1
    assert wt_rank > 1
    # The update is G z' - G z - lr g z.z' (...): G's column space, so at most min(8, latent + 1) = 8 here.
    assert wt_rank == 8


def test_parameter_counts_match_reference_at_cheetah_shapes():
    """docs/REFERENCE.md, "Networks": policy about 2.66M and value about 2.26M parameters (obs 20, act 6, width 100,
    depth 3)."""
    policy = PolicyNetwork(20, 6, width=100, depth=3, layer="weight_transform", latent_size=100)
    value = ValueNetwork(20, width=100, depth=3, layer="weight_transform", latent_size=100)
    assert round(num_parameters(policy) / 1e6, 2) == 2.66
    assert round(num_parameters(value) / 1e6, 2) == 2.26


def test_presets_equal_width_and_equal_params():
    assert layer_preset("equal_width", 20, 6, 100, 3) == ("bias_transform", 100, 100)
    layer, policy_width, value_width = layer_preset("equal_params", 20, 6, 100, 3)
    assert layer == "bias_transform"
    wt = num_parameters(PolicyNetwork(20, 6, 100, 3, "weight_transform"))
    bt = num_parameters(PolicyNetwork(20, 6, policy_width, 3, "bias_transform"))
    smaller = num_parameters(PolicyNetwork(20, 6, policy_width - 1, 3, "bias_transform"))
    assert smaller < wt <= bt  # the smallest width reaching the WT network's count
    assert value_width > 100
    with pytest.raises(ValueError, match="preset must be"):
        layer_preset("wide", 20, 6, 100, 3)


def test_policy_mean_is_tanh_bounded_and_advantage_head_uses_action():
    torch.manual_seed(0)
    policy = PolicyNetwork(3, 2, width=16, depth=2, layer="weight_transform", latent_size=4)
    obs = torch.randn(7, 3)
    weights = policy.current_weights()
    mean, adv = PolicyNetwork.mean_and_advantage_from_weights(weights, obs, torch.zeros(7, 2), depth=2)
    _, adv2 = PolicyNetwork.mean_and_advantage_from_weights(weights, obs, torch.ones(7, 2), depth=2)
    assert mean.abs().max() < 1 and adv.shape == (7,)
    assert not torch.allclose(adv, adv2)
    torch.testing.assert_close(policy(obs), mean)


def test_materialise_is_a_plain_sequential_that_round_trips(tmp_path):
    """The materialised policy needs only torch.nn to load and computes the same mean action."""
    torch.manual_seed(0)
    policy = PolicyNetwork(3, 2, width=16, depth=2, layer="weight_transform", latent_size=4)
    plain = policy.materialise()
    assert all(type(m) in (nn.Linear, nn.ReLU, nn.Tanh) for m in plain)
    obs = torch.randn(5, 3)
    torch.testing.assert_close(plain(obs), policy(obs))
    torch.save(plain.state_dict(), tmp_path / "policy.pt")
    rebuilt = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2), nn.Tanh())
    rebuilt.load_state_dict(torch.load(tmp_path / "policy.pt", weights_only=True))
    torch.testing.assert_close(rebuilt(obs), policy(obs))


def test_gaussian_log_prob_by_hand():
    """log N(a; mu, 0.2^2) summed over 2 dims at a - mu = (0.2, 0): -0.5 - 2 log 0.2 - log(2 pi)."""
    value = gaussian_log_prob(torch.zeros(1, 2), torch.tensor([[0.2, 0.0]]))
    expected = -0.5 - 2 * torch.log(torch.tensor(0.2)) - torch.log(torch.tensor(2 * torch.pi))
    torch.testing.assert_close(value, expected.reshape(1))


def test_bad_sizes_and_layer_types_raise():
    with pytest.raises(ValueError, match="layer must be one of"):
        make_layer("conv", 2, 2)
    with pytest.raises(ValueError, match="latent_size"):
        WeightTransformLinear(2, 2, latent_size=0)
    with pytest.raises(ValueError, match="depth"):
        ValueNetwork(2, width=8, depth=0)



def test_task_batched_weights_equal_per_task_evaluation():
    """``W [K, out, in]`` with ``obs [K, B, ...]`` (one baddbmm per layer) == each task's weights on its own data."""
    torch.manual_seed(0)
    policy, value = PolicyNetwork(3, 2, width=8, depth=2, latent_size=4), ValueNetwork(3, width=8, depth=2)
    obs, actions = torch.randn(4, 5, 3), torch.rand(4, 5, 2) * 2 - 1

    def per_task(weights):  # K = 4 different weight sets around the network's own
        return [(w + 0.1 * torch.randn(4, *w.shape), b + 0.1 * torch.randn(4, *b.shape)) for w, b in weights]

    batched_p, batched_v = per_task(policy.current_weights()), per_task(value.current_weights())
    mean, adv = PolicyNetwork.mean_and_advantage_from_weights(batched_p, obs, actions, 2)
    values = ValueNetwork.value_from_weights(batched_v, obs)
    for k in range(4):
        weights_p, weights_v = [(w[k], b[k]) for w, b in batched_p], [(w[k], b[k]) for w, b in batched_v]
        mean_k, adv_k = PolicyNetwork.mean_and_advantage_from_weights(weights_p, obs[k], actions[k], 2)
        torch.testing.assert_close(mean[k], mean_k)
        torch.testing.assert_close(adv[k], adv_k)
        torch.testing.assert_close(values[k], ValueNetwork.value_from_weights(weights_v, obs[k]))
    assert not torch.allclose(values[0], values[1])


def test_polyak_update_by_hand():
    from lit_offmeta.nn.polyak import polyak_update

    target = [torch.tensor([1.0, 2.0]), torch.tensor([[4.0]])]
    source = [torch.tensor([3.0, 0.0]), torch.tensor([[0.0]])]
    polyak_update(target, source, 0.25)  # (1 - 0.25) * target + 0.25 * source
    torch.testing.assert_close(target[0], torch.tensor([1.5, 1.5]))
    torch.testing.assert_close(target[1], torch.tensor([[3.0]]))
    polyak_update(target, source, 1.0)
    torch.testing.assert_close(target[0], source[0])
    with pytest.raises(ValueError, match="2 target tensors but 1 source"):
        polyak_update(target, source[:1], 0.5)


def test_net_config_reads_mappings_refuses_unknown_keys_and_sizes_the_equal_params_ablation():
    from lit_offmeta.nn import NetConfig, layer_preset

    assert NetConfig.of({"width": 8, "depth": 2}) == NetConfig(width=8, depth=2)
    cfg = NetConfig(width=8, depth=2)
    assert NetConfig.of(cfg) is cfg
    cli_form = {"class_path": "lit_offmeta.nn.NetConfig", "init_args": {"width": 8, "depth": 2}}
    assert NetConfig.of(cli_form) == cfg  # what LightningCLI writes into a checkpoint's hyperparameters
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['widht'\]"):
        NetConfig.of({"widht": 8})
    with pytest.raises(TypeError, match="expected a NetConfig"):
        NetConfig.of(8)
    with pytest.raises(ValueError, match="width must be an integer >= 1"):
        NetConfig(width=0)
    assert NetConfig(width=8, layer="linear").widths(2, 2) == (8, 8)  # equal width
    for layer in ("linear", "bias_transform"):
        equal = NetConfig(width=8, depth=2, latent_size=4, layer=layer, equal_params=True)
        assert equal.widths(2, 3) == layer_preset("equal_params", 2, 3, 8, 2, 4, plain_layer=layer)[1:]
    assert NetConfig(width=8, equal_params=True).widths(2, 3) == (8, 8)  # weight transform: nothing to equalise


def test_effective_weights_are_named_per_layer():
    from lit_offmeta.nn import LayerWeights

    net = ValueNetwork(3, 4, 1, "linear")
    weights = net.current_weights()
    assert all(isinstance(layer, LayerWeights) for layer in weights)
    assert weights[0].weight.shape == (4, 3) and weights[0].bias.shape == (4,)
