"""The ``lit-offmeta`` command: LightningCLI (fit/validate/test/predict), ``collect`` for data and ``export``."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path
from unittest import mock

import torch
from jsonargparse import DefaultHelpFormatter
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.cli import LightningCLI

# Imported so that their classes are subclasses the parser knows: `--model MACAW` and `--data TrialDataModule`
# resolve by short name, and `fit --help` lists them under "known subclasses".
import lit_offmeta.algorithms  # noqa: F401
import lit_offmeta.algorithms.borel.pipeline  # noqa: F401
import lit_offmeta.callbacks  # noqa: F401
import lit_offmeta.datamodules  # noqa: F401
import lit_offmeta.datamodules.trajectory  # noqa: F401
from lit_offmeta.benchmark import main as benchmark_main
from lit_offmeta.collect.cli import main as collect_main
from lit_offmeta.data_cli import main as data_main
from lit_offmeta.export import FORMATS, check_out_dir, export_policy

DESCRIPTION = """lit-offmeta: offline meta-RL with PyTorch Lightning.

Subcommands:
  fit / validate / test / predict   Lightning's, e.g. `lit-offmeta fit --config configs/macaw/point_robot.yaml`;
                                    predict adapts to each requested task and writes the adapted policies:
                                    `lit-offmeta predict --config ALGO.yaml
                                      --config configs/predict/adapted_policies.yaml --ckpt_path CKPT`
  export                            one task's adapted policy as TorchScript + ONNX + weights + architecture.json:
                                    `lit-offmeta export --config ALGO.yaml --ckpt_path CKPT --task_id N --out DIR`
  collect                           make offline task datasets, e.g.
                                    `lit-offmeta collect --family point_robot --preset small --out data/`
                                    (`lit-offmeta collect --help` for its options)
  benchmark                         methods x families x settings x seeds from a suite file, resumable:
                                    `lit-offmeta benchmark --suite configs/benchmarks/S.yaml --out runs/S`
  data stats DIR                    per task: transitions, episodes, return quantiles along the behaviour
                                    lifetime, and a behaviour-curve PNG (`lit-offmeta data --help`)
"""


class OffMetaCLI(LightningCLI):
    """LightningCLI with the project's defaults: any LightningModule/LightningDataModule by class path, the
    library's own also by class name (``--model MACAW --data OfflineMetaDataModule``).

    Observation and action sizes are written explicitly in each config (``model.init_args.obs_dim`` /
    ``action_dim``) rather than linked from the datamodule: linking would make every model class accept those
    arguments and would hide them from ``--print_config``. Modules check them against the datamodule's
    ``obs_dim``/``action_dim`` in ``setup()`` and raise a ``ValueError`` naming the config key to fix
    (e.g. :meth:`lit_offmeta.algorithms.MACAW.setup`).

    ``--ckpt_path`` also accepts checkpoints written from Python (``Trainer(...).fit(MACAW(...))``): those hold
    the module's hyperparameters but not its class path, which Lightning's CLI needs to re-read them; the class
    is then taken from the config's ``model`` (see :meth:`_parse_ckpt_path`).
    """

    def _parse_ckpt_path(self) -> None:
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path or not Path(ckpt_path).is_file():
            return super()._parse_ckpt_path()
        hparams = torch.load(ckpt_path, weights_only=True, map_location="cpu").get("hyper_parameters", {})
        hparams = {k: v for k, v in hparams.items() if k != "_instantiator"}
        if not hparams or "_class_path" in hparams:  # written by this CLI: Lightning's own parsing handles it
            return super()._parse_ckpt_path()
        # The parser has already required a model (``--config`` or ``--model``); its class reads the checkpoint.
        class_path = self.config[subcommand]["model"]["class_path"]
        # The checkpoint's hyperparameters override the config's, as Lightning does for CLI checkpoints.
        override = {subcommand: {"model": {"class_path": class_path, "init_args": hparams}}}
        try:
            self.config = self.parser.parse_object(override, self.config)
        except SystemExit:
            sys.stderr.write(
                f"Parsing the hyperparameters of --ckpt_path {ckpt_path} as {class_path} failed: is the config's "
                "model the class that wrote the checkpoint?\n"
            )
            raise

    def before_validate(self) -> None:
        quiet_evaluation_warnings()

    def before_test(self) -> None:
        quiet_evaluation_warnings()

    def before_predict(self) -> None:
        """``predict`` saves what it adapts through a prediction writer; without one it would compute and discard."""
        quiet_evaluation_warnings()
        if not any(isinstance(c, BasePredictionWriter) for c in self.trainer.callbacks):
            raise ValueError(
                "lit-offmeta predict has no prediction writer to save the adapted policies: add "
                "--config configs/predict/adapted_policies.yaml after the algorithm config (it writes to "
                "predictions/; --trainer.callbacks.init_args.output_dir=DIR changes that)"
            )


class ExportCLI(OffMetaCLI):
    """``lit-offmeta export``: ``predict`` for one task, whose adapted policy :func:`lit_offmeta.export.export_policy`
    writes to ``out_dir`` (no prediction writer needed, nothing logged)."""

    def __init__(self, *args, task_id: int, out_dir: str, formats: tuple[str, ...], **kwargs) -> None:
        self.task_id, self.out_dir, self.formats = int(task_id), out_dir, formats
        super().__init__(*args, **kwargs)

    def before_instantiate_classes(self) -> None:
        data = self.config["predict"]["data"]
        if "predict_ids" not in data.get("init_args", {}):
            raise ValueError(
                f"lit-offmeta export adapts to one task's offline data from an OfflineMetaDataModule; the config's "
                f"data is {data.get('class_path')} (BOReL adapts online, by its belief, and has nothing to export)"
            )
        data["init_args"]["predict_ids"] = [self.task_id]

    def before_predict(self) -> None:
        """The export is the output: no prediction writer needed."""
        quiet_evaluation_warnings()

    def predict(self, model: LightningModule, datamodule: LightningDataModule | None = None, **kwargs) -> None:
        kwargs["return_predictions"] = True
        (prediction,) = self.trainer.predict(model, datamodule=datamodule, **kwargs)
        cls = type(model)
        metadata = {"algorithm": f"{cls.__module__}.{cls.__qualname__}", "checkpoint": str(kwargs.get("ckpt_path")),
                    "family": getattr(getattr(datamodule, "family", None), "name", None), "task_id": self.task_id,
                    "adaptation_batch_size": int(prediction.obs.shape[0])}
        paths = export_policy(prediction.policy, self.out_dir, obs_dim=int(prediction.obs.shape[-1]),
                              formats=self.formats, metadata=metadata)
        for kind, path in paths.items():
            print(f"{kind}: {path}")


EXPORT_DESCRIPTION = """Adapt a checkpointed module (MACAW, MetaBC, MultiTaskAWR) to one task's offline data, as
`lit-offmeta predict` does, and export the adapted policy into the new folder --out: policy.pt (TorchScript),
policy.onnx (input "obs" [batch, obs_dim] -> output "action"), weights.pt (state_dict) and architecture.json
(rebuild with lit_offmeta.export.load_exported). ONNX needs `pip install 'lit-offmeta[export]'`.

Every other option is `lit-offmeta predict`'s (--config, --data.init_args.*, --trainer.*), e.g.
  lit-offmeta export --config configs/macaw/point_robot.yaml --ckpt_path last.ckpt --task_id 20 --out policy_20/
"""


def export_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="lit-offmeta export", description=EXPORT_DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt_path", required=True, help="the checkpoint to adapt")
    parser.add_argument("--task_id", type=int, required=True, help="the task whose offline data to adapt to")
    parser.add_argument("--out", required=True, help="a new (or empty) folder for the exported files")
    parser.add_argument("--formats", default=",".join(FORMATS),
                        help=f"comma-separated, from {', '.join(FORMATS)} (default: both)")
    args, rest = parser.parse_known_args(argv)
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        parser.error(f"--formats: unknown {unknown}; choose from {', '.join(FORMATS)}")
    if not Path(args.ckpt_path).is_file():
        parser.error(f"--ckpt_path {args.ckpt_path}: no such file")
    try:
        check_out_dir(args.out)
    except ValueError as err:
        parser.error(str(err))
    # LightningCLI warns when given args while sys.argv holds some too: here the args ARE the command line
    with mock.patch.object(sys, "argv", sys.argv[:1]):
        ExportCLI(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=["predict", *rest, f"--ckpt_path={args.ckpt_path}", "--trainer.logger=false",
                  "--trainer.enable_progress_bar=false"],
            save_config_callback=None,
            task_id=args.task_id,
            out_dir=args.out,
            formats=formats,
        )


UPSTREAM_WARNINGS = (
    # Lightning 2.6's pytree helper builds torch's LeafSpec, which torch 2.13 deprecates: printed once per run
    # and not actionable by a lit-offmeta user (Lightning's to fix).
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
)
EVALUATION_WARNINGS = (
    # `test`/`predict --ckpt_path` with the training config: Lightning restores the callbacks' state and says that
    # the checkpoint folder of this (new) run differs and that callbacks of the training run are absent.
    r"The dirpath has changed from",
    r"Be aware that when using `ckpt_path`, callbacks used to create the checkpoint need to be provided",
)


class _DropLightningTips(logging.Filter):
    """Lightning's advertisements ("Tip: try installing litlogger ...") at the start of every run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).lstrip().startswith("\N{ELECTRIC LIGHT BULB} Tip:")


def quiet_upstream_warnings() -> None:
    """Silence the :data:`UPSTREAM_WARNINGS` and Lightning's tips (the command-line entry points only: importing
    the library never changes the caller's warning filters or logging)."""
    for category, message in UPSTREAM_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropLightningTips) for f in logger.filters):
            logger.addFilter(_DropLightningTips())


def quiet_evaluation_warnings() -> None:
    """Silence :data:`EVALUATION_WARNINGS`: evaluating a checkpoint is what these subcommands are for."""
    for message in EVALUATION_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


def main(argv: list[str] | None = None) -> None:
    quiet_upstream_warnings()
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "collect":
        collect_main(args[1:])
        return
    if args and args[0] == "benchmark":
        benchmark_main(args[1:])
        return
    if args and args[0] == "data":
        data_main(args[1:])
        return
    if args and args[0] == "export":
        export_main(args[1:])
        return
    OffMetaCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=argv,  # None: LightningCLI reads sys.argv itself
        parser_kwargs={"description": DESCRIPTION, "formatter_class": _raw_formatter()},
    )


def _raw_formatter():
    class RawDescription(DefaultHelpFormatter):
        def _fill_text(self, text, width, indent):  # keep the subcommand table's line breaks
            return "".join(indent + line for line in text.splitlines(keepends=True))

    return RawDescription


if __name__ == "__main__":
    main()
