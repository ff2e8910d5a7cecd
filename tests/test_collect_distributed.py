"""Collection by two processes under torchrun writes exactly the datasets one process writes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from lit_offmeta.collect.distributed import Ranks
from lit_offmeta.data.storage import list_task_datasets, load_task_buffers

TORCHRUN = shutil.which("torchrun", path=os.path.dirname(sys.executable))

CASES = {
    # per-task agents: each rank takes every other task
    "point_robot": ["--family", "point_robot", "--preset", "tiny", "--set", "num_tasks=3"],
    # one SAC learns on rank 0, both ranks record their tasks from its snapshots
    "cheetah_vel": ["--family", "cheetah_vel", "--preset", "tiny", "--set", "learn_steps_per_task=400",
                    "--set", "num_snapshots=2", "--set", "steps_per_task=400", "--set", "num_tasks=3"],
}


def test_ranks_share_tasks_round_robin():
    tasks = [0, 2, 3, 5, 8]
    assert Ranks(0, 2).share(tasks) == [0, 3, 8] and Ranks(1, 2).share(tasks) == [2, 5]
    assert Ranks().share(tasks) == tasks


def _collect(args: list[str], out, processes: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "lit_offmeta.cli", "collect", *args, "--out", str(out), "--no_progress"]
    if processes > 1:
        command = [TORCHRUN, "--standalone", f"--nproc_per_node={processes}", "-m", "lit_offmeta.cli", *command[3:]]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed next to this Python")
@pytest.mark.parametrize("family", sorted(CASES))
def test_two_processes_write_what_one_process_writes(tmp_path, family):
    _collect(CASES[family], tmp_path / "one", processes=1)
    _collect(CASES[family], tmp_path / "two", processes=2)
    assert list(list_task_datasets(tmp_path / "one", family)) == [0, 1, 2]
    assert list(list_task_datasets(tmp_path / "two", family)) == [0, 1, 2]
    for a, b in zip(load_task_buffers(tmp_path / "one", family), load_task_buffers(tmp_path / "two", family)):
        for name in ("obs", "actions", "rewards", "next_obs", "terminals", "truncations", "episode_starts",
                     "behaviour_steps"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=f"task {a.task_index}: {name}")
    assert (tmp_path / "one" / "collect_manifest.json").read_text() == (
        tmp_path / "two" / "collect_manifest.json").read_text()


@pytest.mark.slow
@pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed next to this Python")
def test_sac_learning_while_recording_is_refused_across_processes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "lit_offmeta.cli", "collect",
                             "--family", "cheetah_vel", "--preset", "tiny", "--out", str(tmp_path), "--no_progress"],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "learn_steps_per_task > 0" in result.stderr
