"""DDP (2 CPU processes, gloo): the baselines train under ``strategy="ddp"`` as one process seeing all tasks.

Two real processes are started with the environment of an external launcher (as torchrun would), so Lightning
does not re-launch pytest (the pattern of ``tests/test_macaw_ddp.py``). Rank ``r`` trains on its half of every
batch's tasks; the reference trains one process on the whole batches.

* Meta-BC (summed outer loss, explicit all-reduce of the meta-gradient, as MACAW) and MT-AWR (mean over
  tasks, Lightning's gradient averaging) are deterministic: parameters and last gradients must match the
  reference.
* Offline PEARL, FOCAL, CORRO and UNICORN sample z or actions, so ranks and reference draw different noise; they
  must run, and DDP must keep both ranks' parameters identical. Their representation losses see only the rank's
  own tasks (FOCAL's metric pairs, CORRO's negatives, UNICORN's classes within the rank's batch).

Run as a script (``python tests/test_baselines_ddp.py OUT_DIR``) it is one DDP rank.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lit_offmeta.nn import NetConfig

STEPS = 3
TASKS_PER_RANK = 2


def _batches():
    sys.path.insert(0, str(Path(__file__).parent))
    from test_baselines_helpers import point_robot_buffers, sample_task_batch

    buffers = point_robot_buffers([0, 1, 2, 3], episodes=4)
    g = torch.Generator().manual_seed(0)
    return [_slice(sample_task_batch(buffers, [0, 1, 2, 3], 16, 16, g), slice(None)) for _ in range(STEPS)]


def _slice(batch, rows):
    from lit_offmeta.data.batch import TaskBatch

    def cut(part):
        return {k: v[rows].to(torch.float64) for k, v in part.items()}

    return TaskBatch(cut(batch.support), cut(batch.query), batch.task_ids[rows])


STOCHASTIC = ("pearl", "focal", "corro", "unicorn")


def _models():
    from lit_offmeta.algorithms import CORRO, FOCAL, UNICORN, MetaBC, MultiTaskAWR, OfflinePEARL

    torch.manual_seed(0)
    meta_bc = MetaBC(obs_dim=2, action_dim=2, net=NetConfig(width=16, depth=2, latent_size=4), lr_policy=1e-2,
                     inner_lr=0.05)
    torch.manual_seed(0)
    mt_awr = MultiTaskAWR(obs_dim=2, action_dim=2, net=NetConfig(width=16, depth=2, layer="linear"), lr_value=1e-2,
                          lr_policy=1e-2)
    torch.manual_seed(0)
    pearl = OfflinePEARL(obs_dim=2, action_dim=2, latent_dim=3, hidden=[16], encoder_hidden=[16])
    context = dict(obs_dim=2, action_dim=2, latent_dim=3, hidden=[16], encoder_hidden=[16])
    torch.manual_seed(0)
    focal = FOCAL(**context, dml_transitions=4)
    torch.manual_seed(0)
    corro = CORRO(**context, relabel_family="point_robot", contrastive_transitions=4)
    torch.manual_seed(0)
    unicorn = UNICORN(**context, num_tasks=4)
    return {"meta_bc": meta_bc, "mt_awr": mt_awr, "pearl": pearl, "focal": focal, "corro": corro, "unicorn": unicorn}


def _fit(model, batches, **trainer_kwargs):
    from lightning.pytorch import Trainer
    from torch.utils.data import DataLoader

    # float64 so that the two reduction orders (one process vs two) agree to rounding (see test_macaw_ddp.py).
    trainer = Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", precision="64-true", **trainer_kwargs)
    trainer.fit(model, DataLoader(batches, batch_size=None, collate_fn=lambda b: b))
    return trainer


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _rank_main(out_dir: str) -> None:
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    rows = slice(rank * TASKS_PER_RANK, (rank + 1) * TASKS_PER_RANK)
    for name, model in _models().items():
        _fit(model, [_slice(b, rows) for b in _batches()], strategy="ddp", devices=2, use_distributed_sampler=False)
        torch.save({"state": model.state_dict(), "grads": _grads(model)}, Path(out_dir) / f"{name}_rank{rank}.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_baselines_under_ddp_match_one_process_with_all_tasks(tmp_path):
    port = str(_free_port())
    procs = []
    for rank in range(2):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=port, WORLD_SIZE="2", RANK=str(rank),
                   LOCAL_RANK=str(rank), NODE_RANK="0", PL_TORCH_DISTRIBUTED_BACKEND="gloo")
        procs.append(subprocess.Popen([sys.executable, __file__, str(tmp_path)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-3000:] for o in outputs)

    torch.set_num_threads(1)
    for name, reference in _models().items():
        initial = {k: v.clone() for k, v in reference.state_dict().items()}
        ranks = [torch.load(tmp_path / f"{name}_rank{r}.pt", weights_only=True) for r in range(2)]
        for key, value in ranks[0]["state"].items():  # DDP keeps the replicas identical
            torch.testing.assert_close(ranks[1]["state"][key], value, rtol=0, atol=0, msg=f"{name}.{key}")
        if name in STOCHASTIC:
            moved = sum(not torch.equal(ranks[0]["state"][k], v) for k, v in initial.items())
            assert moved > len(initial) // 2
            continue
        _fit(reference, _batches(), devices=1)
        reference_grads = _grads(reference)
        assert set(ranks[0]["grads"]) == set(reference_grads)
        for key, grad in reference_grads.items():
            torch.testing.assert_close(ranks[0]["grads"][key], grad, rtol=1e-6, atol=1e-10, msg=f"{name}.{key}")
        for key, value in reference.state_dict().items():
            torch.testing.assert_close(ranks[0]["state"][key], value, rtol=1e-7, atol=1e-9, msg=f"{name}.{key}")
        moved = sum(not torch.equal(value, initial[k]) for k, value in reference.state_dict().items())
        assert moved > len(initial) // 2, name  # the comparison is not vacuous


if __name__ == "__main__":
    _rank_main(sys.argv[1])
