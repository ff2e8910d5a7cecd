r"""The functional inner loop: a few SGD steps with learned per-tensor learning rates, for a batch of tasks.

``adapt(net, meta_params, lrs, loss_fn, data, steps, ...)`` returns every task's adapted *effective* weights
(``(W [K, out, in], b [K, out])`` per layer) after each step, which is all the outer loss, the next
network's inner loss and ``materialise`` need.

``loss_fn(weights, task_data, step) -> scalar`` is one task's inner loss at inner step ``step`` (0-based),
written against effective weights and unbatched data ``[B, ...]``; the caller's closures (e.g. the learned
lambda) stay differentiable.

Three modes compute the same function (tests prove it):

* ``"vmap"``: plain ``torch.func`` MAML. One task's adaptation on a parameter dict (``grad`` of the loss
  through ``net.effective_weights``, then ``p - lr * g``), batched over tasks with
  ``vmap(in_dims=(None, 0))``: shared meta-parameters, per-task data. For weight-transform layers this writes
  a per-task copy of every generator (``[K, out*in + out, latent]``).
* ``"loop"``: the same per-task function in a Python loop over tasks, for tests to compare against.
* ``"closed_form"`` (default): the same update computed without per-task generators. For a weight-transform
  layer with effective weights :math:`w = G z + c` and effective-weight gradient :math:`g`, the parameter
  gradients are :math:`\nabla_G = g z^\top`, :math:`\nabla_c = g`, :math:`\nabla_z = G^\top g`, so after a step

  .. math:: z' = z - \alpha_z G^\top g, \qquad
            w' = (G - \alpha_G g z^\top) z' + c - \alpha_c g = G z' + c - (\alpha_c + \alpha_G\, z \cdot z')\, g.

  After ``k`` steps :math:`G_k = G - \alpha_G \sum_{j<k} g_j z_j^\top`, kept as the history
  :math:`(g_j, z_j)`, so :math:`G_k^\top g = G^\top g - \alpha_G \sum_j z_j (g_j \cdot g)` and
  :math:`w_k = G z_k + c - \sum_j (\alpha_c + \alpha_G\, z_j \cdot z_k)\, g_j`. Only :math:`G Z` and
  :math:`G^\top g` products with the shared :math:`G` are needed, batched over tasks. Bias-transform and plain
  linear layers take their (cheap) per-task parameter step directly.

``first_order=True`` detaches every inner gradient (first-order MAML): the adapted weights still depend on the
meta-parameters and learning rates, but no second derivatives are taken.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor
from torch.func import grad_and_value, vmap

from lit_offmeta.nn.layers import BiasTransformLinear, PlainLinear, WeightTransformLinear
from lit_offmeta.nn.networks import MetaMLP, Weights

LossFn = Callable[[Weights, dict[str, Tensor], int], Tensor]
Mode = Literal["closed_form", "vmap", "loop"]
MODES: tuple[str, ...] = ("closed_form", "vmap", "loop")


def adapt(
    net: MetaMLP,
    meta_params: dict[str, Tensor],
    lrs: dict[str, Tensor],
    loss_fn: LossFn,
    data: dict[str, Tensor],
    steps: int,
    first_order: bool = False,
    mode: Mode = "closed_form",
) -> tuple[list[Weights], list[Tensor]]:
    """Adapt ``net`` on each task's ``data`` with ``steps`` SGD steps of ``loss_fn``.

    Args:
        net: the network whose layers define the parameterisation.
        meta_params: ``{name: tensor}`` meta-parameters (shared by all tasks), keyed like ``named_parameters()``.
        lrs: ``{name: scalar}`` inner learning rate of every parameter tensor.
        loss_fn: one task's inner loss ``(weights, task_data, step) -> scalar``.
        data: ``{key: [K, B, ...]}`` per-task inner-loop data.
        steps: number of inner SGD steps (0 returns the meta-parameters' weights for every task).
        first_order: detach inner gradients (no second-order terms).
        mode: ``closed_form | vmap | loop`` (see the module docstring).

    Returns:
        ``(trajectory, inner_losses)``: ``trajectory[t]`` holds the effective weights per layer, with a
        leading task axis ``K``, after step ``t + 1`` (``trajectory[-1]`` is the adapted network; with
        ``steps == 0`` the single entry is the meta-parameters' weights), and ``inner_losses[t]`` ``[K]`` is
        the inner loss before step ``t + 1``.

    Raises:
        ValueError: for a bad ``mode`` or ``steps``, or missing learning rates.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    missing = sorted(set(meta_params) - set(lrs))
    if missing:
        raise ValueError(f"no inner learning rate for parameter(s) {missing}")
    if mode == "closed_form":
        return _adapt_closed_form(net, meta_params, lrs, loss_fn, data, steps, first_order)

    def one_task(params: dict[str, Tensor], task_data: dict[str, Tensor]) -> tuple[list[Weights], list[Tensor]]:
        trajectory, losses = [], []
        for step in range(steps):
            grads, loss = grad_and_value(lambda p, s=step: loss_fn(net.effective_weights(p), task_data, s))(params)
            if first_order:
                grads = {k: g.detach() for k, g in grads.items()}
            params = {k: params[k] - lrs[k] * grads[k] for k in params}
            trajectory.append(net.effective_weights(params))
            losses.append(loss)
        return trajectory or [net.effective_weights(params)], losses

    if mode == "vmap":
        return vmap(one_task, in_dims=(None, 0))(meta_params, data)
    num_tasks = next(iter(data.values())).shape[0]
    per_task = [one_task(meta_params, {k: v[i] for k, v in data.items()}) for i in range(num_tasks)]
    trajectory = [
        [tuple(torch.stack([task[0][t][layer][j] for task in per_task]) for j in range(2))
         for layer in range(len(net.layers))]
        for t in range(len(per_task[0][0]))
    ]
    losses = [torch.stack([task[1][s] for task in per_task]) for s in range(steps)]
    return trajectory, losses


def _adapt_closed_form(net, meta_params, lrs, loss_fn, data, steps, first_order):
    num_tasks = next(iter(data.values())).shape[0]
    cut = (lambda t: t.detach()) if first_order else (lambda t: t)
    layers = []
    for i, layer in enumerate(net.layers):
        prefix = f"layers.{i}."
        params = {k[len(prefix) :]: v for k, v in meta_params.items() if k.startswith(prefix)}
        layer_lrs = {k[len(prefix) :]: v for k, v in lrs.items() if k.startswith(prefix)}
        layers.append(_LAYER_RULES[type(layer)](layer, params, layer_lrs, cut))
    weights = [rule.weights() for rule in layers]
    trajectory, losses = [], []
    for step in range(steps):
        # Step 0: shared meta-weights, per-task data (in_dims None, 0); later steps: per-task weights.
        in_dims = (0, 0, None) if step else (None, 0, None)
        grads, loss = vmap(grad_and_value(loss_fn), in_dims=in_dims)(weights, data, step)
        weights = [rule.step(g_weight, g_bias) for rule, (g_weight, g_bias) in zip(layers, grads)]
        trajectory.append(weights)
        losses.append(loss)
    if not steps:  # every task keeps the meta-parameters' weights
        trajectory = [[(w.expand(num_tasks, *w.shape), b.expand(num_tasks, *b.shape)) for w, b in weights]]
    return trajectory, losses


class _PlainRule:
    """Plain linear layer: parameters are the effective weights; ``W' = W - lr_W g_W``."""

    def __init__(self, layer, params, lrs, cut):
        self.weight, self.bias = params["weight"], params["bias"]
        self.lr_weight, self.lr_bias, self.cut = lrs["weight"], lrs["bias"], cut

    def weights(self):
        return self.weight, self.bias

    def step(self, g_weight, g_bias):
        self.weight = self.weight - self.lr_weight * self.cut(g_weight)
        self.bias = self.bias - self.lr_bias * self.cut(g_bias)
        return self.weights()


class _BiasTransformRule:
    """Bias transform ``b_eff = b + W_b z``: chain rule by hand (all tensors are small, so per-task copies)."""

    def __init__(self, layer, params, lrs, cut):
        self.p = dict(params)
        self.lrs, self.cut = lrs, cut

    def weights(self):
        p = self.p
        return p["weight"], p["bias"] + torch.einsum("...ij,...j->...i", p["bias_transform"], p["bias_latent"])

    def step(self, g_weight, g_bias):
        p, lr, cut = self.p, self.lrs, self.cut
        grads = {
            "weight": g_weight,
            "bias": g_bias,
            "bias_transform": g_bias.unsqueeze(-1) * p["bias_latent"].unsqueeze(-2),  # g z^T
            "bias_latent": torch.einsum("...ij,...i->...j", p["bias_transform"], g_bias),  # W_b^T g
        }
        self.p = {k: p[k] - lr[k] * cut(grads[k]) for k in p}
        return self.weights()


class _WeightTransformRule:
    """Weight transform, closed form (module docstring): never builds a per-task generator."""

    def __init__(self, layer: WeightTransformLinear, params, lrs, cut):
        self.layer = layer
        self.gen, self.gen_bias, self.z = params["generator.weight"], params["generator.bias"], params["latent"]
        self.lr_gen, self.lr_gen_bias, self.lr_z = lrs["generator.weight"], lrs["generator.bias"], lrs["latent"]
        self.cut = cut
        self.history: list[tuple[Tensor, Tensor]] = []  # (g_j [K, n_w], z_j [K, latent]) of earlier steps

    def weights(self):
        return self.layer.split(self.gen @ self.z + self.gen_bias)

    def step(self, g_weight, g_bias):
        g = torch.cat([g_weight.flatten(-2), g_bias], dim=-1)  # [K, out*in + out]
        # G_k^T g = G^T g - lr_G sum_j z_j (g_j . g): the gradient w.r.t. z through the current generator.
        grad_z = g @ self.gen
        for g_j, z_j in self.history:
            grad_z = grad_z - self.lr_gen * z_j * (g_j * g).sum(-1, keepdim=True)
        z_old = self.z.expand(g.shape[0], -1)
        # The generator's gradient is g z^T (z as it was in this step's forward pass).
        self.history.append((self.cut(g), self.cut(z_old)))
        self.z = z_old - self.lr_z * self.cut(grad_z)  # [K, latent]
        w = self.z @ self.gen.T + self.gen_bias  # [K, n_w]: G Z, the shared G read once for all tasks
        for g_j, z_j in self.history:
            w = w - g_j * (self.lr_gen_bias + self.lr_gen * (z_j * self.z).sum(-1, keepdim=True))
        return self.layer.split(w)


_LAYER_RULES = {PlainLinear: _PlainRule, BiasTransformLinear: _BiasTransformRule,
                WeightTransformLinear: _WeightTransformRule}
