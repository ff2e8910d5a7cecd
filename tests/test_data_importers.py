"""Importers: small files written in exactly the MACAW hdf5 and BOReL .npy layouts, read back exactly."""

from __future__ import annotations

import json
import re

import h5py
import numpy as np
import pytest

from lit_offmeta.data.importers import (
    goal_from_folder_name,
    import_macaw_buffers,
    import_npy_task_dirs,
    load_task_specs,
    read_macaw_hdf5,
    read_npy_task_dir,
)
from lit_offmeta.data.storage import load_task_buffers
from lit_offmeta.data.synthetic import synthetic_episodes

GAMMA = 0.99


def _write_macaw_file(path, episodes, gamma=GAMMA):
    """What MACAW's ReplayBuffer.add_trajectory + save produce: each trajectory stored last step first,
    with its Monte-Carlo return, terminal obs and gamma^(T-t) discount; (N, 1) columns; lzf compression."""
    cols = {
        k: []
        for k in (
            "obs",
            "actions",
            "rewards",
            "mc_rewards",
            "terminals",
            "terminal_obs",
            "terminal_discounts",
            "next_obs",
        )
    }
    for ep in episodes:
        obs, next_obs = ep["observations"][:-1], ep["observations"][1:]
        done = ep["terminations"]
        mc, factor = 0.0, 1.0
        for t in range(len(obs) - 1, -1, -1):
            factor *= gamma
            mc = float(ep["rewards"][t]) + gamma * mc
            cols["obs"].append(obs[t])
            cols["next_obs"].append(next_obs[t])
            cols["actions"].append(ep["actions"][t])
            cols["rewards"].append([ep["rewards"][t]])
            cols["terminals"].append([done[t]])
            cols["terminal_obs"].append(next_obs[-1])
            cols["terminal_discounts"].append([factor])
            cols["mc_rewards"].append([mc])
    with h5py.File(path, "w") as f:
        for key, values in cols.items():
            dtype = bool if key == "terminals" else np.float32
            f.create_dataset(key, data=np.asarray(values, dtype=dtype), compression="lzf")
        f.create_dataset("discount_factor", data=gamma)


def test_macaw_hdf5_round_trip(tmp_path):
    episodes = synthetic_episodes(0, 5, 7, terminate_every=2)
    _write_macaw_file(tmp_path / "buf.hdf5", episodes)
    read = read_macaw_hdf5(tmp_path / "buf.hdf5")
    assert len(read) == 5
    for ours, theirs in zip(read, episodes):
        np.testing.assert_array_equal(ours["observations"], theirs["observations"])
        np.testing.assert_array_equal(ours["actions"], theirs["actions"])
        np.testing.assert_array_equal(ours["rewards"], theirs["rewards"])
        np.testing.assert_array_equal(ours["terminations"], theirs["terminations"])
        np.testing.assert_array_equal(ours["truncations"], theirs["truncations"])
    assert [e["behaviour_step"] for e in read] == [0, 7, 13, 20, 26]


def test_macaw_import_writes_datasets_with_user_task_parameters(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in (0, 3):
        _write_macaw_file(
            src / f"buffers_point_train_{i}_sub_task_0.hdf5", synthetic_episodes(i, 4, 6, seed=i)
        )
    (tmp_path / "tasks.yaml").write_text("0: {goal: [1.0, 0.0]}\n3: {goal: [0.0, 1.0]}\n")
    written = import_macaw_buffers(
        tmp_path / "out",
        "point_robot",
        {i: src / f"buffers_point_train_{i}_sub_task_0.hdf5" for i in (0, 3)},
        tmp_path / "tasks.yaml",
    )
    assert sorted(written) == [0, 3]
    buf0, buf3 = load_task_buffers(tmp_path / "out", "point_robot", [0, 3])
    assert buf3.task == {"goal": [0.0, 1.0]}
    expected = synthetic_episodes(3, 4, 6, seed=3)
    np.testing.assert_array_equal(buf3.obs, np.concatenate([e["observations"][:-1] for e in expected]))
    # Our Monte-Carlo returns equal the authors' stored mc_rewards (same gamma, time order restored).
    with h5py.File(src / "buffers_point_train_3_sub_task_0.hdf5") as f:
        theirs = f["mc_rewards"][:, 0]
    ours_reversed = np.concatenate(
        [
            buf3.value_targets(GAMMA).mc_returns[s:e][::-1]
            for s, e in zip(buf3.episode_starts[:-1], buf3.episode_starts[1:])
        ]
    )
    np.testing.assert_allclose(ours_reversed, theirs, rtol=1e-5)


def test_macaw_time_limit_flag(tmp_path):
    episodes = synthetic_episodes(0, 2, 5)
    for ep in episodes:  # old gym: done=True at the time limit
        ep["terminations"] = ep["truncations"].copy()
    _write_macaw_file(tmp_path / "b.hdf5", episodes)
    assert read_macaw_hdf5(tmp_path / "b.hdf5")[0]["terminations"][-1]
    assert not read_macaw_hdf5(tmp_path / "b.hdf5", time_limit=5)[0]["terminations"][-1]


def test_macaw_layout_errors(tmp_path):
    _write_macaw_file(tmp_path / "b.hdf5", synthetic_episodes(0, 2, 5))
    with h5py.File(tmp_path / "b.hdf5", "a") as f:
        del f["terminal_discounts"]
    with pytest.raises(ValueError, match=r"lacks dataset\(s\) \['terminal_discounts'\]"):
        read_macaw_hdf5(tmp_path / "b.hdf5")
    # Chronological (not reversed) storage is detected, not silently imported backwards.
    _write_macaw_file(tmp_path / "c.hdf5", synthetic_episodes(0, 2, 5))
    with h5py.File(tmp_path / "c.hdf5", "a") as f:
        f["terminal_discounts"][:] = f["terminal_discounts"][()][::-1]
    with pytest.raises(ValueError, match="not the MACAW layout"):
        read_macaw_hdf5(tmp_path / "c.hdf5")
    (tmp_path / "d.hdf5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(ValueError, match="not a readable hdf5 file"):
        read_macaw_hdf5(tmp_path / "d.hdf5")
    with pytest.raises(ValueError, match=r"no task parameters for task\(s\) \[1\]"):
        import_macaw_buffers(tmp_path / "out", "point_robot", {1: tmp_path / "b.hdf5"}, [{"goal": [1, 0]}])


def _write_npy_dir(folder, episodes, time_major=False, trajectory_len=None):
    """BOReL save_transitions: obs/actions/rewards/next_obs/terminals .npy, [N, dim] ((N, 1) for scalars)."""
    folder.mkdir(parents=True)
    arrays = {
        "obs": np.concatenate([e["observations"][:-1] for e in episodes]),
        "next_obs": np.concatenate([e["observations"][1:] for e in episodes]),
        "actions": np.concatenate([e["actions"] for e in episodes]).reshape(
            -1, episodes[0]["actions"].shape[-1] if episodes[0]["actions"].ndim > 1 else 1
        ),
        "rewards": np.concatenate([e["rewards"] for e in episodes])[:, None],
        "terminals": np.concatenate([e["truncations"] for e in episodes])[:, None].astype(np.float32),
    }
    for name, value in arrays.items():
        if time_major:
            value = value.reshape(-1, trajectory_len, value.shape[-1]).swapaxes(0, 1)
        np.save(folder / f"{name}.npy", value)


@pytest.mark.parametrize("time_major", [False, True])
def test_npy_folder_round_trip_with_trials(tmp_path, time_major):
    episodes = synthetic_episodes(0, 6, 4)  # 3 trials of 2 episodes, trajectory_len 8
    _write_npy_dir(tmp_path / "seed_73_goal_0.5_0.866", episodes, time_major, trajectory_len=8)
    read = read_npy_task_dir(tmp_path / "seed_73_goal_0.5_0.866", trajectory_len=8, episodes_per_trial=2)
    assert [(e["trial_index"], e["episode_in_trial"]) for e in read] == [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
        (2, 0),
        (2, 1),
    ]
    for ours, theirs in zip(read, episodes):
        np.testing.assert_array_equal(ours["observations"], theirs["observations"])
        np.testing.assert_array_equal(ours["actions"], theirs["actions"])
        np.testing.assert_array_equal(ours["rewards"], theirs["rewards"])
        assert ours["truncations"][-1] and not ours["terminations"].any()


def test_npy_import_parses_goals_from_folder_names(tmp_path):
    for i, name in enumerate(["seed_1_goal_0.995_0.1", "seed_2_goal_-0.5_0.866"]):
        _write_npy_dir(tmp_path / "src" / name, synthetic_episodes(i, 2, 5, seed=i))
    written = import_npy_task_dirs(
        tmp_path / "out", "point_robot_sparse", tmp_path / "src", trajectory_len=10, episodes_per_trial=2
    )
    assert sorted(written) == [0, 1]
    buf0, buf1 = load_task_buffers(tmp_path / "out", "point_robot_sparse")
    assert buf0.task == {"goal": [0.995, 0.1]} and buf1.task == {"goal": [-0.5, 0.866]}
    np.testing.assert_array_equal(buf1.trial_index, [0, 0])
    np.testing.assert_array_equal(buf1.episode_in_trial, [0, 1])
    assert goal_from_folder_name("goal_1.5") == [1.5]


def test_npy_missing_rewards_are_recomputed_by_the_family_and_flags_dropped(tmp_path):
    from lit_offmeta.tasks import get_family

    episodes = synthetic_episodes(0, 2, 5, obs_dim=3)  # a third, BOReL-style flag column to drop
    _write_npy_dir(tmp_path / "src" / "seed_0_goal_0.6_0.8", episodes)
    (tmp_path / "src" / "seed_0_goal_0.6_0.8" / "rewards.npy").unlink()
    import_npy_task_dirs(
        tmp_path / "out", "point_robot", tmp_path / "src", trajectory_len=5, keep_obs_columns=2
    )
    (buf,) = load_task_buffers(tmp_path / "out", "point_robot")
    expected = -np.linalg.norm(buf.next_obs - np.array([0.6, 0.8], np.float32), axis=1)
    np.testing.assert_allclose(buf.rewards, expected, rtol=1e-6)
    np.testing.assert_array_equal(
        buf.rewards, get_family("point_robot").reward(buf.task, buf.obs, buf.actions, buf.next_obs)
    )
    assert buf.obs_dim == 2


def test_npy_discrete_actions_become_integers(tmp_path):
    episodes = synthetic_episodes(0, 2, 15, discrete_actions=5)
    _write_npy_dir(tmp_path / "src" / "goal_2_3", episodes)
    import_npy_task_dirs(
        tmp_path / "out", "grid_navi", tmp_path / "src", trajectory_len=15, tasks=[{"goal": [2, 3]}]
    )
    (buf,) = load_task_buffers(tmp_path / "out", "grid_navi")
    assert buf.actions.dtype == np.int64
    np.testing.assert_array_equal(buf.actions, np.concatenate([e["actions"] for e in episodes]))


def test_npy_errors(tmp_path):
    _write_npy_dir(tmp_path / "a", synthetic_episodes(0, 2, 5))
    with pytest.raises(ValueError, match=r"next_obs\[4\] != obs\[5\] inside one episode"):
        read_npy_task_dir(tmp_path / "a", trajectory_len=10)  # wrong length: two episodes glued together
    with pytest.raises(ValueError, match="not a whole number of trajectories of length 3"):
        read_npy_task_dir(tmp_path / "a", trajectory_len=3)
    np.save(tmp_path / "a" / "rewards.npy", np.array([{"r": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="cannot be read without unpickling"):
        read_npy_task_dir(tmp_path / "a", trajectory_len=5)
    (tmp_path / "a" / "rewards.npy").unlink()
    with pytest.raises(ValueError, match="lacks rewards.npy"):
        read_npy_task_dir(tmp_path / "a", trajectory_len=5)
    with pytest.raises(ValueError, match="does not end in goal_"):
        goal_from_folder_name("seed_3_task_x")


def test_task_spec_files(tmp_path):
    (tmp_path / "t.json").write_text(json.dumps([{"velocity": 0.1}, {"velocity": 0.2}]))
    assert load_task_specs(tmp_path / "t.json") == {0: {"velocity": 0.1}, 1: {"velocity": 0.2}}
    (tmp_path / "m.json").write_text(json.dumps({"4": {"velocity": 1.0}}))
    assert load_task_specs(tmp_path / "m.json") == {4: {"velocity": 1.0}}
    (tmp_path / "bad.json").write_text(json.dumps({"fast": {"velocity": 1.0}}))
    with pytest.raises(ValueError, match="key 'fast' is not a task index"):
        load_task_specs(tmp_path / "bad.json")
    (tmp_path / "bad.yaml").write_text("!!python/object:os.system {}\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_task_specs(tmp_path / "bad.yaml")
    (tmp_path / "bad2.json").write_text("[1, 2")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_task_specs(tmp_path / "bad2.json")


def test_importer_errors_name_the_file_and_field(tmp_path):
    """An .npz saved as obs.npy, string arrays, bad hdf5 dtypes and extreme values: a ValueError naming the file."""
    _write_npy_dir(tmp_path / "a", synthetic_episodes(0, 2, 5))
    obs = np.load(tmp_path / "a" / "obs.npy")
    with open(tmp_path / "a" / "obs.npy", "wb") as f:
        np.savez(f, obs=obs)
    with pytest.raises(ValueError, match=r"a/obs.npy is an .npz archive \(arrays \['obs'\]\), not a .npy array"):
        read_npy_task_dir(tmp_path / "a", trajectory_len=5)
    np.save(tmp_path / "a" / "obs.npy", obs.astype(str))
    with pytest.raises(ValueError, match=r"a/obs.npy: the array has dtype <U\d+, not numbers"):
        read_npy_task_dir(tmp_path / "a", trajectory_len=5)
    obs[6, 1] = 1e20
    np.save(tmp_path / "a" / "obs.npy", obs)
    with pytest.raises(ValueError, match=r"a/obs.npy: field 'obs' holds 1e\+20 at row 6, beyond the bound"):
        read_npy_task_dir(tmp_path / "a", trajectory_len=5)

    _write_macaw_file(tmp_path / "b.hdf5", synthetic_episodes(0, 2, 5))
    with h5py.File(tmp_path / "b.hdf5", "a") as f:
        rewards = f["rewards"][()]
        del f["rewards"]
        f.create_dataset("rewards", data=rewards.astype("S8"))
    with pytest.raises(ValueError, match=r"b.hdf5: dataset 'rewards' has dtype \|S8, not numbers"):
        read_macaw_hdf5(tmp_path / "b.hdf5")
    with h5py.File(tmp_path / "b.hdf5", "a") as f:
        del f["rewards"]
        rewards = rewards.astype(np.float64)
        rewards[3, 0] = 1e39  # finite in the file, inf once cast to float32
        f.create_dataset("rewards", data=rewards)
    with pytest.raises(ValueError, match=r"b.hdf5: field 'rewards' holds 1e\+39, which overflows float32, at row 3"):
        read_macaw_hdf5(tmp_path / "b.hdf5")
    with h5py.File(tmp_path / "b.hdf5", "a") as f:
        del f["discount_factor"]
        f.create_dataset("discount_factor", data=[GAMMA, GAMMA])
    with pytest.raises(ValueError, match=r"b.hdf5: dataset 'discount_factor' must be one number"):
        read_macaw_hdf5(tmp_path / "b.hdf5")


def test_relative_paths_work_through_the_python_api(tmp_path, monkeypatch):
    """write_task_dataset and both importers with a relative root (and relative sources) from the current folder."""
    from lit_offmeta.data.storage import write_task_dataset
    from lit_offmeta.tasks import get_family

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MINARI_DATASETS_PATH", raising=False)
    path = write_task_dataset("out", "point_robot", 0, get_family("point_robot").default_tasks()[0],
                              synthetic_episodes(0, 2, 5))
    assert path == tmp_path / "out" / "point_robot" / "task_0000-v0"
    _write_macaw_file(tmp_path / "b.hdf5", synthetic_episodes(1, 2, 5))
    import_macaw_buffers("out", "point_robot", {1: "b.hdf5"}, [{"goal": [1, 0]}, {"goal": [0, 1]}])
    _write_npy_dir(tmp_path / "src" / "seed_1_goal_0.6_0.8", synthetic_episodes(2, 2, 5))
    import_npy_task_dirs("out_sparse", "point_robot_sparse", "src", trajectory_len=5)
    assert [b.task_index for b in load_task_buffers("out", "point_robot")] == [0, 1]
    (buf,) = load_task_buffers("out_sparse", "point_robot_sparse")
    assert buf.task == {"goal": [0.6, 0.8]} and len(buf) == 10


def test_relative_paths_failures_name_the_absolute_path_and_leave_no_folder(tmp_path, monkeypatch):
    """From a relative cwd: a missing buffer or source folder is named by its absolute path before anything is
    written, and a task the storage refuses leaves no empty output folders behind."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MINARI_DATASETS_PATH", raising=False)
    _write_macaw_file(tmp_path / "b0.hdf5", synthetic_episodes(0, 2, 5))
    tasks = [{"goal": [1, 0]}, {"goal": [0, 1]}]
    here = re.escape(str(tmp_path))
    with pytest.raises(ValueError, match=rf"not found: \{{1: '{here}/gone.hdf5'\}}.*nothing was imported"):
        import_macaw_buffers("new/out", "point_robot", {0: "b0.hdf5", 1: "gone.hdf5"}, tasks)
    assert not (tmp_path / "new").exists()  # task 0, sorted first, was not written either
    with pytest.raises(ValueError, match=rf"{here}/nosrc is not a folder \(relative paths are taken from"):
        import_npy_task_dirs("new/out", "point_robot", "nosrc", trajectory_len=5)
    _write_macaw_file(tmp_path / "b3.hdf5", synthetic_episodes(0, 2, 5, obs_dim=3))
    with pytest.raises(ValueError, match="observations have 3 columns, family 'point_robot' has 2"):
        import_macaw_buffers("new/out", "point_robot", {0: "b3.hdf5"}, tasks)
    _write_npy_dir(tmp_path / "src" / "seed_1_goal_0.6_0.8", synthetic_episodes(0, 2, 5, obs_dim=3))
    with pytest.raises(ValueError, match="observations have 3 columns, family 'point_robot' has 2"):
        import_npy_task_dirs("new/out", "point_robot", "src", trajectory_len=5)
    assert not (tmp_path / "new").exists()
    written = import_macaw_buffers("new/out", "point_robot", {0: "b0.hdf5"}, tasks)
    assert written == {0: tmp_path / "new" / "out" / "point_robot" / "task_0000-v0"}
    meta = json.loads((written[0] / "data" / "metadata.json").read_text())["lit_offmeta"]["metadata"]
    assert meta["source_file"] == str(tmp_path / "b0.hdf5")
