"""The main job (``make demo``): collect PointRobot data, meta-train MACAW, evaluate on held-out goals.

Run it as ``python -m lit_offmeta.demo --out runs/demo``. From a fresh clone it

1. collects the ``small`` PointRobot preset (40 goals, one learning behaviour agent per goal; finished tasks are
   skipped, so a second run reuses the data),
2. meta-trains :class:`~lit_offmeta.algorithms.macaw.MACAW` on the 32 training goals of the family's default
   split with the model and data settings of ``configs/macaw/point_robot.yaml`` (its header says where they
   differ from the paper's MuJoCo defaults, and why), for the config's ``trainer.max_steps`` (5000)
   meta-updates or at most ``--train-minutes``, whichever comes first,
3. evaluates on the 8 held-out goals with the paper's protocol (one adaptation step on 256 transitions of the
   held-out goal's offline data, then a deterministic rollout) through the same
   :class:`~lit_offmeta.callbacks.AdaptationEvaluator` that ``lit-offmeta test`` uses, and
4. writes ``report.md`` (tables), ``metrics.json`` and ``adaptation.png`` (normalised score after 0, 1, 5
   and 20 adaptation steps) into ``--out``, with the TensorBoard logs under ``--out/logs``.

It exits with status 1 when the held-out normalised score after one adaptation step is below
``--min-score`` (0.8), so ``make demo`` fails loudly instead of hiding a regression.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch
import yaml
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from lit_offmeta.algorithms.macaw import MACAW
from lit_offmeta.callbacks import AdaptationEvaluator, write_report
from lit_offmeta.callbacks.evaluator import DEFAULT_CURVE_STEPS
from lit_offmeta.cli import quiet_upstream_warnings
from lit_offmeta.collect.presets import get_preset
from lit_offmeta.collect.runner import collect
from lit_offmeta.datamodules.offline_meta import OfflineMetaDataModule

FAMILY = "point_robot"
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "macaw" / "point_robot.yaml"


def read_config(path: Path) -> tuple[dict, dict, int]:
    """Model init args, data init args and ``trainer.max_steps`` of a MACAW LightningCLI config.

    Raises:
        ValueError: the file is missing, not YAML, or not a MACAW + OfflineMetaDataModule config.
    """
    if not path.is_file():
        raise ValueError(f"--config: {path} does not exist; run from a clone of lit-offmeta or pass --config")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"--config: {path} is not valid YAML: {err}") from None
    model, data = config.get("model") or {}, config.get("data") or {}
    if not str(model.get("class_path", "")).endswith("MACAW"):
        raise ValueError(f"--config: {path}: model.class_path must name MACAW, got {model.get('class_path')!r}")
    if not str(data.get("class_path", "")).endswith("OfflineMetaDataModule"):
        raise ValueError(f"--config: {path}: data.class_path must name OfflineMetaDataModule, "
                         f"got {data.get('class_path')!r}")
    max_steps = int((config.get("trainer") or {}).get("max_steps") or 3000)
    return dict(model.get("init_args") or {}), dict(data.get("init_args") or {}), max_steps


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lit_offmeta.demo", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/demo", help="output directory (report, plot, logs)")
    parser.add_argument("--data", default=None, help="dataset root (default: OUT/data); reused if present")
    parser.add_argument("--preset", default="small", help="collection preset (tests use 'tiny')")
    parser.add_argument("--train-minutes", type=float, default=7.0,
                        help="wall-clock budget of meta-training (the whole demo must fit in 10 minutes)")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG),
                        help="MACAW config whose model and data settings the demo uses")
    parser.add_argument("--max-meta-steps", type=int, default=0,
                        help="meta-updates (0: the config's trainer.max_steps); --train-minutes bounds them too")
    parser.add_argument("--evals", type=int, default=4, help="held-out evaluations during training")
    parser.add_argument("--lr-value", type=float, default=None,
                        help="outer learning rate of the value function (default: the config's)")
    parser.add_argument("--lr-policy", type=float, default=None,
                        help="outer learning rate of the policy (default: the config's)")
    parser.add_argument("--width", type=int, default=None, help=argparse.SUPPRESS)  # tests: tiny networks
    parser.add_argument("--batch-size", type=int, default=None,
                        help="support, query and adaptation batch size per task (default: the config's)")
    parser.add_argument("--adaptation-batch", type=int, default=256,
                        help="held-out adaptation batch per task (the paper's test-time batch: 256)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: at PointRobot sizes extra threads only add contention)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-score", type=float, default=0.8,
                        help="exit with status 1 if the held-out normalised score is below this")
    parser.add_argument("--train-ids", default=None, help=argparse.SUPPRESS)  # tests: "0,1" with the tiny preset
    parser.add_argument("--test-ids", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    for name in ("train_minutes", "lr_value", "lr_policy"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0")
    if args.max_meta_steps < 0:
        parser.error("--max-meta-steps must be >= 0")
    for name in ("evals", "width", "batch_size", "adaptation_batch", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def _ids(text: str | None) -> list[int] | None:
    return None if text is None else [int(t) for t in text.split(",") if t.strip()]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_upstream_warnings()
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    out = Path(args.out).resolve()
    data_dir = (Path(args.data) if args.data else out / "data").resolve()
    out.mkdir(parents=True, exist_ok=True)

    # 1. data: one learning behaviour agent per goal; finished tasks are skipped (resumable)
    print(f"[demo] 1/3 collecting {FAMILY} data (preset {args.preset}) into {data_dir}", flush=True)
    collect(get_preset(FAMILY, args.preset), data_dir, seed=args.seed, progress=not args.no_progress)
    collect_s = time.perf_counter() - started

    # 2. meta-training with configs/macaw/point_robot.yaml's model and data settings, bounded by a wall-clock budget
    seed_everything(args.seed, workers=True)
    model_args, data_args, max_steps = read_config(Path(args.config))
    train_ids, test_ids = _ids(args.train_ids), _ids(args.test_ids)
    data_args.update(family=FAMILY, data_dir=str(data_dir), seed=args.seed)
    if train_ids is not None:
        data_args.update(train_ids=train_ids, test_ids=test_ids,
                         tasks_per_batch=min(int(data_args.get("tasks_per_batch", 5)), len(train_ids)))
    if args.batch_size is not None:
        data_args.update(support_size=args.batch_size, query_size=args.batch_size)
    model_args.update({k: v for k, v in (("lr_value", args.lr_value), ("lr_policy", args.lr_policy)) if v})
    if args.width is not None:
        net = dict(model_args.get("net", {}))
        latent = min(args.width, int(net.get("latent_size", 100)))
        model_args["net"] = {**net, "width": args.width, "latent_size": latent}
    max_meta_steps = args.max_meta_steps or max_steps  # MACAW's global_step counts meta-updates
    data_args["batches_per_epoch"] = max(1, max_meta_steps // args.evals)
    dm = OfflineMetaDataModule(**data_args)
    dm.setup("fit")
    model = MACAW(**model_args)
    adaptation_batch = min(args.adaptation_batch, int(args.batch_size or args.adaptation_batch))
    evaluator = AdaptationEvaluator(every_n_epochs=1, hook="train", batch_size=adaptation_batch, steps=1,
                                    curve_steps=list(DEFAULT_CURVE_STEPS), curve_every_n_evaluations=0,
                                    random_episodes=10, seed=args.seed)
    logger = TensorBoardLogger(out, name="logs")
    trainer = Trainer(
        max_epochs=args.evals, max_time={"seconds": int(args.train_minutes * 60)}, logger=logger,
        callbacks=[evaluator, ModelCheckpoint(dirpath=out / "checkpoints", save_last=True, save_top_k=0)],
        limit_val_batches=0, accelerator="cpu", devices=1,
        enable_progress_bar=not args.no_progress, log_every_n_steps=10, enable_model_summary=False,
    )
    print(f"[demo] 2/3 meta-training MACAW on {len(dm.train_task_ids)} goals for at most "
          f"{args.train_minutes:g} min ({max_meta_steps} meta-updates; settings from {args.config})", flush=True)
    train_started = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    train_s = time.perf_counter() - train_started
    meta_updates = trainer.global_step  # one optimizer step per meta-update

    # 3. evaluation on the held-out goals (paper protocol) with the adaptation curve; the test hook writes
    #    metrics.json / report.md into the log dir, and the demo writes its own copy (with timings) into --out
    print(f"[demo] 3/3 evaluating on held-out goals {list(dm.test_task_ids)}", flush=True)
    trainer.test(model, datamodule=dm, verbose=False)
    evaluation = dict(evaluator.last_evaluation)
    total_s = time.perf_counter() - started
    score = evaluation["summary"]["score_mean"]
    passed = bool(score >= args.min_score)
    evaluation["demo"] = {
        "collect_seconds": round(collect_s, 1), "train_seconds": round(train_s, 1),
        "total_seconds": round(total_s, 1), "meta_updates": meta_updates,
        "meta_updates_per_second": round(meta_updates / max(train_s, 1e-9), 2),
        "held_out_score_after_1_step": score, "min_score": args.min_score, "passed": passed,
        "command": "python -m lit_offmeta.demo " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    notes = (
        f"MACAW on PointRobot (dense), {len(dm.train_task_ids)} training goals, held-out goals "
        f"{list(dm.test_task_ids)}.\n\n"
        f"Command: `{evaluation['demo']['command']}`. Collection {collect_s:.0f} s, meta-training {train_s:.0f} s "
        f"({meta_updates} meta-updates), total {total_s:.0f} s.\n\n"
        f"**Held-out normalised score after one adaptation step: {score:.3f}** (threshold {args.min_score}: "
        f"{'met' if passed else 'NOT met'}). 0 = a uniformly random policy in the environment, 1 = the best "
        "behaviour episode in that goal's offline data. Deterministic rollouts of the family's 20-step horizon."
    )
    write_report(out, evaluation, title="lit-offmeta demo: MACAW on PointRobot", notes=notes)
    png = Path(trainer.log_dir) / "adaptation.png"
    if png.exists():  # a copy beside the report, written under a temporary name and renamed
        tmp = out / ".adaptation.png.tmp"
        shutil.copyfile(png, tmp)
        os.replace(tmp, out / "adaptation.png")
    print(json.dumps(evaluation["demo"], indent=2))
    print(f"[demo] wrote {out / 'report.md'}, {out / 'metrics.json'}, {out / 'adaptation.png'}")
    if not passed:
        print(f"[demo] held-out score {score:.3f} is below --min-score {args.min_score}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
