"""AdaptationEvaluator in real Trainer runs, with a fake module whose adapted policy is known in closed form."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger
from test_callbacks_fakes import ConstantModule, LineFamily, line_return
from torch.utils.data import DataLoader, TensorDataset

from lit_offmeta.callbacks.distributed import merge_task_results, shard_tasks
from lit_offmeta.callbacks.evaluator import AdaptationEvaluator, best_behaviour_return, random_policy_returns
from lit_offmeta.datamodules.offline_meta import ReturnRange

HORIZON = LineFamily.horizon


def adapted_action(steps: int | None) -> float:
    """The fake module's adapted action: 0.25 per adaptation step (default 2 steps)."""
    return 0.25 * (2 if steps is None else steps)


class FakeDataModule(LightningDataModule):
    """Tasks of LineFamily (goals 4, 4.5, 5, 5.5, 6 > horizon); the best behaviour episode moves at full speed."""

    def __init__(self, test_task_ids=(0, 2, 4)):
        super().__init__()
        self.family = LineFamily()
        self.test_task_ids = list(test_task_ids)
        self.train_task_ids = [i for i in range(5) if i not in self.test_task_ids]
        self.batches_requested = []

    def task(self, task_id):
        return self.family.default_tasks()[task_id]

    def adaptation_batch(self, task_id, size=256, window=None, seed=0):
        self.batches_requested.append((task_id, size, window, seed))
        goal = self.task(task_id)["goal"]
        return {"obs": torch.full((size, 1), goal), "rewards": torch.zeros(size)}

    def behaviour_return_range(self, task_id):
        goal = self.task(task_id)["goal"]
        return ReturnRange(line_return(0.0, goal, HORIZON), line_return(0.5, goal, HORIZON),
                           line_return(1.0, goal, HORIZON))

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.zeros(4, 1)), batch_size=1)

    def val_dataloader(self):
        return DataLoader(TensorDataset(torch.zeros(1, 1)), batch_size=1)

    def test_dataloader(self):
        return DataLoader(TensorDataset(torch.zeros(1, 1)), batch_size=1)


class FakeModule(LightningModule):
    """adapt() returns a constant mean action 0.25 * steps; it records the grad mode it was called in."""

    def __init__(self, with_validation: bool = True, diverge_at: int = 1000, record_dir=None):
        super().__init__()
        self.diverge_at = diverge_at
        self.record_dir = record_dir  # adapt() appends "goal" lines to record_dir/adapt_{rank}.txt (DDP test)
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.adapt_calls = []
        if not with_validation:
            self.validation_step = None  # is_overridden() then reports False

    def adapt(self, context, steps=None):
        if steps is not None and steps >= self.diverge_at:
            return ConstantModule(float("nan"))
        if self.record_dir is not None:
            with open(f"{self.record_dir}/adapt_{self.global_rank}.txt", "a") as f:
                f.write(f"{float(context['obs'][0, 0])}\n")
        x = torch.ones(1, requires_grad=True)
        self.adapt_calls.append((steps, torch.is_grad_enabled(), torch.is_inference_mode_enabled(),
                                 (x * 2).requires_grad, context["obs"].shape[0]))
        return ConstantModule(adapted_action(steps))

    def training_step(self, batch, batch_idx):
        return (self.weight - 1).pow(2).sum()

    def validation_step(self, batch, batch_idx):
        pass

    def test_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def expected_scores(dm, task_ids, action, random):
    ret = np.array([line_return(action, dm.task(t)["goal"], HORIZON) for t in task_ids])
    best = np.array([dm.behaviour_return_range(t).max for t in task_ids])
    return ret, (ret - random) / (best - random)


def make_trainer(tmp_path, evaluator, **kwargs):
    return Trainer(
        default_root_dir=tmp_path, logger=CSVLogger(tmp_path, name="run"), callbacks=[evaluator],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_train_batches=2, limit_val_batches=1, accelerator="cpu", devices=1, **kwargs,
    )


def test_fit_logs_returns_scores_and_curve(tmp_path):
    """During fit: every epoch, the right keys with values computed by hand from the known adapted policy."""
    dm, module = FakeDataModule(), FakeModule()
    evaluator = AdaptationEvaluator(batch_size=8, steps=4, curve_steps=[0, 1, 4], random_episodes=3, seed=5)
    trainer = make_trainer(tmp_path, evaluator, max_epochs=2)
    trainer.fit(module, datamodule=dm)

    tasks = [dm.task(t) for t in dm.test_task_ids]
    random = random_policy_returns(dm.family, tasks, episodes=3, seeds=[5 + 7919 * (t + 1) for t in (0, 2, 4)])
    ret, score = expected_scores(dm, dm.test_task_ids, 1.0, random)  # 4 steps -> action 1.0
    m = trainer.callback_metrics
    assert float(m["rollout/return_mean"]) == pytest.approx(ret.mean(), rel=1e-6)
    assert float(m["rollout/score_mean"]) == pytest.approx(score.mean(), rel=1e-6)
    assert float(m["rollout/score_mean"]) == pytest.approx(1.0)  # full speed is the best behaviour
    for t, r, s in zip(dm.test_task_ids, ret, score):
        assert float(m[f"rollout/task_{t}/return"]) == pytest.approx(r, rel=1e-6)
        assert float(m[f"rollout/task_{t}/score"]) == pytest.approx(s, rel=1e-6)
    for k in (0, 1, 4):
        ret_k, score_k = expected_scores(dm, dm.test_task_ids, 0.25 * k, random)
        assert float(m[f"rollout/curve/return_steps_{k}"]) == pytest.approx(ret_k.mean(), rel=1e-6)
        assert float(m[f"rollout/curve/score_steps_{k}"]) == pytest.approx(score_k.mean(), rel=1e-6)
    # success: within 0.5 of the goal at some step; x reaches 4 at most, so only goal 4 (id 0): 1 of 3
    assert float(m["rollout/success_rate"]) == pytest.approx(1 / 3)
    # adaptation ran with gradients on, outside inference mode, on 8-transition batches with seeds seed + id
    assert all(c[1] and not c[2] and c[3] and c[4] == 8 for c in module.adapt_calls)
    assert {(t, s) for t, _, _, s in dm.batches_requested} == {(t, 5 + t) for t in dm.test_task_ids}
    # two evaluations (one per epoch, none in the sanity check), in the CSV log and the history
    assert evaluator.num_evaluations == 2 and len(evaluator.history) == 2
    rows = list(csv.DictReader(open(trainer.logger.log_dir + "/metrics.csv")))
    logged = [r for r in rows if r.get("rollout/return_mean")]
    assert len(logged) == 2
    assert (tmp_path / "run" / "version_0" / "adaptation.png").stat().st_size > 1000


def test_train_hook_and_every_n_epochs(tmp_path):
    """Without validation_step the evaluator runs at train epoch end; every_n_epochs=2 of 4 epochs -> 2 evals."""
    module = FakeModule(with_validation=False)
    evaluator = AdaptationEvaluator(every_n_epochs=2, curve_steps=None, batch_size=4, random_episodes=1)
    trainer = make_trainer(tmp_path, evaluator, max_epochs=4)
    trainer.fit(module, datamodule=FakeDataModule())
    assert evaluator._fit_hook == "train"
    assert [h["epoch"] for h in evaluator.history] == [1, 3]
    assert "rollout/curve/return_steps_0" not in trainer.callback_metrics


def test_fast_dev_run_and_sanity_check_are_skipped(tmp_path):
    module = FakeModule()
    evaluator = AdaptationEvaluator(batch_size=4)
    trainer = Trainer(default_root_dir=tmp_path, callbacks=[evaluator], fast_dev_run=True,
                      enable_progress_bar=False, accelerator="cpu")
    trainer.fit(module, datamodule=FakeDataModule())
    trainer.test(module, datamodule=FakeDataModule())
    assert module.adapt_calls == [] and evaluator.num_evaluations == 0


def test_test_writes_report_and_metrics_json(tmp_path):
    """trainer.test: metrics.json and report.md in the log dir, holding the per-task values."""
    dm, module = FakeDataModule(test_task_ids=(1, 3)), FakeModule()
    evaluator = AdaptationEvaluator(steps=2, curve_steps=[0, 2], random_episodes=2, batch_size=4)
    trainer = make_trainer(tmp_path, evaluator)
    results = trainer.test(module, datamodule=dm)
    log_dir = tmp_path / "run" / "version_0"
    metrics = json.loads((log_dir / "metrics.json").read_text())
    random = random_policy_returns(dm.family, [dm.task(1), dm.task(3)], episodes=2, seeds=[7919 * 2, 7919 * 4])
    ret, score = expected_scores(dm, [1, 3], 0.5, random)
    assert [t["task_id"] for t in metrics["tasks"]] == [1, 3]
    np.testing.assert_allclose([t["return"] for t in metrics["tasks"]], ret)
    np.testing.assert_allclose(metrics["summary"]["score_mean"], score.mean())
    assert results[0]["rollout/return_mean"] == pytest.approx(ret.mean())
    assert set(metrics["curve"]) == {"0", "2"}
    report = (log_dir / "report.md").read_text()
    assert "| 1 | {\"goal\": 4.5} |" in report and "## Adaptation curve" in report
    assert not [p for p in log_dir.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_validate_evaluates_and_state_round_trips(tmp_path):
    dm, module = FakeDataModule(), FakeModule()
    evaluator = AdaptationEvaluator(curve_steps=None, batch_size=4, random_episodes=2)
    trainer = make_trainer(tmp_path, evaluator)
    trainer.validate(module, datamodule=dm)
    assert evaluator.num_evaluations == 1
    state = evaluator.state_dict()
    restored = AdaptationEvaluator()
    restored.load_state_dict(state)
    assert restored.random_returns == evaluator.random_returns and set(restored.random_returns) == {0, 2, 4}
    assert restored.history == evaluator.history and restored.num_evaluations == 1


def test_rank_sharding_covers_every_task_once():
    """Two ranks split five tasks with no overlap; merging restores the order; duplicates are refused."""
    ids = [7, 3, 9, 1, 4]
    shards = [shard_tasks(ids, r, 2) for r in range(2)]
    assert shards == [[7, 9, 4], [3, 1]]
    assert shard_tasks(ids, 0, 1) == ids and shard_tasks([1], 1, 2) == []
    merged = merge_task_results([{t: t * 10 for t in s} for s in shards], ids)
    assert list(merged.items()) == [(7, 70), (3, 30), (9, 90), (1, 10), (4, 40)]
    with pytest.raises(RuntimeError, match="more than one rank"):
        merge_task_results([{7: 1}, {7: 2}], [7])
    with pytest.raises(RuntimeError, match="no rank"):
        merge_task_results([{7: 1}], [7, 3])
    with pytest.raises(ValueError, match="rank must be in"):
        shard_tasks(ids, 2, 2)


def test_evaluator_sharded_evaluation_matches_single_process(tmp_path):
    """What rank 0 and rank 1 of a 2-process run would compute, merged, equals the single-process result."""
    dm, module = FakeDataModule(), FakeModule()
    ev = AdaptationEvaluator(steps=3, curve_steps=[1], random_episodes=2)
    full = ev.evaluate_tasks(module, dm, dm.test_task_ids, with_curve=True)
    parts = [AdaptationEvaluator(steps=3, curve_steps=[1], random_episodes=2).evaluate_tasks(
        module, dm, shard_tasks(dm.test_task_ids, r, 2), with_curve=True) for r in range(2)]
    merged = merge_task_results(parts, dm.test_task_ids)
    assert merged == full


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"every_n_epochs": -1}, "every_n_epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"hook": "epoch"}, "hook"),
        ({"steps": -2}, "steps"),
        ({"tasks": "heldout"}, "tasks"),
        ({"tasks": []}, "tasks"),
        ({"curve_steps": [-1]}, "curve_steps"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdaptationEvaluator(**kwargs)


def test_module_without_adapt_is_refused(tmp_path):
    class NoAdapt(FakeModule):
        adapt = None

    trainer = make_trainer(tmp_path, AdaptationEvaluator(), max_epochs=1)
    with pytest.raises(ValueError, match="has no adapt"):
        trainer.fit(NoAdapt(), datamodule=FakeDataModule())


def test_best_behaviour_return_reads_the_maximum():
    class DM:
        def __init__(self, value):
            self.value = value

        def behaviour_return_range(self, task_id):
            return self.value

    assert best_behaviour_return(DM(ReturnRange(-9.0, -5.0, -1.0)), 0) == -1.0
    assert best_behaviour_return(DM({"best": 2.0}), 0) == 2.0
    assert best_behaviour_return(DM(3), 0) == 3.0
    with pytest.raises(ValueError, match="expected a ReturnRange"):
        best_behaviour_return(DM("x"), 0)


def test_diverged_adaptation_is_reported_as_nan_not_raised(tmp_path):
    """A curve point whose adapted policy emits NaN actions logs NaN; the other points and the run go on."""
    dm, module = FakeDataModule(), FakeModule(diverge_at=20)
    evaluator = AdaptationEvaluator(steps=1, curve_steps=[0, 20], batch_size=4, random_episodes=1)
    trainer = make_trainer(tmp_path, evaluator, max_epochs=1)
    with pytest.warns(RuntimeWarning, match="diverged"):
        trainer.fit(module, datamodule=dm)
    m = trainer.callback_metrics
    assert np.isnan(float(m["rollout/curve/return_steps_20"]))
    assert np.isfinite(float(m["rollout/curve/return_steps_0"])) and np.isfinite(float(m["rollout/return_mean"]))


@pytest.mark.slow
def test_ddp_two_processes_split_tasks_and_log_the_full_result(tmp_path):
    """Real DDP (2 CPU processes, gloo): each rank adapts only its shard of the tasks, yet both log the values
    of all tasks, equal to the single-process evaluation (no duplicate work, nothing lost)."""
    dm = FakeDataModule(test_task_ids=(0, 1, 2, 3, 4))
    evaluator = AdaptationEvaluator(steps=3, curve_steps=None, batch_size=4, random_episodes=2, report=False)
    trainer = Trainer(default_root_dir=tmp_path, callbacks=[evaluator], strategy="ddp_spawn", devices=2,
                      accelerator="cpu", logger=CSVLogger(tmp_path, name="ddp"), enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False)
    trainer.validate(FakeModule(record_dir=str(tmp_path)), datamodule=dm)
    goals = [sorted(float(x) for x in (tmp_path / f"adapt_{r}.txt").read_text().split()) for r in range(2)]
    assert goals == [[4.0, 5.0, 6.0], [4.5, 5.5]]  # rank 0: tasks 0, 2, 4; rank 1: tasks 1, 3; each once
    single = AdaptationEvaluator(steps=3, curve_steps=None, batch_size=4, random_episodes=2)
    expected = single.evaluate_tasks(FakeModule(), FakeDataModule(test_task_ids=(0, 1, 2, 3, 4)), [0, 1, 2, 3, 4],
                                     with_curve=False)
    # ddp_spawn returns rank 0's callback_metrics to the main process
    m = trainer.callback_metrics
    for t, r in expected.items():
        assert float(m[f"rollout/task_{t}/return"]) == pytest.approx(r["return"], rel=1e-6)
        assert float(m[f"rollout/task_{t}/score"]) == pytest.approx(r["score"], rel=1e-6)
    assert float(m["rollout/return_mean"]) == pytest.approx(np.mean([r["return"] for r in expected.values()]))


def test_save_figure_is_atomic_and_leaves_nothing_when_writing_fails(tmp_path):
    import matplotlib.pyplot as plt

    from lit_offmeta.figures import save_figure

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    out = save_figure(fig, tmp_path / "new" / "fig.png", dpi=50)
    assert out.read_bytes()[:4] == b"\x89PNG" and sorted(p.name for p in out.parent.iterdir()) == ["fig.png"]
    assert out.stat().st_mode & 0o777 == 0o644

    def broken(*args, **kwargs):
        raise OSError("disk full")

    fig.savefig = broken
    with pytest.raises(OSError, match="disk full"):
        save_figure(fig, tmp_path / "new" / "other.png")
    assert sorted(p.name for p in out.parent.iterdir()) == ["fig.png"]  # no temporary file, no partial image
    plt.close(fig)
