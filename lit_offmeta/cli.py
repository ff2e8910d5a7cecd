"""The ``lit-offmeta`` command: LightningCLI (fit/validate/test/predict) plus ``collect`` for data."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI

# Imported so that their classes are subclasses the parser knows: `--model MACAW` and `--data TrialDataModule`
# resolve by short name, and `fit --help` lists them under "known subclasses".
import lit_offmeta.algorithms  # noqa: F401, E402
import lit_offmeta.algorithms.borel.pipeline  # noqa: F401, E402
import lit_offmeta.callbacks  # noqa: F401, E402
import lit_offmeta.datamodules  # noqa: F401, E402
import lit_offmeta.datamodules.trajectory  # noqa: F401, E402

DESCRIPTION = """lit-offmeta: offline meta-RL with PyTorch Lightning.

Subcommands:
  fit / validate / test / predict   Lightning's, e.g. `lit-offmeta fit --config configs/macaw/point_robot.yaml`
  collect                           make offline task datasets, e.g.
                                    `lit-offmeta collect --family point_robot --preset small --out data/`
                                    (`lit-offmeta collect --help` for its options)
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


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "collect":
        from lit_offmeta.collect.cli import main as collect_main

        collect_main(args[1:])
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
    from jsonargparse import DefaultHelpFormatter

    class RawDescription(DefaultHelpFormatter):
        def _fill_text(self, text, width, indent):  # keep the subcommand table's line breaks
            return "".join(indent + line for line in text.splitlines(keepends=True))

    return RawDescription


if __name__ == "__main__":
    main()
