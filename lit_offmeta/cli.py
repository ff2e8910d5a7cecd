"""The ``lit-offmeta`` command: LightningCLI (fit/validate/test/predict) plus ``collect`` for data."""

from __future__ import annotations

import sys

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI

DESCRIPTION = """lit-offmeta: offline meta-RL with PyTorch Lightning.

Subcommands:
  fit / validate / test / predict   Lightning's, e.g. `lit-offmeta fit --config configs/macaw/point_robot.yaml`
  collect                           make offline task datasets, e.g.
                                    `lit-offmeta collect --family point_robot --preset small --out data/`
                                    (`lit-offmeta collect --help` for its options)
"""


class OffMetaCLI(LightningCLI):
    """LightningCLI with the project's defaults: any LightningModule/LightningDataModule by class path.

    Observation and action sizes are written explicitly in each config (``model.init_args.obs_dim`` /
    ``action_dim``) rather than linked from the datamodule: linking would make every model class accept those
    arguments and would hide them from ``--print_config``. Modules check them against the datamodule's
    ``obs_dim``/``action_dim`` in ``setup()`` and raise a ``ValueError`` naming the config key to fix
    (e.g. :meth:`lit_offmeta.algorithms.MACAW.setup`).
    """


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
