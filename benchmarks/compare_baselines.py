"""Compare MACAW with its baselines on held-out tasks: meta-BC, multi-task AWR + fine-tuning, offline PEARL.

Every algorithm is built from its config file (``configs/macaw/<family>.yaml``,
``configs/baselines/<algo>/<family>.yaml``: one source of truth for the hyperparameters), meta-trained on the
same offline data for the same number of batches, then evaluated by the project's ``AdaptationEvaluator`` on the
family's held-out tasks: adaptation batch of 256 offline transitions -> ``adapt`` (each module's own default
number of steps: MACAW and meta-BC 1 gradient step, MT-AWR 20 Adam steps, PEARL closed-form inference) ->
one deterministic rollout per task. We report mean undiscounted return and normalised score (0 = uniform random
policy, 1 = best trajectory in the task's data) over held-out tasks, then mean and standard error over seeds.

Example (PointRobot, ~15 min on 2 shared CPU cores)::

    lit-offmeta collect --family point_robot --preset small --out data/
    nice -n 10 python benchmarks/compare_baselines.py --family point_robot --data data/ --seeds 0 1 2 \\
        --batches 1500 --out runs/compare_point_robot.json

The paper's ablation set-ups (Cheetah-Vel) are the same command with data or model settings changed:
``--split sparse_5`` / ``ood_0_1`` (task sparsity, out of distribution), ``--window last
--window-trajectories 20`` (data quality of the adaptation data), ``--model-set enriched_policy_loss=false``.

Prints ``name: value unit`` lines, then a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from lit_offmeta.benchmark import instantiate, mean_se

REPO = Path(__file__).resolve().parents[1]
ALGORITHMS = {
    "MACAW": "configs/macaw/{family}.yaml",
    "Meta-BC": "configs/baselines/meta_bc/{family}.yaml",
    "MT-AWR+FT": "configs/baselines/mt_awr/{family}.yaml",
    "Offline PEARL": "configs/baselines/pearl/{family}.yaml",
    # MACAW's ablations (Fig. 4 left and centre), run with --algorithms "MAML+AWR" ...
    "MAML+AWR": "configs/macaw/ablations/maml_awr_{family}.yaml",
    "No WT (equal width)": "configs/macaw/ablations/no_wt_equal_width_{family}.yaml",
    "No WT (equal params)": "configs/macaw/ablations/no_wt_equal_params_{family}.yaml",
}
DEFAULT_ALGORITHMS = ["MACAW", "Meta-BC", "MT-AWR+FT", "Offline PEARL"]


def _yaml_value(text: str):
    """A YAML scalar, with ``1e-4`` read as a float (YAML 1.1 wants ``1.0e-4`` and would return a string)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def evaluate(model, dm, eval_seed: int) -> dict:
    """Held-out mean return and score after each module's default adaptation, and with 0 steps (the prior)."""
    from lit_offmeta.callbacks import AdaptationEvaluator

    evaluator = AdaptationEvaluator(batch_size=256, steps=None, episodes=1, seed=eval_seed, random_episodes=10,
                                    plot=False, report=False)
    was_training = model.training
    model.eval()
    task_ids = list(dm.test_task_ids)
    adapted = evaluator.evaluate_tasks(model, dm, task_ids, with_curve=False)
    evaluator.steps = 0  # the meta-learned prior itself, before any adaptation
    prior = evaluator.evaluate_tasks(model, dm, task_ids, with_curve=False)
    model.train(was_training)
    return {
        "return": float(np.mean([adapted[t]["return"] for t in task_ids])),
        "score": float(np.mean([adapted[t]["score"] for t in task_ids])),
        "return_steps0": float(np.mean([prior[t]["return"] for t in task_ids])),
        "score_steps0": float(np.mean([prior[t]["score"] for t in task_ids])),
        "per_task_return": {int(t): adapted[t]["return"] for t in task_ids},
    }


def run_one(name: str, config: Path, data_dir: str, seed: int, batches: int, eval_seed: int,
            curve_at: list[int], data_overrides: dict | None = None, model_overrides: dict | None = None) -> dict:
    """Train one algorithm from its config for ``batches`` task batches and evaluate it on held-out tasks
    (also after each batch count in ``curve_at``, for a learning curve). ``*_overrides`` replace config values."""
    import lightning.pytorch as pl

    cfg = yaml.safe_load(config.read_text())
    pl.seed_everything(seed, verbose=False)
    model = instantiate(cfg["model"], **(model_overrides or {}))
    dm = instantiate(cfg["data"], data_dir=data_dir, batches_per_epoch=batches, seed=seed, **(data_overrides or {}))
    curve: dict[int, dict] = {}
    eval_s = [0.0]

    class Curve(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch_idx + 1 in curve_at and batch_idx + 1 < batches:
                start = time.perf_counter()
                result = evaluate(pl_module, trainer.datamodule, eval_seed)
                curve[batch_idx + 1] = {k: result[k] for k in ("return", "score")}
                eval_s[0] += time.perf_counter() - start

    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                         accelerator="cpu", devices=1, callbacks=[Curve()])
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    train_s = time.perf_counter() - start - eval_s[0]
    final = evaluate(model, dm, eval_seed)
    curve[batches] = {k: final[k] for k in ("return", "score")}
    return {"algorithm": name, "seed": seed, "batches": batches, "train_s": train_s, **final, "curve": curve}


def table(results: list[dict]) -> str:
    lines = ["| algorithm | held-out return (adapted) | normalised score (adapted) | return before adaptation "
             "| train s / seed |", "|---|---|---|---|---|"]
    for name in ALGORITHMS:
        rows = [r for r in results if r["algorithm"] == name]
        if not rows:
            continue
        cells = [mean_se([r[k] for r in rows]) for k in ("return", "score", "return_steps0")]
        train_s = np.mean([r["train_s"] for r in rows])
        lines.append(f"| {name} | {cells[0][0]:.2f} ± {cells[0][1]:.2f} | {cells[1][0]:.3f} ± {cells[1][1]:.3f} "
                     f"| {cells[2][0]:.2f} ± {cells[2][1]:.2f} | {train_s:.0f} |")
    return "\n".join(lines)


def curve_table(results: list[dict]) -> str:
    """Held-out return (mean ± s.e. over seeds) after each evaluated number of training batches."""
    points = sorted({int(b) for r in results for b in r["curve"]})
    lines = ["| algorithm | " + " | ".join(f"{b} batches" for b in points) + " |", "|---" * (len(points) + 1) + "|"]
    for name in ALGORITHMS:
        rows = [r for r in results if r["algorithm"] == name]
        if not rows:
            continue
        cells = []
        for b in points:
            values = [r["curve"][b]["return"] for r in rows if b in r["curve"]]
            m, se = mean_se(values)
            cells.append(f"{m:.2f} ± {se:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="point_robot")
    parser.add_argument("--data", default="data/", help="data root written by `lit-offmeta collect --out`")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batches", type=int, default=1500, help="meta-training task batches per run")
    parser.add_argument("--curve-at", type=int, nargs="*", default=[],
                        help="also evaluate after these numbers of batches (learning curve)")
    parser.add_argument("--algorithms", nargs="+", default=DEFAULT_ALGORITHMS, choices=list(ALGORITHMS))
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 suits a shared CPU)")
    parser.add_argument("--split", default=None, help="named task split of the family (default: the config's)")
    parser.add_argument("--window", default=None, choices=["all", "first", "middle", "last"],
                        help="data-quality window of the adaptation (support) data")
    parser.add_argument("--window-trajectories", type=int, default=None, help="trajectories in --window")
    parser.add_argument("--model-set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a model init argument of every algorithm (YAML value), repeatable")
    parser.add_argument("--data-set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a datamodule init argument (YAML value), e.g. tasks_per_batch=3, repeatable")
    parser.add_argument("--out", default=None, help="write all per-run results to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data_overrides = {k: v for k, v in (("split", args.split), ("window", args.window),
                                        ("window_trajectories", args.window_trajectories)) if v is not None}
    model_overrides = {}
    for option, items, overrides in (("--model-set", args.model_set, model_overrides),
                                     ("--data-set", args.data_set, data_overrides)):
        for item in items:
            key, sep, value = item.partition("=")
            if not sep or not key:
                parser.error(f"{option} expects KEY=VALUE, got {item!r}")
            overrides[key] = _yaml_value(value)
    results = []
    for seed in args.seeds:
        for name in args.algorithms:
            config = REPO / ALGORITHMS[name].format(family=args.family)
            if not config.exists():
                raise SystemExit(f"no config {config} for {name} on {args.family}")
            result = run_one(name, config, args.data, seed, args.batches, eval_seed=0, curve_at=args.curve_at,
                             data_overrides=data_overrides, model_overrides=model_overrides)
            results.append(result)
            print(f"{name} seed {seed}: return {result['return']:.3f} score {result['score']:.3f} "
                  f"(before adaptation {result['return_steps0']:.3f}); train {result['train_s']:.0f} s", flush=True)
    for name in args.algorithms:
        rows = [r for r in results if r["algorithm"] == name]
        key = "".join(c if c.isalnum() else "_" for c in name.lower())
        m, se = mean_se([r["return"] for r in rows])
        print(f"{key}_return_mean: {m:.3f} return")
        print(f"{key}_return_se: {se:.3f} return")
    print(table(results))
    if args.curve_at:
        print(curve_table(results))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
        tmp.replace(out)


if __name__ == "__main__":
    main()
