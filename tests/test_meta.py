"""The functional inner loop: closed form == vmap == per-task loop (values and meta-gradients), learned rates."""

from __future__ import annotations

import math

import pytest
import torch

from lit_offmeta.meta import InnerLearningRates, adapt, inverse_softplus
from lit_offmeta.nn import PolicyNetwork, gaussian_log_prob

K, B, OBS, ACT, DEPTH = 3, 6, 3, 2, 2


def _setup(layer: str, seed: int = 0, device: str = "cpu"):
    """The same network, rates and data for a given seed on any device (drawn on the CPU, then moved)."""
    torch.manual_seed(seed)
    net = PolicyNetwork(OBS, ACT, width=8, depth=DEPTH, layer=layer, latent_size=5).double()
    lrs = InnerLearningRates(dict(net.named_parameters()), 0.05).double()
    data = {
        "obs": torch.randn(K, B, OBS, dtype=torch.float64),
        "actions": torch.rand(K, B, ACT, dtype=torch.float64) * 2 - 1,
        "adv": torch.randn(K, 2, B, dtype=torch.float64),
    }
    net, lrs = net.to(device), lrs.to(device)
    data = {k: v.to(device) for k, v in data.items()}
    lam = torch.tensor(0.3, dtype=torch.float64, device=device, requires_grad=True)

    def loss_fn(weights, task, step):
        # MACAW's inner policy loss shape: weighted log-likelihood + lambda * advantage regression.
        mean, predicted = PolicyNetwork.mean_and_advantage_from_weights(weights, task["obs"], task["actions"], DEPTH)
        adv = task["adv"][step]
        nll = -(gaussian_log_prob(mean, task["actions"]) * torch.exp(adv)).mean()
        return nll + lam * ((predicted - adv) ** 2).mean()

    return net, lrs, lam, data, loss_fn


def _meta_grads(net, lrs, lam, data, loss_fn, steps, first_order, mode):
    params = dict(net.named_parameters())
    trajectory, losses = adapt(net, params, lrs(), loss_fn, data, steps, first_order, mode)
    # An outer loss touching every adapted weight of every task.
    outer = sum((w**2).sum() + torch.sin(b).sum() for w, b in trajectory[-1])
    inputs = [*params.values(), *lrs.parameters(), lam]
    grads = torch.autograd.grad(outer, inputs, allow_unused=True)
    return trajectory, losses, [torch.zeros((), device=lam.device) if g is None else g for g in grads]


@pytest.mark.parametrize("layer", ["weight_transform", "bias_transform", "linear"])
@pytest.mark.parametrize("steps", [1, 2])
@pytest.mark.parametrize("first_order", [False, True])
def test_closed_form_vmap_and_loop_agree(layer, steps, first_order):
    """Adapted weights, inner losses and meta-gradients are the same in all three modes."""
    net, lrs, lam, data, loss_fn = _setup(layer)
    results = {m: _meta_grads(net, lrs, lam, data, loss_fn, steps, first_order, m) for m in ("loop", "vmap",
                                                                                              "closed_form")}
    ref_traj, ref_losses, ref_grads = results["loop"]
    for mode in ("vmap", "closed_form"):
        traj, losses, grads = results[mode]
        assert len(traj) == steps
        for t in range(steps):
            for (w, b), (w_ref, b_ref) in zip(traj[t], ref_traj[t]):
                assert w.shape == (K, *w_ref.shape[1:])
                torch.testing.assert_close(w, w_ref)
                torch.testing.assert_close(b, b_ref)
            torch.testing.assert_close(losses[t], ref_losses[t])
        for g, g_ref in zip(grads, ref_grads):
            torch.testing.assert_close(g, g_ref)


def test_tasks_adapt_independently():
    """Task k's adapted weights depend only on task k's data (vmap must not mix tasks)."""
    net, lrs, lam, data, loss_fn = _setup("weight_transform")
    params = dict(net.named_parameters())
    full, _ = adapt(net, params, lrs(), loss_fn, data, 1)
    single, _ = adapt(net, params, lrs(), loss_fn, {k: v[1:2] for k, v in data.items()}, 1)
    for (w, _), (w1, _) in zip(full[-1], single[-1]):
        torch.testing.assert_close(w[1], w1[0])


def test_one_step_matches_hand_written_sgd_on_unfactored_layer():
    """The closed form equals SGD on (z, G, c) done by hand with autograd, for one WT layer."""
    net, lrs, lam, data, loss_fn = _setup("weight_transform")
    params = {k: v.detach().clone().requires_grad_() for k, v in net.named_parameters()}
    rates = {k: v.detach() for k, v in lrs().items()}
    task = {k: v[0] for k, v in data.items()}
    loss = loss_fn(net.effective_weights(params), task, 0)
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
    by_hand = net.effective_weights({k: p - rates[k] * grads[k] for k, p in params.items()})
    closed, _ = adapt(net, params, rates, loss_fn, {k: v[:1] for k, v in data.items()}, 1)
    for (w, b), (w_ref, b_ref) in zip(closed[-1], by_hand):
        torch.testing.assert_close(w[0], w_ref)
        torch.testing.assert_close(b[0], b_ref)


def test_learned_rates_and_lambda_get_nonzero_meta_gradients():
    net, lrs, lam, data, loss_fn = _setup("weight_transform")
    _, _, grads = _meta_grads(net, lrs, lam, data, loss_fn, 1, False, "closed_form")
    n_params = len(dict(net.named_parameters()))
    rate_grads, lam_grad = grads[n_params:-1], grads[-1]
    assert len(rate_grads) == n_params
    assert all(g.abs() > 0 for g in rate_grads)
    assert lam_grad.abs() > 0


def test_first_order_drops_second_order_terms():
    """First-order, linear layers: theta' = theta - lr * stopgrad(g), so d L(theta') / d theta = grad L at theta'.

    Second-order adds -lr * H g; with first_order the meta-gradient has no such term and lambda (which only
    enters through the inner gradient) gets none.
    """
    net, lrs, lam, data, loss_fn = _setup("linear")
    params = dict(net.named_parameters())
    trajectory, _ = adapt(net, params, lrs(), loss_fn, data, 1, first_order=True)
    adapted = [(w.detach().requires_grad_(), b.detach().requires_grad_()) for w, b in trajectory[-1]]

    def outer(weights):
        return sum((w**2).sum() + torch.sin(b).sum() for w, b in weights)

    meta = torch.autograd.grad(outer(trajectory[-1]), list(params.values()), retain_graph=True)
    at_adapted = torch.autograd.grad(outer(adapted), [t for pair in adapted for t in pair])
    for g, g_adapted in zip(meta, at_adapted):
        torch.testing.assert_close(g, g_adapted.sum(0))  # summed over tasks
    (lam_grad,) = torch.autograd.grad(outer(trajectory[-1]), [lam], allow_unused=True)
    assert lam_grad is None
    _, _, grads_second = _meta_grads(net, lrs, lam, data, loss_fn, 1, False, "closed_form")
    assert any(not torch.allclose(a, b) for a, b in zip(grads_second, meta))


def test_zero_steps_returns_meta_weights_for_every_task():
    net, lrs, lam, data, loss_fn = _setup("weight_transform")
    trajectory, losses = adapt(net, dict(net.named_parameters()), lrs(), loss_fn, data, 0)
    assert losses == [] and len(trajectory) == 1
    for (w, _), (w0, _) in zip(trajectory[0], net.current_weights()):
        torch.testing.assert_close(w, w0.expand(K, *w0.shape))


def test_inverse_softplus_is_exact():
    for x in (1e-5, 1e-3, 0.01, 1.0, 30.0):
        assert math.isclose(torch.nn.functional.softplus(torch.tensor(inverse_softplus(x), dtype=torch.float64)).item(),
                            x, rel_tol=1e-9)
    lrs = InnerLearningRates(["a.b", "c"], 1e-3)
    assert set(lrs()) == {"a.b", "c"}
    torch.testing.assert_close(lrs()["a.b"], torch.tensor(1e-3))
    with pytest.raises(ValueError, match="> 0"):
        inverse_softplus(0.0)


def test_bad_arguments_raise():
    net, lrs, lam, data, loss_fn = _setup("linear")
    params = dict(net.named_parameters())
    with pytest.raises(ValueError, match="mode must be one of"):
        adapt(net, params, lrs(), loss_fn, data, 1, mode="fast")
    with pytest.raises(ValueError, match="steps must be >= 0"):
        adapt(net, params, lrs(), loss_fn, data, -1)
    with pytest.raises(ValueError, match="no inner learning rate"):
        adapt(net, params, {}, loss_fn, data, 1)


@pytest.mark.parametrize("frozen", [False, True])
def test_closed_form_without_meta_gradients_matches_loop(frozen):
    """Frozen parameters (no requires_grad) or an enclosing no_grad still adapt, exactly as the per-task loop."""
    net, lrs, lam, data, loss_fn = _setup("weight_transform")
    if frozen:
        net.requires_grad_(False)
    params, rates = dict(net.named_parameters()), {k: v.detach() for k, v in lrs().items()}
    reference, ref_losses = adapt(net, params, rates, loss_fn, data, 2, mode="loop")
    with torch.no_grad() if not frozen else torch.enable_grad():
        closed, losses = adapt(net, params, rates, loss_fn, data, 2, mode="closed_form")
    for (w, b), (w_ref, b_ref) in zip(closed[-1], reference[-1]):
        torch.testing.assert_close(w, w_ref)
        torch.testing.assert_close(b, b_ref)
    torch.testing.assert_close(losses[1], ref_losses[1])


def test_generator_gradient_is_one_product_per_layer(monkeypatch):
    """Second order, two steps: each weight-transform layer's generator gradient is formed by exactly one
    _GeneratorSlots backward (its factors stacked), and equals the per-task loop's (checked above) here too."""
    from lit_offmeta.meta import adaptation

    net, lrs, lam, data, loss_fn = _setup("weight_transform")
    calls = []
    backward = adaptation._GeneratorSlots.backward

    def counting(ctx, d_slots):
        calls.append(d_slots.shape)
        return backward(ctx, d_slots)

    monkeypatch.setattr(adaptation._GeneratorSlots, "backward", staticmethod(counting))
    _, _, grads = _meta_grads(net, lrs, lam, data, loss_fn, 2, False, "closed_form")
    _, _, ref = _meta_grads(net, lrs, lam, data, loss_fn, 2, False, "loop")
    n_wt = len(net.layers)
    assert len(calls) == n_wt
    assert all(shape[0] == 1 + 2 * 2 * K for shape in calls)  # G z, then G^T g and G Z per step and task
    for g, g_ref in zip(grads, ref):
        torch.testing.assert_close(g, g_ref)


@pytest.mark.parametrize("mode", ["closed_form", "vmap", "loop"])
@pytest.mark.parametrize("first_order", [False, True])
def test_task_batched_loss_equals_per_task_loss(mode, first_order):
    """``task_batched=True`` (loss on [K, ...] weights, run as baddbmm) == the per-task loss in the loop mode:
    adapted weights, inner losses and meta-gradients, two steps."""
    net, lrs, lam, data, loss_fn = _setup("weight_transform")

    def batched_loss_fn(weights, tasks, step):  # the same loss, written for a batch of tasks: [K] losses
        mean, predicted = PolicyNetwork.mean_and_advantage_from_weights(weights, tasks["obs"], tasks["actions"],
                                                                        DEPTH)
        adv = tasks["adv"][:, step]
        nll = -(gaussian_log_prob(mean, tasks["actions"]) * torch.exp(adv)).mean(-1)
        return nll + lam * ((predicted - adv) ** 2).mean(-1)

    ref_traj, ref_losses, ref_grads = _meta_grads(net, lrs, lam, data, loss_fn, 2, first_order, "loop")
    params = dict(net.named_parameters())
    traj, losses = adapt(net, params, lrs(), batched_loss_fn, data, 2, first_order, mode, task_batched=True)
    outer = sum((w**2).sum() + torch.sin(b).sum() for w, b in traj[-1])
    grads = torch.autograd.grad(outer, [*params.values(), *lrs.parameters(), lam], allow_unused=True)
    for t in range(2):
        for (w, b), (w_ref, b_ref) in zip(traj[t], ref_traj[t]):
            torch.testing.assert_close(w, w_ref)
            torch.testing.assert_close(b, b_ref)
        torch.testing.assert_close(losses[t], ref_losses[t])
    for g, g_ref in zip(grads, ref_grads):
        torch.testing.assert_close(torch.zeros(()) if g is None else g, g_ref)


@pytest.mark.parametrize("first_order", [False, True])
def test_returned_inner_losses_stay_differentiable(first_order):
    """The inner losses that adapt returns can be differentiated afterwards (MetaFineTuner's SGD does this), with
    the same gradient as the per-task loop's."""
    net, lrs, lam, data, loss_fn = _setup("weight_transform")
    params = dict(net.named_parameters())
    grads = {}
    for mode in ("closed_form", "loop"):
        _, losses = adapt(net, params, lrs(), loss_fn, data, 1, first_order, mode)
        grads[mode] = torch.autograd.grad(losses[0].sum(), list(params.values()))
    for g, g_ref in zip(grads["closed_form"], grads["loop"]):
        torch.testing.assert_close(g, g_ref)


def test_inner_loop_config_validates_and_reads_mappings():
    from lit_offmeta.meta import InnerLoopConfig

    assert InnerLoopConfig.of({"steps": 2, "mode": "vmap"}) == InnerLoopConfig(steps=2, mode="vmap")
    with pytest.raises(ValueError, match="mode must be one of"):
        InnerLoopConfig(mode="fast")
    with pytest.raises(ValueError, match="test_steps must be an integer >= 0"):
        InnerLoopConfig(test_steps=-1)
    with pytest.raises(ValueError, match="lr_of_lrs must be > 0"):
        InnerLoopConfig(lr_of_lrs=0.0)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['inner_steps'\]"):
        InnerLoopConfig.of({"inner_steps": 1})


def test_macaw_keeps_its_configs_as_plain_dicts_in_its_hyperparameters():
    """The typed configs are saved as plain dicts, so a checkpoint loads with weights_only=True and rebuilds them."""
    from lit_offmeta.algorithms import MACAW
    from lit_offmeta.meta import InnerLoopConfig
    from lit_offmeta.nn import NetConfig

    model = MACAW(2, 2, net=NetConfig(width=8, depth=1, latent_size=4), inner=InnerLoopConfig(test_steps=3))
    assert model.hparams.net == {"width": 8, "depth": 1, "layer": "weight_transform", "equal_params": False,
                                 "latent_size": 4}
    hparams = dict(model.hparams)
    rebuilt = MACAW(**hparams)
    assert rebuilt.net_config == model.net_config and rebuilt.inner.test_steps == 3
