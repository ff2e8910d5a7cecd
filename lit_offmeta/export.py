"""Export an adapted policy for deployment without lit-offmeta: TorchScript, ONNX, weights and architecture.json.

MACAW, meta-BC and multi-task AWR adapt to a plain ``nn.Sequential`` of ``nn.Linear`` layers with ReLU between
them and a Tanh at the end (``obs [N, obs_dim] -> action [N, act_dim]``: the tanh-squashed mean action, each
entry in ``[-1, 1]``). :func:`export_policy` writes such a policy into a new folder::

    policy.pt          TorchScript: torch.jit.load("policy.pt")(obs)  (also from C++ via libtorch)
    policy.onnx        ONNX, input "obs" [batch, obs_dim] float32 -> output "action" [batch, act_dim]; the batch
                       axis is dynamic: onnxruntime.InferenceSession("policy.onnx").run(None, {"obs": obs})
    weights.pt         the state_dict (plain tensors; torch.load(path, weights_only=True))
    architecture.json  layer sizes, activations, obs/action sizes and what the output means

:func:`load_exported` rebuilds the ``nn.Sequential`` from ``architecture.json`` and ``weights.pt``. ONNX needs
the ``export`` extra (``pip install 'lit-offmeta[export]'``: onnx, onnxscript, onnxruntime); the ONNX file is
made by ``torch.onnx.export(..., dynamo=True)``. TorchScript is what libtorch and d3rlpy users load, though torch
itself now marks ``torch.jit.script`` deprecated in favour of ``torch.export``.

From the command line, ``lit-offmeta export --config ALGO.yaml --ckpt_path CKPT --task_id N --out DIR`` adapts
the checkpointed module to task ``N``'s offline data (as ``lit-offmeta predict`` does) and exports the result.

Offline PEARL's adapted policy (actor, context encoder and task belief) and BOReL's belief policy are not plain
networks of the observation and are refused with a ``ValueError``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

FORMATS = ("torchscript", "onnx")
"""The formats :func:`export_policy` can write, besides the weights and architecture.json it always writes."""

FILES = {"weights": "weights.pt", "architecture": "architecture.json", "torchscript": "policy.pt",
         "onnx": "policy.onnx"}
FORMAT_VERSION = 1
_ACTIVATIONS = {nn.ReLU: "relu", nn.Tanh: "tanh"}
_MODULES = {name: cls for cls, name in _ACTIVATIONS.items()}


def describe_policy(policy: nn.Module, obs_dim: int) -> dict[str, Any]:
    """The architecture of a plain MLP policy as a JSON-able dict (what ``architecture.json`` holds).

    Raises:
        ValueError: when ``policy`` is not an ``nn.Sequential`` of ``nn.Linear`` and ReLU/Tanh layers that starts
            and ends with a ``Linear`` (optionally followed by a Tanh), or its input size is not ``obs_dim``.
    """
    if not isinstance(policy, nn.Sequential):
        raise ValueError(
            f"export_policy exports the plain nn.Sequential policies that MACAW, MetaBC and MultiTaskAWR adapt to; "
            f"got a {type(policy).__name__} (OfflinePEARL's and BOReL's policies carry a task belief: keep "
            "their state_dict from `lit-offmeta predict` instead)"
        )
    layers: list[dict[str, Any]] = []
    for i, layer in enumerate(policy):
        if isinstance(layer, nn.Linear):
            layers.append({"type": "linear", "in_features": layer.in_features, "out_features": layer.out_features,
                           "bias": layer.bias is not None})
        elif type(layer) in _ACTIVATIONS:
            layers.append({"type": _ACTIVATIONS[type(layer)]})
        else:
            raise ValueError(f"export_policy: layer {i} of the policy is a {type(layer).__name__}; only nn.Linear, "
                             f"nn.ReLU and nn.Tanh layers can be described in architecture.json")
    linears = [layer for layer in layers if layer["type"] == "linear"]
    if not linears or layers[0]["type"] != "linear":
        raise ValueError("export_policy: the policy must start with an nn.Linear layer")
    if layers[-1]["type"] != "linear" and not (layers[-1]["type"] == "tanh" and layers[-2]["type"] == "linear"):
        raise ValueError("export_policy: the policy must end with an nn.Linear layer, optionally followed by nn.Tanh")
    if linears[0]["in_features"] != int(obs_dim):
        raise ValueError(f"export_policy: obs_dim={obs_dim} but the policy's first layer takes "
                         f"{linears[0]['in_features']} inputs")
    squashed = layers[-1]["type"] == "tanh"
    hidden = [layer for layer in layers[:-2 if squashed else -1] if layer["type"] != "linear"]
    return {
        "format": "lit-offmeta-policy",
        "format_version": FORMAT_VERSION,
        "network": "mlp",
        "obs_dim": int(obs_dim),
        "action_dim": linears[-1]["out_features"],
        "hidden_sizes": [layer["out_features"] for layer in linears[:-1]],
        "hidden_activations": sorted({layer["type"] for layer in hidden}),
        "layers": layers,
        "output": "tanh_squashed_mean" if squashed else "mean",
        "output_meaning": (
            "the deterministic action: tanh of the Gaussian policy's mean, each entry in [-1, 1]" if squashed
            else "the deterministic action: the Gaussian policy's mean (unbounded)"
        ),
        "input": {"name": "obs", "shape": ["batch", int(obs_dim)], "dtype": "float32"},
        "output_tensor": {"name": "action", "shape": ["batch", linears[-1]["out_features"]], "dtype": "float32"},
        "state_dict_keys": "the nn.Sequential's own: '<layer index>.weight' / '<layer index>.bias'",
    }


def export_policy(
    policy: nn.Module,
    out_dir: str | os.PathLike,
    obs_dim: int,
    formats: Sequence[str] = FORMATS,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``policy`` (an adapted MLP policy) to the new folder ``out_dir``, in each of ``formats``.

    Args:
        policy: the ``nn.Sequential`` an ``adapt`` returned (any device; exported as float32 on the CPU).
        out_dir: a folder that does not exist yet or is empty; it appears complete or not at all.
        obs_dim: the observation size (checked against the policy's first layer).
        formats: any of ``"torchscript"``, ``"onnx"`` (weights.pt and architecture.json are always written).
        metadata: JSON-able facts to keep in ``architecture.json`` under ``"metadata"`` (e.g. the algorithm,
            checkpoint and task the policy was adapted to).

    Returns:
        Kind (``"weights"``, ``"architecture"``, ``"torchscript"``, ``"onnx"``) -> path of each file written.

    Raises:
        ValueError: on an unknown format, a policy that is not a plain MLP (:func:`describe_policy`), or an
            ``out_dir`` that is a file or a folder with files in it.
        ImportError: for ``"onnx"`` without the ``export`` extra installed.
    """
    formats = tuple(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"export_policy: unknown formats {unknown}; choose from {list(FORMATS)}")
    out = check_out_dir(out_dir)
    architecture = describe_policy(policy, obs_dim)
    if metadata:
        architecture["metadata"] = json.loads(json.dumps(dict(metadata)))  # fails now if not JSON-able
    if "onnx" in formats:
        _require_onnx()
    with torch.inference_mode(False):  # the policy may come from Trainer.predict: copy it into normal tensors
        policy = nn.Sequential(*[_clone_layer(layer) for layer in policy]).eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        written = [("weights", FILES["weights"]), ("architecture", FILES["architecture"])]
        torch.save(policy.state_dict(), tmp / FILES["weights"])
        architecture["files"] = {kind: FILES[kind] for kind in ("weights", *formats)}
        (tmp / FILES["architecture"]).write_text(json.dumps(architecture, indent=2) + "\n", encoding="utf-8")
        if "torchscript" in formats:
            torch.jit.script(policy).save(str(tmp / FILES["torchscript"]))
            written.append(("torchscript", FILES["torchscript"]))
        if "onnx" in formats:
            _export_onnx(policy, obs_dim, tmp / FILES["onnx"])
            written.append(("onnx", FILES["onnx"]))
        if out.exists():
            out.rmdir()  # empty (checked above): the rename below replaces it
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {kind: out / name for kind, name in written}


def check_out_dir(out_dir: str | os.PathLike) -> Path:
    """``out_dir`` as a ``Path`` if it does not exist or is an empty folder.

    Raises:
        ValueError: when it is a file or a folder with files in it (an export never mixes with other files).
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} already exists and is not an empty folder; export into a new folder or remove it")
    return out


def load_exported(out_dir: str | os.PathLike) -> nn.Sequential:
    """Rebuild an exported policy from ``architecture.json`` and ``weights.pt`` (CPU, float32, eval mode).

    Raises:
        ValueError: when a file is missing or unreadable, ``architecture.json`` describes an unknown layer or
            format version, or the weights do not fit the described layers.
    """
    folder = Path(out_dir)
    arch_path, weights_path = folder / FILES["architecture"], folder / FILES["weights"]
    for path in (arch_path, weights_path):
        if not path.is_file():
            raise ValueError(f"{path} is missing: {folder} is not a policy exported by export_policy / "
                             "`lit-offmeta export`")
    try:
        architecture = json.loads(arch_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{arch_path} is not valid JSON ({err}); re-export the policy") from err
    if not isinstance(architecture, dict) or architecture.get("format_version") != FORMAT_VERSION:
        got = architecture.get("format_version") if isinstance(architecture, dict) else type(architecture).__name__
        raise ValueError(f"{arch_path}: format_version {got!r}, this lit-offmeta reads {FORMAT_VERSION}")
    layers: list[nn.Module] = []
    for i, spec in enumerate(architecture.get("layers") or []):
        kind = spec.get("type") if isinstance(spec, dict) else None
        if kind == "linear":
            try:
                layers.append(nn.Linear(int(spec["in_features"]), int(spec["out_features"]),
                                        bias=bool(spec.get("bias", True))))
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(f"{arch_path}: layers[{i}] needs integer in_features and out_features") from err
        elif kind in _MODULES:
            layers.append(_MODULES[kind]())
        else:
            raise ValueError(f"{arch_path}: layers[{i}] has type {kind!r}; known: linear, {', '.join(_MODULES)}")
    if not layers:
        raise ValueError(f"{arch_path}: no layers")
    policy = nn.Sequential(*layers)
    try:
        state = torch.load(weights_path, weights_only=True, map_location="cpu")
        policy.load_state_dict(state)
    except Exception as err:  # unpickling refused, truncated file, or keys/shapes that do not fit the layers
        raise ValueError(f"{weights_path} does not load into the layers of {arch_path}: {err}") from err
    return policy.eval()


def _clone_layer(layer: nn.Module) -> nn.Module:
    if isinstance(layer, nn.Linear):
        copy = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
        with torch.no_grad():
            copy.weight.copy_(layer.weight.detach().to("cpu", torch.float32))
            if layer.bias is not None:
                copy.bias.copy_(layer.bias.detach().to("cpu", torch.float32))
        return copy
    return type(layer)()


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ImportError(
            f"ONNX export needs the `export` extra ({err.name or err} is missing): pip install 'lit-offmeta[export]' "
            "(onnx, onnxscript, onnxruntime), or export formats=('torchscript',) only"
        ) from err


def _export_onnx(policy: nn.Sequential, obs_dim: int, path: Path) -> None:
    example = torch.zeros(2, int(obs_dim))  # batch 2: torch.export would specialise a batch of 1
    # The exporter logs a warning per torchvision operator it cannot register when torchvision is absent;
    # an MLP uses none of them.
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        program = _onnx_program(policy, example)
    finally:
        registration.setLevel(level)
    program.save(str(path), external_data=False)  # one self-contained file


def _onnx_program(policy: nn.Sequential, example: torch.Tensor):
    return torch.onnx.export(
        policy,
        (example,),
        dynamo=True,
        input_names=["obs"],
        output_names=["action"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        verbose=False,
    )
