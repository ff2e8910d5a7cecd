r"""The functional inner loop: a few SGD steps with learned per-tensor learning rates, for a batch of tasks.

``adapt(net, meta_params, lrs, loss_fn, data, steps, ...)`` returns every task's adapted *effective* weights
(``(W [K, out, in], b [K, out])`` per layer) after each step, which is all the outer loss, the next
network's inner loss and ``materialise`` need.

``loss_fn(weights, task_data, step) -> scalar`` is one task's inner loss at inner step ``step`` (0-based),
written against effective weights and unbatched data ``[B, ...]``; the caller's closures (e.g. the learned
lambda) stay differentiable.

Three modes compute the same function (tests prove it). ``"vmap"`` is the readable reference: read it to see
what the inner loop does. ``"closed_form"`` is the optimisation that runs by default: the same numbers without
per-task copies of the weight-transform generators. ``"loop"`` exists for tests to compare against.

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
from torch.autograd.function import once_differentiable
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
    task_batched: bool = False,
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
        task_batched: ``loss_fn`` takes task-batched weights (``W [K, out, in]``) and data (``[K, B, ...]``)
            and returns the ``[K]`` per-task losses. The closed form then calls it once per step, without
            ``vmap`` (the networks' ``*_from_weights`` run such weights as ``baddbmm``); the other modes call
            it with ``K = 1``.

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
        return _adapt_closed_form(net, meta_params, lrs, loss_fn, data, steps, first_order, task_batched)
    if task_batched:  # the per-task function the reference modes need: a batch of one task
        batched_loss_fn = loss_fn

        def loss_fn(weights: Weights, task_data: dict[str, Tensor], step: int) -> Tensor:
            one = [(w.unsqueeze(0), b.unsqueeze(0)) for w, b in weights]
            return batched_loss_fn(one, {k: v.unsqueeze(0) for k, v in task_data.items()}, step)[0]

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


def _adapt_closed_form(net, meta_params, lrs, loss_fn, data, steps, first_order, task_batched):
    num_tasks = next(iter(data.values())).shape[0]
    cut = (lambda t: t.detach()) if first_order else (lambda t: t)
    layers = []
    for i, layer in enumerate(net.layers):
        prefix = f"layers.{i}."
        params = {k[len(prefix) :]: v for k, v in meta_params.items() if k.startswith(prefix)}
        layer_lrs = {k[len(prefix) :]: v for k, v in lrs.items() if k.startswith(prefix)}
        rule = _LAYER_RULES[type(layer)]
        extra = (steps, num_tasks) if rule is _WeightTransformRule else ()
        layers.append(rule(layer, params, layer_lrs, cut, *extra))
    weights = [rule.weights() for rule in layers]
    trajectory, losses = [], []
    for step in range(steps):
        if not step:  # shared meta-weights: a per-task view, so autograd gives each task its own gradient
            weights = [(w.expand(num_tasks, *w.shape), b.expand(num_tasks, *b.shape)) for w, b in weights]
        # Weights that need no meta-gradient (frozen parameters) become leaves so the inner gradient exists.
        weights = [tuple(t if t.requires_grad else t.detach().requires_grad_() for t in wb) for wb in weights]
        # Plain reverse mode on the task-batched loss (task k's loss depends only on weights[...][k]), not
        # vmap(grad): the same gradient, and its double backward runs on ordinary batched ops, faster at the
        # benchmark's shapes than functorch's per-sample grad (docs/MACAW.md, Throughput).
        with torch.enable_grad():  # the inner gradient is needed even when the caller records no graph
            loss = loss_fn(weights, data, step) if task_batched else vmap(loss_fn, in_dims=(0, 0, None))(
                weights, data, step)
            flat = [t for wb in weights for t in wb]
            # retain_graph: the returned inner losses stay differentiable (e.g. the fine-tuner's SGD on them).
            flat_grads = torch.autograd.grad(loss.sum(), flat, create_graph=not first_order, retain_graph=True,
                                             allow_unused=True, materialize_grads=True)  # unused weights: zero
        grads = [flat_grads[i : i + 2] for i in range(0, len(flat_grads), 2)]
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
    """Weight transform, closed form (module docstring): never builds a per-task generator.

    Every product with the shared generator goes through :class:`_GeneratorProduct`, so the generator's
    meta-gradient is formed once, by :class:`_GeneratorSlots`, as one ``[n_w, r] @ [r, latent]`` product.
    """

    def __init__(self, layer: WeightTransformLinear, params, lrs, cut, steps, num_tasks):
        self.layer = layer
        self.gen, self.gen_bias, self.z = params["generator.weight"], params["generator.bias"], params["latent"]
        self.lr_gen, self.lr_gen_bias, self.lr_z = lrs["generator.weight"], lrs["generator.bias"], lrs["latent"]
        self.cut = cut
        self.history: list[tuple[Tensor, Tensor]] = []  # (g_j [K, n_w], z_j [K, latent]) of earlier steps
        # Rows of the generator's gradient factors: G z (1), then per step G^T g and G Z (K each).
        self.slots = _GeneratorSlots.apply(self.gen, 1 + 2 * steps * num_tasks)
        self.gen_data, self.row = self.gen.detach(), 0

    def _product(self, x: Tensor, transpose: bool) -> Tensor:
        y = _GeneratorProduct.apply(x, self.gen_data, self.slots, self.row, transpose)
        self.row += x.shape[0]
        return y

    def weights(self):
        return self.layer.split(self._product(self.z.unsqueeze(0), False)[0] + self.gen_bias)

    def step(self, g_weight, g_bias):
        g = torch.cat([g_weight.flatten(-2), g_bias], dim=-1)  # [K, out*in + out]
        # G_k^T g = G^T g - lr_G sum_j z_j (g_j . g): the gradient w.r.t. z through the current generator.
        grad_z = self._product(g, True)
        for g_j, z_j in self.history:
            grad_z = grad_z - self.lr_gen * z_j * (g_j * g).sum(-1, keepdim=True)
        z_old = self.z.expand(g.shape[0], -1)
        # The generator's gradient is g z^T (z as it was in this step's forward pass).
        self.history.append((self.cut(g), self.cut(z_old)))
        self.z = z_old - self.lr_z * self.cut(grad_z)  # [K, latent]
        w = self._product(self.z, False) + self.gen_bias  # [K, n_w]: G Z, the shared G read once for all tasks
        for g_j, z_j in self.history:
            w = w - g_j * (self.lr_gen_bias + self.lr_gen * (z_j * self.z).sum(-1, keepdim=True))
        return self.layer.split(w)


class _GeneratorSlots(torch.autograd.Function):
    r"""The generator's only autograd edge: ``G -> slots [rows, n_w + latent]`` (zeros, never read).

    Each :class:`_GeneratorProduct` returns, as the gradient of its rows of ``slots``, the two factors of its
    contribution to :math:`\nabla_G` (``y = G x``: :math:`\bar y x^\top`; ``y = G^\top x``: :math:`x \bar y^\top`).
    Autograd sums those zero-padded rows, i.e. stacks them, and calls this backward once with all of them, so
    :math:`\nabla_G = L^\top R` is one matrix product written once, instead of one G-sized product per use of
    G plus the G-sized sums of them (a large part of the old second-order backward).
    """

    @staticmethod
    def forward(ctx, gen: Tensor, rows: int) -> Tensor:
        ctx.n_w = gen.shape[0]
        return gen.new_zeros(rows, gen.shape[0] + gen.shape[1])

    @staticmethod
    @once_differentiable
    def backward(ctx, d_slots: Tensor) -> tuple[Tensor, None]:
        return d_slots[:, : ctx.n_w].T @ d_slots[:, ctx.n_w :], None


class _GeneratorProduct(torch.autograd.Function):
    """``x @ G`` (``transpose``: ``x [M, n_w]``, i.e. ``G^T x`` per row) or ``x @ G^T`` (``x [M, latent]``).

    ``gen`` is the detached generator; its gradient factors go to rows ``row:row + M`` of ``slots``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, gen: Tensor, slots: Tensor, row: int, transpose: bool) -> Tensor:
        ctx.save_for_backward(x, gen)
        ctx.row, ctx.transpose, ctx.slots_shape = row, transpose, slots.shape
        return x @ gen if transpose else x @ gen.T

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: Tensor):
        x, gen = ctx.saved_tensors
        dx = (dy @ gen.T if ctx.transpose else dy @ gen) if ctx.needs_input_grad[0] else None
        d_slots = None
        if ctx.needs_input_grad[2]:
            d_slots = dy.new_zeros(ctx.slots_shape)
            rows, n_w = slice(ctx.row, ctx.row + x.shape[0]), gen.shape[0]
            left, right = (x, dy) if ctx.transpose else (dy, x)  # dG += left^T right
            d_slots[rows, :n_w] = left
            d_slots[rows, n_w:] = right
        return dx, None, d_slots, None, None


_LAYER_RULES = {PlainLinear: _PlainRule, BiasTransformLinear: _BiasTransformRule,
                WeightTransformLinear: _WeightTransformRule}
