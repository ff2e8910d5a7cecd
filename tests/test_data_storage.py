"""Minari task storage: exact round trips, the packed cache and its invalidation, atomic writes, errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from lit_offmeta.data import storage
from lit_offmeta.data.storage import (
    MissingDatasetError,
    dataset_path,
    list_task_datasets,
    load_task_buffers,
    minari_root,
    write_task_dataset,
)
from lit_offmeta.data.synthetic import synthetic_episodes
from lit_offmeta.tasks import get_family

FAMILY = "point_robot"


@pytest.fixture(autouse=True)
def _private_home(tmp_path, monkeypatch):
    """Every test gets its own HOME so a stray write to ~/.minari would be caught."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MINARI_DATASETS_PATH", raising=False)


def _task(i):
    return get_family(FAMILY).default_tasks()[i]


def _write(root, i, num_episodes=6, horizon=5, seed=0, **kwargs):
    eps = synthetic_episodes(i, num_episodes, horizon, seed=seed, terminate_every=3)
    for e, ep in enumerate(eps):
        ep["trial_index"], ep["episode_in_trial"] = e // 2, e % 2
    return write_task_dataset(root, FAMILY, i, _task(i), eps, {"behaviour_agent": "synthetic", **kwargs}), eps


@pytest.mark.parametrize("use_cache", [False, True])
def test_round_trip_is_exact(tmp_path, use_cache):
    path, eps = _write(tmp_path, 7)
    assert path == dataset_path(tmp_path, FAMILY, 7) == tmp_path / FAMILY / "task_0007-v0"
    if not use_cache:
        (path / storage.CACHE_NAME).unlink()  # read through Minari's own reader
    for _ in range(2):  # second pass reads the cache when enabled
        (buf,) = load_task_buffers(tmp_path, FAMILY, [7], use_cache=use_cache)
        np.testing.assert_array_equal(buf.obs, np.concatenate([e["observations"][:-1] for e in eps]))
        np.testing.assert_array_equal(buf.next_obs, np.concatenate([e["observations"][1:] for e in eps]))
        np.testing.assert_array_equal(buf.actions, np.concatenate([e["actions"] for e in eps]))
        np.testing.assert_array_equal(buf.rewards, np.concatenate([e["rewards"] for e in eps]))
        np.testing.assert_array_equal(buf.terminals, np.concatenate([e["terminations"] for e in eps]))
        np.testing.assert_array_equal(buf.truncations, np.concatenate([e["truncations"] for e in eps]))
        np.testing.assert_array_equal(buf.behaviour_steps, [e["behaviour_step"] for e in eps])
        np.testing.assert_array_equal(buf.trial_index, [0, 0, 1, 1, 2, 2])
        np.testing.assert_array_equal(buf.episode_in_trial, [0, 1, 0, 1, 0, 1])
        assert buf.task == _task(7) and buf.task_index == 7 and buf.family == FAMILY
    assert (path / storage.CACHE_NAME).exists() == use_cache
    assert not (tmp_path / "home" / ".minari").exists()
    assert "MINARI_DATASETS_PATH" not in os.environ


def test_plain_minari_reads_the_dataset_and_metadata(tmp_path):
    import minari

    _write(tmp_path, 2, seed_note="x")
    with minari_root(tmp_path):
        ds = minari.load_dataset(f"{FAMILY}/task_0002-v0")
        assert ds.total_episodes == 6
        block = ds.storage.metadata[storage.METADATA_KEY]
        env = ds.recover_environment()
    assert block["task"] == _task(2) and block["metadata"]["seed_note"] == "x"
    assert env.unwrapped.task == _task(2)  # the env spec carries the task


def test_list_and_overwrite(tmp_path):
    _write(tmp_path, 0)
    _write(tmp_path, 11)
    assert list(list_task_datasets(tmp_path, FAMILY)) == [0, 11]
    assert list_task_datasets(tmp_path, "grid_navi") == {}
    _, eps = _write(tmp_path, 0, seed=5)  # overwrite replaces the old data
    (buf,) = load_task_buffers(tmp_path, FAMILY, [0])
    np.testing.assert_array_equal(buf.rewards, np.concatenate([e["rewards"] for e in eps]))
    assert sorted(p.name for p in (tmp_path / FAMILY).iterdir()) == [
        "namespace_metadata.json",
        "task_0000-v0",
        "task_0011-v0",
    ]


def test_the_cache_written_with_the_dataset_serves_the_first_load(tmp_path, monkeypatch):
    _, eps = _write(tmp_path, 8)

    def no_minari(*args, **kwargs):
        raise AssertionError("the first load should come from the cache primed at write time")

    monkeypatch.setattr(storage, "_read_minari", no_minari)
    (buf,) = load_task_buffers(tmp_path, FAMILY, [8])
    np.testing.assert_array_equal(buf.rewards, np.concatenate([e["rewards"] for e in eps]))


def test_cache_is_rebuilt_when_the_source_changes(tmp_path):
    path, _ = _write(tmp_path, 1)
    load_task_buffers(tmp_path, FAMILY, [1])
    stamp = (path / storage.CACHE_NAME).stat().st_mtime_ns
    load_task_buffers(tmp_path, FAMILY, [1])
    assert (path / storage.CACHE_NAME).stat().st_mtime_ns == stamp  # fresh cache reused, not rewritten

    # Edit the source in place (same files, new content): the signature changes, the cache is ignored.
    import h5py

    with h5py.File(path / "data" / "main_data.hdf5", "r+") as f:
        f["episode_0/rewards"][0] = 123.0
    (buf,) = load_task_buffers(tmp_path, FAMILY, [1])
    assert buf.rewards[0] == 123.0

    # A cache whose signature matches but whose bytes are garbage is rebuilt, never trusted.
    (path / storage.CACHE_NAME).write_bytes(b"not a zip")
    (buf,) = load_task_buffers(tmp_path, FAMILY, [1])
    assert buf.rewards[0] == 123.0


def test_an_edit_that_keeps_inode_size_and_mtime_is_not_served_from_a_stale_cache(tmp_path):
    """The cache is keyed by the source's contents: overwrite a stored reward's bytes in place, restore the
    modification time, and the next load still sees the new value."""
    import h5py

    path, eps = _write(tmp_path, 1)
    main = path / "data" / "main_data.hdf5"
    (buf,) = load_task_buffers(tmp_path, FAMILY, [1])
    row = int(buf.episode_starts[1])  # episode 1's first step
    assert buf.rewards[row] == eps[1]["rewards"][0] != 123.0
    with h5py.File(main, "r") as f:  # where episode 1's rewards lie in the file (one uncompressed chunk)
        dset = f["episode_1/rewards"]
        assert dset.compression is None and dset.dtype == np.float32
        offset = dset.id.get_chunk_info_by_coord((0,)).byte_offset if dset.chunks else dset.id.get_offset()
    before = main.stat()
    with open(main, "r+b") as f:
        f.seek(offset)
        f.write(np.float32(123.0).tobytes())
    os.utime(main, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = main.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    (buf,) = load_task_buffers(tmp_path, FAMILY, [1])
    assert buf.rewards[row] == 123.0


@pytest.mark.parametrize("use_cache", [True, False])
def test_an_episode_shortened_in_every_field_is_caught_by_total_steps(tmp_path, use_cache):
    import h5py

    path, eps = _write(tmp_path, 3)
    total = sum(len(e["rewards"]) for e in eps)
    load_task_buffers(tmp_path, FAMILY, [3])  # a cache of the full data exists
    with h5py.File(path / "data" / "main_data.hdf5", "r+") as f:
        group = f["episode_1"]
        for key in list(group):  # one step fewer everywhere: the episode is still well formed
            values = group[key][()][:-1]
            del group[key]
            group.create_dataset(key, data=values)
        group.attrs["total_steps"] = group.attrs["total_steps"] - 1
    with pytest.raises(
        ValueError,
        match=rf"task_0003-v0: main_data.hdf5 holds {total - 1} transitions but its metadata says total_steps "
        rf"{total}; .*delete .*task_0003-v0 and re-collect",
    ):
        load_task_buffers(tmp_path, FAMILY, [3], use_cache=use_cache)


def test_a_crash_mid_write_leaves_nothing_loadable(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    # Simulate a kill after Minari has written the temporary dataset but before it is published, and keep
    # the temporary folder as a SIGKILL would (no cleanup runs).
    monkeypatch.setattr(storage, "_publish", crash)
    monkeypatch.setattr(storage.shutil, "rmtree", lambda *a, **k: None)
    with pytest.raises(KeyboardInterrupt):
        _write(tmp_path, 4)
    leftovers = [p.name for p in (tmp_path / FAMILY).iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-task_0004-v0")
    assert list_task_datasets(tmp_path, FAMILY) == {}
    with pytest.raises(MissingDatasetError, match="no dataset for 'point_robot' task"):
        load_task_buffers(tmp_path, FAMILY, [4])
    monkeypatch.undo()
    # Our own process is alive, so its temporary folder is not stale; a dead writer's one is.
    assert storage.remove_stale_temporaries(tmp_path, FAMILY) == []
    dead = (tmp_path / FAMILY / leftovers[0]).rename(
        tmp_path / FAMILY / leftovers[0].replace(f"-{os.getpid()}-", "-999999999-")
    )
    other_host = tmp_path / FAMILY / ".tmp-task_0005-v0-elsewhere-999999999-0123abcd"
    other_host.mkdir()
    assert storage.remove_stale_temporaries(tmp_path, FAMILY) == [dead]
    assert other_host.exists()


def test_a_failed_overwrite_keeps_the_old_dataset(tmp_path, monkeypatch):
    _, old = _write(tmp_path, 3, seed=1)

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(storage, "_create_minari_dataset", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        _write(tmp_path, 3, seed=2)
    (buf,) = load_task_buffers(tmp_path, FAMILY, [3])
    np.testing.assert_array_equal(buf.rewards, np.concatenate([e["rewards"] for e in old]))
    assert [p.name for p in (tmp_path / FAMILY).iterdir() if p.name.startswith(".")] == []


def test_unfinished_metadata_is_not_listed(tmp_path):
    path, _ = _write(tmp_path, 5)
    meta = json.loads((path / "data" / "metadata.json").read_text())
    del meta[storage.METADATA_KEY]
    (path / "data" / "metadata.json").write_text(json.dumps(meta))
    assert list_task_datasets(tmp_path, FAMILY) == {}


# --- errors ------------------------------------------------------------------------------------------------


def test_missing_dataset_names_the_collect_command(tmp_path):
    with pytest.raises(
        MissingDatasetError, match=f"lit-offmeta collect --family {FAMILY} --preset small --out"
    ):
        load_task_buffers(tmp_path, FAMILY)
    _write(tmp_path, 0)
    with pytest.raises(
        ValueError, match=r"task\(s\) \[1, 2\] .*found task indices: \[0\].*lit-offmeta collect"
    ):
        load_task_buffers(tmp_path, FAMILY, [0, 1, 2])


def test_truncated_file_is_reported(tmp_path):
    path, _ = _write(tmp_path, 6)
    main = path / "data" / "main_data.hdf5"
    main.write_bytes(main.read_bytes()[: main.stat().st_size // 2])
    with pytest.raises(ValueError, match="main_data.hdf5 is truncated or corrupt"):
        load_task_buffers(tmp_path, FAMILY, [6])
    (path / "data" / "metadata.json").write_text('{"total_')
    assert list_task_datasets(tmp_path, FAMILY) == {}
    with pytest.raises(ValueError, match="metadata.json is unreadable or truncated"):
        storage.read_task_dataset(path)


def test_bad_episodes_are_refused_before_anything_is_written(tmp_path):
    eps = synthetic_episodes(0, 2, 5, obs_dim=3)
    with pytest.raises(ValueError, match="observations have 3 columns, family 'point_robot' has 2"):
        write_task_dataset(tmp_path, FAMILY, 0, _task(0), eps)
    eps = synthetic_episodes(0, 2, 5)
    eps[0]["observations"][1, 1] = np.inf
    with pytest.raises(ValueError, match="field 'observations' holds NaN or inf"):
        write_task_dataset(tmp_path, FAMILY, 0, _task(0), eps)
    with pytest.raises(ValueError, match="no episodes to write"):
        write_task_dataset(tmp_path, FAMILY, 0, _task(0), [])
    with pytest.raises(ValueError, match="must be JSON-serialisable"):
        write_task_dataset(tmp_path, FAMILY, 0, _task(0), synthetic_episodes(0, 2, 5), {"agent": object()})
    with pytest.raises(ValueError, match="lacks parameter"):
        write_task_dataset(tmp_path, FAMILY, 0, {"velocity": 1.0}, synthetic_episodes(0, 2, 5))
    with pytest.raises(ValueError, match="unknown task family"):
        write_task_dataset(tmp_path, "nope", 0, {}, synthetic_episodes(0, 2, 5))
    with pytest.raises(ValueError, match=r"discrete actions; pass 'actions' as \[T\] integers"):
        write_task_dataset(
            tmp_path, "grid_navi", 0, get_family("grid_navi").default_tasks()[0], synthetic_episodes(0, 2, 5)
        )
    assert list_task_datasets(tmp_path, FAMILY) == {}


def test_extreme_values_are_refused_on_write_and_on_load(tmp_path):
    """Write: checked in the values' own dtype (a float64 that overflows float32 is named as such). Load: a
    source edited on disk to hold 1e20 is refused through Minari's reader and through the cache alike."""
    eps = synthetic_episodes(0, 3, 5)
    eps[2]["rewards"] = eps[2]["rewards"].astype(np.float64)
    eps[2]["rewards"][1] = 1e39
    with pytest.raises(
        ValueError,
        match=r"writing .*task_0000-v0: task 0, episode 2: field 'rewards' holds 1e\+39, which overflows float32, "
        r"at step 1, beyond the bound",
    ):
        write_task_dataset(tmp_path, FAMILY, 0, _task(0), eps)
    eps[2]["rewards"][1] = -1e20
    with pytest.raises(ValueError, match=r"field 'rewards' holds -1e\+20 at step 1, beyond the bound"):
        write_task_dataset(tmp_path, FAMILY, 0, _task(0), eps)
    assert list_task_datasets(tmp_path, FAMILY) == {}

    import h5py

    path, _ = _write(tmp_path, 2)
    with h5py.File(path / "data" / "main_data.hdf5", "r+") as f:
        f["episode_1/rewards"][2] = 1e20
    for use_cache in (True, False):
        with pytest.raises(
            ValueError, match=r"task_0002-v0 \(family 'point_robot', task 2\): field 'rewards' holds 1e\+20 at "
            r"transition 7 \(episode 1, step 2\)"
        ):
            load_task_buffers(tmp_path, FAMILY, [2], use_cache=use_cache)


def test_dataset_of_another_family_is_refused(tmp_path):
    path, _ = _write(tmp_path, 0)
    with pytest.raises(ValueError, match="holds family 'point_robot', expected 'point_robot_sparse'"):
        storage.read_task_dataset(path, expected_family="point_robot_sparse")


def test_discrete_family_round_trip(tmp_path):
    fam = get_family("grid_navi")
    eps = synthetic_episodes(0, 3, 4, obs_dim=fam.obs_dim, discrete_actions=fam.action_dim)
    write_task_dataset(tmp_path, "grid_navi", 0, fam.default_tasks()[0], eps)
    (buf,) = load_task_buffers(tmp_path, "grid_navi", [0])
    assert buf.actions.dtype == np.int64
    np.testing.assert_array_equal(buf.actions, np.concatenate([e["actions"] for e in eps]))


def test_a_one_transition_task_is_stored_but_refused_for_training(tmp_path):
    write_task_dataset(tmp_path, FAMILY, 9, _task(9), synthetic_episodes(9, 1, 1))
    assert list(list_task_datasets(tmp_path, FAMILY)) == [9]
    with pytest.raises(ValueError, match=r"task_0009-v0 \(family 'point_robot', task 9\) has 1 transition"):
        load_task_buffers(tmp_path, FAMILY, [9])


@pytest.mark.parametrize("content", ["{not json", '{"minari": 1}'])
def test_a_corrupt_metadata_file_is_reported_as_corrupt_with_the_command_that_rebuilds_it(tmp_path, content):
    """Not "missing" (whose suggested collect would then refuse the folder): the file, "corrupt", and, where the
    root holds collect's manifest, the collect command with the recorded preset and seed."""
    from lit_offmeta.collect.presets import get_preset
    from lit_offmeta.collect.runner import collect

    collect(get_preset("point_robot", "tiny"), tmp_path, seed=3, progress=False, log=None)
    meta = tmp_path / "point_robot" / "task_0001-v0" / "data" / "metadata.json"
    meta.write_text(content)
    with pytest.raises(storage.CorruptDatasetError,
                       match=rf"{meta} is corrupt \(.*\): delete {meta.parent.parent}, then "
                             rf"`lit-offmeta collect --family point_robot --preset tiny --seed 3 "
                             rf"--out {tmp_path} --tasks 1`"):
        load_task_buffers(tmp_path, "point_robot", [0, 1])
    with pytest.raises(storage.CorruptDatasetError, match=rf"{meta} is corrupt"):
        load_task_buffers(tmp_path, "point_robot")  # "every task" does not quietly become tasks 0 and 2
    manifest = tmp_path / "collect_manifest.json"
    kept = manifest.read_text()
    manifest.unlink()
    with pytest.raises(ValueError, match="is corrupt .*then re-collect or re-import that task"):
        load_task_buffers(tmp_path, "point_robot", [1])
    manifest.write_text(kept)


def test_the_suggested_command_repeats_the_manifest_settings_and_collect_accepts_it(tmp_path, capsys):
    """Settings changed with --set are part of the command (collect refuses other settings in that folder); the
    command, run as given after deleting the folder, rebuilds exactly the task that was there."""
    import shlex
    import shutil

    from lit_offmeta.collect.cli import main
    from lit_offmeta.collect.presets import get_preset
    from lit_offmeta.collect.runner import collect

    config = get_preset("point_robot", "tiny").replace(episodes_per_task=10, agent_kwargs={"noise_end": 1e-05})
    collect(config, tmp_path, seed=2, task_indices=[4, 5], progress=False, log=None)
    (before,) = load_task_buffers(tmp_path, FAMILY, [5])
    meta = tmp_path / FAMILY / "task_0005-v0" / "data" / "metadata.json"
    meta.write_text("{not json")
    with pytest.raises(storage.CorruptDatasetError) as error:
        load_task_buffers(tmp_path, FAMILY, [4, 5])
    command = str(error.value).split("`")[1]
    assert command == (f"lit-offmeta collect --family {FAMILY} --preset tiny "
                       f"--set 'agent_kwargs={{noise_end: 1.0e-05}}' --set episodes_per_task=10 --seed 2 "
                       f"--out {tmp_path} --tasks 5")
    shutil.rmtree(meta.parent.parent)
    main(shlex.split(command)[2:] + ["--no_progress"])
    assert "wrote 1 point_robot dataset(s)" in capsys.readouterr().out
    (after,) = load_task_buffers(tmp_path, FAMILY, [5])
    np.testing.assert_array_equal(after.obs, before.obs)
    np.testing.assert_array_equal(after.rewards, before.rewards)
    # A missing task gets the recorded settings too, not the small preset that collect would refuse here.
    with pytest.raises(MissingDatasetError, match=r"task\(s\) \[6\].*`lit-offmeta collect --family point_robot "
                                                  r"--preset tiny --set .* --seed 2 --out "):
        load_task_buffers(tmp_path, FAMILY, [6])
