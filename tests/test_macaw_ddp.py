"""DDP: meta-gradients are all-reduced so that 2 ranks == 1 process that sees both ranks' tasks.

Two real processes (gloo, CPU) run ``Trainer(strategy="ddp", devices=2)``; they are started by this test with
the environment variables of an external launcher (``LOCAL_RANK`` etc.), as torchrun would, so Lightning does
not re-launch pytest. Rank ``r`` trains on its own tasks; the reference trains one process on every rank's tasks
concatenated along the task axis. With summed outer losses (Algorithm 1) and ``loss * world_size`` before
DDP's gradient averaging, the parameters after N second-order meta-updates must agree.

Run as a script (``python tests/test_macaw_ddp.py OUT_DIR``) it is one DDP rank.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lit_offmeta.meta import InnerLoopConfig
from lit_offmeta.nn import NetConfig

STEPS = 3
TASKS_PER_RANK = 2


def _batches():
    """STEPS batches of 2 * TASKS_PER_RANK synthetic tasks; rank r gets task rows [r*k, (r+1)*k)."""
    sys.path.insert(0, str(Path(__file__).parent))
    import numpy as np
    from test_macaw_synthetic import make_buffers, sample_task_batch

    _, buffers = make_buffers(num_tasks=4, episodes=4, seed=0)
    rng = np.random.default_rng(0)
    batches = [sample_task_batch(buffers, [0, 1, 2, 3], 16, 16, rng) for _ in range(STEPS)]
    return [_slice(b, slice(None), torch.float64) for b in batches]


def _slice(batch, rows, dtype=None):
    from lit_offmeta.data.batch import TaskBatch

    def cut(part):
        return {k: v[rows] if dtype is None else v[rows].to(dtype) for k, v in part.items()}

    return TaskBatch(cut(batch.support), cut(batch.query), batch.task_ids[rows])


def _model():
    from lit_offmeta.algorithms import MACAW

    torch.manual_seed(0)
    # Large outer LRs so that 3 steps move the parameters visibly; second-order (the default).
    return MACAW(obs_dim=2, action_dim=2, net=NetConfig(width=16, depth=2, latent_size=4), lr_value=1e-2,
                 lr_policy=1e-2, inner=InnerLoopConfig(lr_of_lrs=1e-2), inner_lr_value=0.05, inner_lr_policy=0.05)


def _fit(model, batches, **trainer_kwargs):
    from lightning.pytorch import Trainer
    from torch.utils.data import DataLoader

    # float64: Adam divides by sqrt(v), so float32 rounding differences between the reduction orders of one
    # and two processes flip the update of parameters whose gradient is ~0 by 2 * lr; in float64 they vanish.
    trainer = Trainer(max_steps=len(batches), logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", precision="64-true", **trainer_kwargs)
    trainer.fit(model, DataLoader(batches, batch_size=None, collate_fn=lambda b: b))
    return trainer


def _rank_main(out_dir: str) -> None:
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    rows = slice(rank * TASKS_PER_RANK, (rank + 1) * TASKS_PER_RANK)
    model = _model()
    # use_distributed_sampler=False: each rank gets its own list of batches (its own tasks).
    trainer = _fit(model, [_slice(b, rows) for b in _batches()], strategy="ddp", devices=2,
                   use_distributed_sampler=False)
    if trainer.global_rank == 0:
        torch.save(model.state_dict(), Path(out_dir) / "ddp.pt")
        torch.save(_grads(model), Path(out_dir) / "ddp_grads.pt")


def _grads(model) -> dict[str, torch.Tensor]:
    """The last meta-update's gradients (manual optimisation leaves them in .grad until the next zero_grad).

    Adam is invariant to the gradient's scale, so comparing parameters alone would not catch a mean-vs-sum
    mistake; the gradients themselves must match.
    """
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_ranks_equal_one_process_with_all_tasks(tmp_path):
    port = str(_free_port())
    procs = []
    for rank in range(2):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=port, WORLD_SIZE="2", RANK=str(rank),
                   LOCAL_RANK=str(rank), NODE_RANK="0", PL_TORCH_DISTRIBUTED_BACKEND="gloo")
        procs.append(subprocess.Popen([sys.executable, __file__, str(tmp_path)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-3000:] for o in outputs)

    torch.set_num_threads(1)
    reference = _model()
    initial = {k: v.clone() for k, v in reference.state_dict().items()}
    _fit(reference, _batches(), devices=1)
    ddp_state = torch.load(tmp_path / "ddp.pt", weights_only=True)
    ddp_grads, reference_grads = torch.load(tmp_path / "ddp_grads.pt", weights_only=True), _grads(reference)
    assert set(ddp_grads) == set(reference_grads) and "raw_lambda" in ddp_grads
    for name, grad in reference_grads.items():
        torch.testing.assert_close(ddp_grads[name], grad, rtol=1e-6, atol=1e-10, msg=lambda m, n=name: f"{n}: {m}")
    moved = 0
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(ddp_state[name], value, rtol=1e-7, atol=1e-9, msg=lambda m, n=name: f"{n}: {m}")
        moved += not torch.equal(value, initial[name])
    assert moved > len(initial) // 2  # the comparison is not vacuous: most tensors changed


if __name__ == "__main__":
    _rank_main(sys.argv[1])
