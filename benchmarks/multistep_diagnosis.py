"""Why repeating MACAW's learned one-step rates diverges: per-step inner losses, weight norms and sharpness.

Takes ``--steps`` test-time adaptation steps on held-out tasks of a trained checkpoint, every one of them the
meta-trained update (learned per-tensor rates, SGD; value step, then policy step with the updated value: the rule
``MACAW.adapt`` followed for all steps before ``extra_step_lr``), and prints per step k (0 = meta-parameters):

* the value inner loss (Eq. 2) and the policy inner loss (Eq. 3) with its AWR and advantage-regression terms;
* the effective-weight norms of every layer of both networks;
* for k <= ``--sharpness-steps``: ``lr * lambda_max``, the top eigenvalue of ``P^1/2 H P^1/2`` (H the Hessian of the
  value inner loss in parameter space, P the learned rates) by power iteration with Hessian-vector products.
  SGD with rates P is stable along the top direction only where it is below 2.

docs/MACAW.md ("Multi-step adaptation") reports what this measured on the Cheetah-Vel checkpoint::

    OMP_NUM_THREADS=1 python benchmarks/multistep_diagnosis.py \\
        --ckpt runs/cv_cli/macaw_cheetah_vel/version_0/checkpoints/last.ckpt \\
        --family cheetah_vel --data data/cheetah_vel_small --tasks 2 26 --steps 3
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from lit_offmeta.algorithms import MACAW
from lit_offmeta.algorithms.losses import advantage_regression_loss, awr_loss, mc_value_loss
from lit_offmeta.datamodules.offline_meta import OfflineMetaDataModule
from lit_offmeta.nn import PolicyNetwork, ValueNetwork, gaussian_log_prob


def sgd_step(params: dict[str, torch.Tensor], lrs: dict[str, torch.Tensor], loss: torch.Tensor) -> None:
    """``p <- p - lr_p * grad_p`` in place, the learned-rate update of Algorithm 2."""
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True, materialize_grads=True)
    with torch.no_grad():
        for (name, p), g in zip(params.items(), grads):
            p.sub_(lrs[name] * g)


def norms(net, params: dict[str, torch.Tensor]) -> str:
    values = [float(torch.cat([w.flatten(), b.flatten()]).norm()) for w, b in net.effective_weights(params)]
    return " ".join(f"{v:.2g}" for v in values)


def value_sharpness(model: MACAW, params: dict[str, torch.Tensor], task: dict[str, torch.Tensor],
                    iterations: int, seed: int) -> float:
    """``lambda_max(P^1/2 H P^1/2)`` of the value inner loss at ``params`` (power iteration, Rayleigh quotient)."""
    lrs = {k: v.detach() for k, v in model.value_lrs().items()}
    with torch.no_grad():  # the bootstrap target is a constant of the inner loss (mc_value_target detaches it)
        boot = ValueNetwork.value_from_weights(model.value.effective_weights(params), task["bootstrap_obs"])
    targets = task["mc_returns"] + task["bootstrap_discounts"] * (boot if model.hparams.bootstrap else 0.0)
    ps = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    loss = mc_value_loss(ValueNetwork.value_from_weights(model.value.effective_weights(ps), task["obs"]), targets)
    grads = torch.autograd.grad(loss, list(ps.values()), create_graph=True, allow_unused=True, materialize_grads=True)
    gen = torch.Generator().manual_seed(seed)
    v = {k: torch.randn(x.shape, generator=gen) for k, x in ps.items()}
    estimate = 0.0
    for _ in range(iterations):
        scale = torch.sqrt(sum((x**2).sum() for x in v.values()))
        v = {k: x / scale for k, x in v.items()}
        hv = torch.autograd.grad(grads, list(ps.values()), grad_outputs=[v[k] * lrs[k].sqrt() for k in ps],
                                 retain_graph=True, allow_unused=True, materialize_grads=True)
        w = {k: h * lrs[k].sqrt() for k, h in zip(ps, hv)}
        estimate = float(sum((w[k] * v[k]).sum() for k in ps))
        v = w
    return estimate


def diagnose(model: MACAW, task: dict[str, torch.Tensor], steps: int, sharpness_steps: int, iterations: int) -> None:
    batched = {k: v.unsqueeze(0) for k, v in task.items()}  # K = 1
    value = {k: p.detach().clone().requires_grad_() for k, p in model.value.named_parameters()}
    policy = {k: p.detach().clone().requires_grad_() for k, p in model.policy.named_parameters()}
    value_lrs = {k: v.detach() for k, v in model.value_lrs().items()}
    policy_lrs = {k: v.detach() for k, v in model.policy_lrs().items()}
    print("k | value inner loss | policy inner loss (AWR, ADV) | value effective-weight norms | "
          "policy effective-weight norms | lr * lambda_max (value)")
    for k in range(steps + 1):
        with torch.enable_grad():
            loss_value = model.adapt_value(batched, 1, True, value)[1][0].sum()
            value_weights = [(w.unsqueeze(0), b.unsqueeze(0)) for w, b in model.value.effective_weights(value)]
            adv = model.advantages(value_weights, batched)[0]
            mean, predicted = PolicyNetwork.mean_and_advantage_from_weights(
                model.policy.effective_weights(policy), task["obs"], task["actions"], model.policy.depth)
            awr = awr_loss(gaussian_log_prob(mean, task["actions"]), adv, model.hparams.temperature,
                           model.hparams.max_weight)
            adv_reg = advantage_regression_loss(predicted, adv)
            sharp = (f"{value_sharpness(model, value, task, iterations, seed=k):.3g}"
                     if k <= sharpness_steps and torch.isfinite(loss_value) else "")
        print(f"{k} | {float(loss_value):.4g} | {float(awr + model.lam * adv_reg):.4g} ({float(awr):.3g}, "
              f"{float(adv_reg):.3g}) | {norms(model.value, value)} | {norms(model.policy, policy)} | {sharp}",
              flush=True)
        if k == steps or not (torch.isfinite(loss_value) and torch.isfinite(awr)):
            break
        with torch.enable_grad():  # Algorithm 2: value step, then policy step with the updated value
            sgd_step(value, value_lrs, model.adapt_value(batched, 1, True, value)[1][0].sum())
            updated = [tuple(t.detach().unsqueeze(0) for t in wb) for wb in model.value.effective_weights(value)]
            sgd_step(policy, policy_lrs, model.adapt_policy(batched, [updated], 1, True, policy)[1][0].sum())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, required=True, help="a MACAW checkpoint (loaded with weights_only=True)")
    parser.add_argument("--family", required=True)
    parser.add_argument("--data", required=True, help="data root written by `lit-offmeta collect --out`")
    parser.add_argument("--tasks", type=int, nargs="+", required=True, help="task ids (e.g. held-out ones)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256, help="adaptation transitions per task")
    parser.add_argument("--sharpness-steps", type=int, default=2, help="sharpness at steps 0..this")
    parser.add_argument("--iterations", type=int, default=25, help="power iterations per sharpness estimate")
    args = parser.parse_args(argv)
    if not args.ckpt.is_file():
        parser.error(f"--ckpt {args.ckpt}: no such file")
    torch.set_num_threads(1)
    model = MACAW.load_from_checkpoint(args.ckpt, map_location="cpu", weights_only=True).eval()
    data = OfflineMetaDataModule(args.family, args.data, support_size=args.batch, query_size=args.batch)
    data.setup("test")
    print(f"lambda {float(model.lam.detach()):.4f}; held-out ids {list(data.test_task_ids)}")
    for task_id in args.tasks:
        task = {k: v.float() for k, v in data.adaptation_batch(task_id, size=args.batch, seed=task_id).items()}
        mc = task["mc_returns"]
        print(f"\ntask {task_id}: Monte-Carlo returns mean {float(mc.mean()):.1f}, min {float(mc.min()):.1f}")
        diagnose(model, task, args.steps, args.sharpness_steps, args.iterations)


if __name__ == "__main__":
    main()
