"""The same code on a CUDA device: meta-gradients equal the CPU's, and both pipelines train and evaluate there.

Skipped where no GPU is visible (CI has none); run on a GPU machine with ``pytest tests/test_gpu.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer

sys.path.insert(0, str(Path(__file__).parent))
from test_macaw_synthetic import make_buffers, sample_task_batch  # noqa: E402
from test_meta import _meta_grads, _setup  # noqa: E402

from lit_offmeta.algorithms import MACAW  # noqa: E402
from lit_offmeta.algorithms.borel.pipeline import OfflineVariBAD  # noqa: E402
from lit_offmeta.callbacks import AdaptationEvaluator  # noqa: E402
from lit_offmeta.datamodules.trajectory import TrialDataModule  # noqa: E402
from lit_offmeta.nn import NetConfig  # noqa: E402
from lit_offmeta.rollout import rollout  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
SMALL = dict(net=NetConfig(width=16, depth=2, latent_size=4))


@pytest.mark.parametrize("mode", ["closed_form", "vmap"])
@pytest.mark.parametrize("steps", [1, 2])
def test_inner_loop_meta_gradients_on_cuda_equal_the_cpu_loop(mode, steps):
    """float64 on both devices: the batched inner loop on the GPU == the per-task Python loop on the CPU."""
    ref_traj, ref_losses, ref_grads = _meta_grads(*_setup("weight_transform"), steps, False, "loop")
    traj, losses, grads = _meta_grads(*_setup("weight_transform", device="cuda"), steps, False, mode)
    for (w, b), (w_ref, b_ref) in zip(traj[-1], ref_traj[-1]):
        assert w.is_cuda
        torch.testing.assert_close(w.cpu(), w_ref)
        torch.testing.assert_close(b.cpu(), b_ref)
    torch.testing.assert_close(losses[-1].cpu(), ref_losses[-1])
    for g, g_ref in zip(grads, ref_grads):
        torch.testing.assert_close(g.cpu(), g_ref)


def _macaw_meta_gradient(device: str, batch) -> dict[str, torch.Tensor]:
    """Gradients of one meta-update's outer loss (the calls of ``MACAW.training_step``), float64."""
    torch.manual_seed(0)
    model = MACAW(2, 2, **SMALL).double().to(device)
    support = {k: v.double().to(device) for k, v in batch.support.items()}
    query = {k: v.double().to(device) for k, v in batch.query.items()}
    value_trajectory, _ = model.adapt_value(support, 1, False)
    policy_weights, _ = model.adapt_policy(support, value_trajectory, 1, False)
    loss_value, loss_policy, _ = model.outer_losses(policy_weights, value_trajectory[-1], query,
                                                    model.value_target.current_weights())
    (loss_value + loss_policy).backward()
    return {n: p.grad.cpu() for n, p in model.named_parameters() if p.grad is not None}


def test_macaw_meta_gradient_on_cuda_equals_the_cpu_one():
    _, buffers = make_buffers(num_tasks=4, episodes=4, seed=0)
    batch = sample_task_batch(buffers, [0, 1, 2], 16, 16, np.random.default_rng(0))
    cpu, cuda = _macaw_meta_gradient("cpu", batch), _macaw_meta_gradient("cuda", batch)
    assert cpu.keys() == cuda.keys() and len(cpu) > 10
    for name in cpu:
        torch.testing.assert_close(cuda[name], cpu[name], msg=name)


def test_macaw_fits_on_the_gpu_and_its_adapted_policy_runs_there(tmp_path):
    _, buffers = make_buffers(num_tasks=4, episodes=4, seed=0)
    rng = np.random.default_rng(0)
    batches = [sample_task_batch(buffers, [0, 1, 2], 16, 16, rng) for _ in range(3)]
    torch.manual_seed(0)
    model = MACAW(2, 2, **SMALL)
    trainer = Trainer(accelerator="gpu", devices=1, max_steps=3, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, torch.utils.data.DataLoader(batches, batch_size=None, collate_fn=lambda b: b))
    assert trainer.global_step == 3 and trainer.strategy.root_device.type == "cuda"
    assert all(torch.isfinite(p).all() for p in model.parameters())
    model.cuda()  # Lightning hands the module back on the CPU after fit
    context = {k: torch.as_tensor(v[:32]) for k, v in buffers[3].items()}
    policy = model.adapt(context, steps=1)
    obs = torch.randn(5, 2, device="cuda")
    assert next(policy.parameters()).is_cuda and policy(obs).shape == (5, 2)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = MACAW.load_from_checkpoint(tmp_path / "m.ckpt", map_location="cpu")
    torch.testing.assert_close(loaded.adapt(context, steps=1)(obs.cpu()), policy(obs).cpu(), rtol=1e-4, atol=1e-5)


def _fit_on_gpu_and_evaluate(model: OfflineVariBAD, dm: TrialDataModule, tmp_path: Path, policies) -> None:
    """Fit on the GPU (3 VAE + 3 RL updates, one evaluation during fit), then roll out each of ``policies(model)``
    there for two held-out tasks."""
    evaluator = AdaptationEvaluator(every_n_epochs=1, episodes=2, curve_steps=[], random_episodes=1)
    trainer = Trainer(accelerator="gpu", devices=1, max_epochs=-1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                      callbacks=[evaluator])
    trainer.fit(model, dm)
    assert int(model.updates) == 6 and trainer.strategy.root_device.type == "cuda"
    assert "rollout/success_ep2" in trainer.callback_metrics  # evaluated on the GPU during fit
    model.cuda()  # Lightning hands the module back on the CPU after fit
    for policy in policies(model):
        assert policy.device.type == "cuda"
        result = rollout(policy, model.family, model.family.default_tasks()[:2], episodes=2)
        assert result.returns.shape == (2, 2) and np.isfinite(result.returns).all()


@pytest.mark.parametrize("rl", ["dqn", "sac"])
def test_borel_pipeline_trains_and_evaluates_on_the_gpu(tmp_path, rl):
    family = "grid_navi" if rl == "dqn" else "point_robot_sparse"
    vae = {"action_embed_dim": 0, "reward_embed_dim": 8, "hidden_dim": 16} if rl == "dqn" else {"hidden_dim": 16}
    dm = TrialDataModule(family, scripted_trials_per_task=2, tasks_per_batch=2, trials_per_task=2,
                         steps_per_epoch=4, **({} if rl == "dqn" else {"episodes_per_trial": 2}))
    model = OfflineVariBAD(family, vae_steps=3, rl_steps=3, vae=vae,
                           rl={"algorithm": rl, "hidden": (8,), "tasks_per_batch": 2, "batch_per_task": 4},
                           rl_data="relabelled", rl_trials_per_task=2)
    _fit_on_gpu_and_evaluate(model, dm, tmp_path, lambda m: [m.adapt() if rl == "dqn" else m.thompson_policy()])


def test_borel_grid_config_options_train_and_evaluate_on_the_gpu(tmp_path):
    """The GridNavi config's own options on a GPU, at toy sizes: cell one-hots in the encoder and the
    DQN, the categorical goal decoder with the running-max encoder, the decoded belief as the agent's input, both
    learning-rate decays, shared and stitched paths, and Thompson sampling on the decoded goal map."""
    dm = TrialDataModule("grid_navi", scripted_trials_per_task=2, tasks_per_batch=3, trials_per_task=2,
                         mix_prob=1.0, shared_paths=True, stitched_trials_per_task=2, steps_per_epoch=4)
    vae = {"decoder": "cells", "cell_targets": "goal", "aggregator": "max", "state_one_hot": True,
           "action_embed_dim": 0, "reward_embed_dim": 8, "hidden_dim": 16, "latent_dim": 4, "kl_weight": 0.0}
    model = OfflineVariBAD("grid_navi", vae_steps=3, rl_steps=3, vae={**vae, "lr_decay": True},
                           rl={"algorithm": "dqn", "hidden": (8,), "double_q": True, "state_one_hot": True,
                               "tasks_per_batch": 2, "batch_per_task": 4, "lr_decay": True},
                           rl_data="relabelled", rl_trials_per_task=2, belief_input="decoded", episode_time=True)
    _fit_on_gpu_and_evaluate(model, dm, tmp_path, lambda m: [m.adapt(), m.thompson_policy()])


def test_borel_point_robot_options_train_and_evaluate_on_the_gpu(tmp_path):
    """The PointRobot options (shared paths, both learning-rate decays) on a GPU at toy sizes, evaluated there by
    both policies."""
    dm = TrialDataModule("point_robot_sparse", scripted_trials_per_task=2, tasks_per_batch=2, trials_per_task=2,
                         episodes_per_trial=2, mix_prob=1.0, shared_paths=True, steps_per_epoch=4)
    model = OfflineVariBAD("point_robot_sparse", vae_steps=3, rl_steps=3, vae={"hidden_dim": 16, "lr_decay": True},
                           rl={"algorithm": "sac", "hidden": (8,), "tasks_per_batch": 2, "batch_per_task": 4,
                               "lr_decay": True},
                           rl_data="relabelled", rl_trials_per_task=2)
    _fit_on_gpu_and_evaluate(model, dm, tmp_path, lambda m: [m.adapt(), m.thompson_policy()])
