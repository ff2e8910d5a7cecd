"""BeliefVAE: the VariBAD belief model trained on offline trials (BOReL step 2).

For a trial of ``L`` transitions the encoder yields beliefs ``q_0 .. q_L`` (``q_0`` the prior). EVERY belief
decodes the rewards of ALL transitions of the trial, past and future, and each belief is pulled towards the
previous one:

.. math::
    \\mathcal{L} = \\sum_{t=0}^{L} \\Big[ \\sum_{j=0}^{L-1} -\\log p(r_{j+1} \\mid z_t, x_j)
        + \\beta\\, \\mathrm{KL}\\big(q_t \\,\\|\\, q_{t-1}\\big) \\Big],
    \\quad z_t \\sim q_t,\\ q_{-1} = \\mathcal{N}(0, I),\\ \\beta = 0.05

summed over ELBO and reconstruction terms and averaged over trials, as the reference does
(Zintgraf et al. 2020, arXiv:1910.08348, Eq. (10) with the KL to the previous posterior; BOReL defaults in
docs/REFERENCE.md, "VAE"). No state decoder: the families here differ in rewards only.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Literal

import numpy as np
import torch
from lightning.pytorch import LightningModule
from torch.nn import functional as F

from lit_offmeta.algorithms.guards import TrainingGuards
from lit_offmeta.nn.belief import BeliefEncoder, CellRewardDecoder, MLPRewardDecoder
from lit_offmeta.tasks import get_family
from lit_offmeta.tasks.base import TaskFamily

DecoderKind = Literal["auto", "cells", "next_obs", "transition", "task_bins"]


def task_parameters(tasks: list[dict]) -> np.ndarray:
    """The one number each task is known by, ``[T]`` float64: a task's single scalar (Cheetah-Vel's velocity, Ant-Dir's
    angle, Cheetah-Dir's direction), or the angle ``atan2(y, x)`` of its single 2-D goal (PointRobot and Ant's goals
    on a semicircle). The ``"task_bins"`` decoder's targets are bins of it.

    Raises:
        ValueError: a task with several fields or a field that is neither a number nor a 2-D point (Walker-Params'
            body parameters, Meta-World's placements), or two distinct tasks with the same parameter (a grid's
            cells on one ray): bins of this number could not tell them apart.
    """
    values = []
    for task in tasks:
        fields = [np.asarray(v, dtype=np.float64) for v in task.values()] if isinstance(task, dict) else []
        if len(fields) != 1 or fields[0].shape not in ((), (2,)):
            raise ValueError(f"task_bins: a task must be one number or one 2-D goal, got {task!r}; use another "
                             "decoder for this family")
        value = fields[0]
        # math.atan2 (the C library's, one value at a time), not numpy's vectorised arctan2, whose AVX-512 and AVX2
        # paths can differ in the last bit
        values.append(float(value) if value.shape == () else math.atan2(value[1], value[0]))
    values = np.asarray(values, dtype=np.float64)
    distinct_tasks = len({tuple(np.ravel(np.asarray(list(t.values())[0], np.float64))) for t in tasks})
    if len(np.unique(values)) < distinct_tasks:
        raise ValueError("task_bins: two different tasks share one parameter value (e.g. grid cells on one ray from "
                         "the origin), so bins of it cannot tell them apart; use decoder='cells' for a grid")
    return values


def task_bin(values: np.ndarray, low: float, high: float, bins: int) -> np.ndarray:
    """The bin ``[N]`` of each value among ``bins`` equal bins of ``[low, high]`` (in float64; values past the ends fall
    in the end bins). The one binning of the ``"task_bins"`` decoder: its targets and every reading of a decoded
    belief go through it, so the two never disagree on a label."""
    scaled = (np.asarray(values, dtype=np.float64) - low) / max(high - low, np.finfo(np.float64).tiny) * bins
    return np.clip(np.floor(scaled), 0, bins - 1).astype(np.int64)


# --- pure losses ---------------------------------------------------------------------------------------------
def gaussian_kl(
    mu_q: torch.Tensor, logvar_q: torch.Tensor, mu_p: torch.Tensor, logvar_p: torch.Tensor
) -> torch.Tensor:
    """``KL(N(mu_q, e^{logvar_q}) || N(mu_p, e^{logvar_p}))`` of diagonal Gaussians, summed over the last axis.

    .. math:: \\tfrac12 \\sum_d \\big[\\log\\sigma_p^2 - \\log\\sigma_q^2
        + (\\sigma_q^2 + (\\mu_q - \\mu_p)^2) / \\sigma_p^2 - 1\\big]
    """
    return 0.5 * (
        logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).pow(2)) / logvar_p.exp() - 1.0
    ).sum(-1)


def kl_to_previous(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(q_t || q_{t-1})`` for ``t = 0..L`` with ``q_{-1} = N(0, I)``.

    Args:
        mu, logvar: ``[L + 1, B, D]`` beliefs (index 0 the prior).

    Returns:
        ``[L + 1, B]``.
    """
    mu_prev = torch.cat([torch.zeros_like(mu[:1]), mu[:-1]])
    logvar_prev = torch.cat([torch.zeros_like(logvar[:1]), logvar[:-1]])
    return gaussian_kl(mu, logvar, mu_prev, logvar_prev)


def elbo_loss(
    reward_nll: torch.Tensor,
    kl: torch.Tensor,
    valid: torch.Tensor,
    kl_weight: float = 0.05,
    target_valid: torch.Tensor | None = None,
    belief_index: torch.Tensor | None = None,
    recon_scale: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Negative ELBO over all beliefs, each decoding all transitions (past and future).

    Args:
        reward_nll: ``[L + 1, L, B]``: ``-log p(r_{j+1} | z_t, x_j)`` for belief ``t`` and transition ``j``
            (or ``[L + 1, K, B]`` for ``K`` other reconstruction targets, see ``target_valid``).
        kl: ``[L + 1, B]``: ``KL(q_t || q_{t-1})``.
        valid: ``[L, B]`` bool, transitions that exist (not padding). Belief ``t >= 1`` exists where
            transition ``t - 1`` does; the prior always does.
        kl_weight: ``beta`` (reference 0.05).
        target_valid: ``[K, B]``, which of the ``K`` targets exist (``None``: the transitions, ``valid``).
        belief_index: ``[E]``, the beliefs whose reconstruction terms ``reward_nll`` holds (then ``[E, K, B]``);
            ``None``: all ``L + 1``. The KL term always covers every belief.
        recon_scale: factor on the reconstruction term (``n / k`` per subsampled axis makes a uniform subsample
            an unbiased estimate of the full sum).

    Returns:
        ``(loss, metrics)``: the scalar loss (summed over ELBO and reconstruction terms, mean over trials) and
        detached ``reward_nll`` and ``kl`` of the same reduction.
    """
    valid = valid.float()
    belief_valid = torch.cat([torch.ones_like(valid[:1]), valid])  # [L + 1, B]
    targets = valid if target_valid is None else target_valid.float()
    decoding = belief_valid if belief_index is None else belief_valid[belief_index]
    pair_valid = decoding[:, None, :] * targets[None, :, :]  # [E, K, B]
    batch = valid.shape[1]
    recon = recon_scale * (reward_nll * pair_valid).sum() / batch
    kl_term = (kl * belief_valid).sum() / batch
    # kl_weight 0: leave the KL out of the loss (with no pull on it, logvar can run to -inf and the KL to nan)
    loss = recon + kl_weight * kl_term if kl_weight > 0 else recon
    return loss, {"reward_nll": recon.detach(), "kl": kl_term.detach()}


# --- the module ----------------------------------------------------------------------------------------------
class BeliefVAE(TrainingGuards, LightningModule):
    """GRU belief encoder + reward decoder, trained on (reward-relabelled) offline trials.

    Args:
        family: task family name; sets input sizes, and ``decoder="auto"``.
        decoder: ``"cells"`` (Bernoulli multi-head over grid cells, latent only; GridNavi),
            ``"next_obs"`` (MSE on ``(z, s_{t+1})``; PointRobot), ``"transition"`` (MSE on
            ``(z, s_{t+1}, s_t, a_t)``; MuJoCo), ``"task_bins"`` (one categorical over ``task_bins`` equal bins of
            the task's parameter, :func:`task_parameters`: PointRobot's goal angle, Cheetah-Vel's velocity, Ant-Dir's
            direction; latent only; each belief decodes the bin of the trial's task, ``-log p(bin | z_t)``: VariBAD's
            task decoder with the task discretised, the continuous analogue of ``cell_targets="goal"``) or
            ``"auto"`` (by family).
        state_embed_dim, action_embed_dim, reward_embed_dim: encoder embeddings (0 drops an input).
        hidden_dim: GRU size.
        latent_dim: task latent size.
        decoder_hidden: reward decoder hidden sizes.
        kl_weight: ``beta`` of the ELBO.
        lr: Adam learning rate.
        reward_threshold: ``"cells"`` decoder: a reward above it means "goal here".
        cell_targets: ``"cells"`` decoder: what each belief decodes. ``"visited"`` (reference): the rewards of the
            trial's transitions, i.e. the cells the trial entered, each as often as it was entered. ``"all"``:
            the reward the trial's task pays in EVERY cell, once per cell (the task's reward function, known for
            offline and relabelled trials). Both have the exact posterior as the decoder's optimum when the path
            is independent of the task, but with ``"visited"`` a late belief learns about the cells not yet
            searched only from the few transitions left in its trial (docs/BOREL.md).
            ``"both"``: the sum of the two reconstruction terms. ``"goal"``: the decoder's cell logits as ONE
            categorical over cells (softmax; a task pays in exactly one cell), each belief decoding the trial's goal
            cell, ``-log p(goal | z_t)`` (VariBAD's task decoder with task ids); :meth:`goal_probabilities` is then
            the softmax, a map that sums to 1.
        state_one_hot: grid families: the encoder embeds the one-hot of the cell entered, not its coordinates
            (``BeliefEncoder(grid_size=...)``).
        task_bins: ``"task_bins"`` decoder: number of bins (20 over PointRobot's arc: 9 degrees, under the goal
            radius).
        aggregator: the encoder's summary of the history, ``"gru"`` (reference), ``"max"`` (running max of
            per-transition features) or ``"sum"`` (running sum of per-transition evidence), see
            :class:`~lit_offmeta.nn.belief.BeliefEncoder`.
        elbo_subsample: in training, the ELBO's reconstruction terms of only this many beliefs per batch, drawn
            uniformly without replacement and scaled to an unbiased estimate (VariBAD's ``vae_subsample_elbos``);
            ``None``: all ``L + 1``. Decoding costs ``(L + 1) x L`` per trial, 160k terms for a 2-episode
            Cheetah-Vel trial, which this and ``decode_subsample`` cut.
        decode_subsample: in training, each belief decodes only this many of the trial's transitions, drawn the
            same way (VariBAD's ``vae_subsample_decodes``); ``None``: all. Needs ``cell_targets="visited"`` and a
            decoder of transitions (not ``"task_bins"``).

    Example:
        >>> vae = BeliefVAE("grid_navi", state_embed_dim=32, action_embed_dim=0, reward_embed_dim=8,
        ...                 hidden_dim=64)
        >>> vae.decoder_kind
        'cells'
    """

    def __init__(
        self,
        family: str = "grid_navi",
        decoder: DecoderKind = "auto",
        state_embed_dim: int = 32,
        action_embed_dim: int = 16,
        reward_embed_dim: int = 16,
        hidden_dim: int = 128,
        latent_dim: int = 5,
        decoder_hidden: tuple[int, ...] = (32, 32),
        kl_weight: float = 0.05,
        lr: float = 3e-4,
        reward_threshold: float = 0.0,
        cell_targets: Literal["visited", "all", "both", "goal"] = "visited",
        state_one_hot: bool = False,
        aggregator: Literal["gru", "max", "sum"] = "gru",
        task_bins: int = 20,
        elbo_subsample: int | None = None,
        decode_subsample: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        # Own copy of the settings: under LightningCLI a module built inside another one receives the outer
        # module's hparams from save_hyperparameters(), so nested modules must not read self.hparams.
        self.cfg = SimpleNamespace(
            family=family,
            state_embed_dim=state_embed_dim,
            action_embed_dim=action_embed_dim,
            reward_embed_dim=reward_embed_dim,
            hidden_dim=hidden_dim,
            latent_dim=latent_dim,
            decoder_hidden=decoder_hidden,
            kl_weight=kl_weight,
            lr=lr,
            reward_threshold=reward_threshold,
            cell_targets=cell_targets,
            state_one_hot=state_one_hot,
            aggregator=aggregator,
            task_bins=task_bins,
            elbo_subsample=elbo_subsample,
            decode_subsample=decode_subsample,
        )
        fam: TaskFamily = get_family(family)
        self.family = fam
        if decoder == "auto":
            decoder = "cells" if fam.name == "grid_navi" else "next_obs" if "point_robot" in fam.name else "transition"
        if decoder not in ("cells", "next_obs", "transition", "task_bins"):
            raise ValueError(
                f"BeliefVAE: decoder must be 'auto', 'cells', 'next_obs', 'transition' or 'task_bins', got {decoder!r}"
            )
        if decoder == "task_bins" and task_bins < 2:
            raise ValueError(f"BeliefVAE: task_bins must be >= 2, got {task_bins}")
        if decoder == "cells" and fam.name != "grid_navi":
            raise ValueError(f"BeliefVAE: decoder='cells' needs a grid family (grid_navi), got {fam.name!r}")
        if cell_targets not in ("visited", "all", "both", "goal"):
            raise ValueError(
                f"BeliefVAE: cell_targets must be 'visited', 'all', 'both' or 'goal', got {cell_targets!r}"
            )
        if cell_targets != "visited" and decoder != "cells":
            raise ValueError(f"BeliefVAE: cell_targets={cell_targets!r} needs decoder='cells', got {decoder!r}")
        if kl_weight < 0:
            raise ValueError(f"BeliefVAE: kl_weight must be >= 0, got {kl_weight}")
        for name, value in (("elbo_subsample", elbo_subsample), ("decode_subsample", decode_subsample)):
            if value is not None and value < 1:
                raise ValueError(f"BeliefVAE: {name} must be >= 1 or null (no subsampling), got {value}")
        if decode_subsample is not None and (cell_targets != "visited" or decoder == "task_bins"):
            raise ValueError(
                f"BeliefVAE: decode_subsample subsamples the trial's transitions, which decoder={decoder!r} with "
                f"cell_targets={cell_targets!r} does not decode; leave it null"
            )
        if state_one_hot and fam.name != "grid_navi":
            raise ValueError(f"BeliefVAE: state_one_hot needs a grid family (grid_navi), got {fam.name!r}")
        self.decoder_kind = decoder
        self.obs_dim, self.action_dim = fam.obs_dim, fam.action_dim
        grid_size = int(round(float(fam.observation_space.high.max()))) + 1 if fam.name == "grid_navi" else 0
        self.encoder = BeliefEncoder(
            self.obs_dim,
            self.action_dim,
            fam.discrete_actions,
            state_embed_dim,
            action_embed_dim,
            reward_embed_dim,
            hidden_dim,
            latent_dim,
            grid_size if state_one_hot else 0,
            aggregator,
        )
        if decoder == "cells":
            self.grid_size = grid_size
            self.decoder = CellRewardDecoder(latent_dim, self.grid_size**2, decoder_hidden)
            # [tasks, cells]: does task i pay more than reward_threshold in cell c (target of cell_targets="all")
            cells = np.stack(np.divmod(np.arange(self.grid_size**2), self.grid_size), -1).astype(np.float32)
            paid = [fam.reward(task, cells, np.zeros(len(cells), np.int64), cells) > reward_threshold
                    for task in fam.default_tasks()]
            self.register_buffer("cell_goal", torch.as_tensor(np.stack(paid), dtype=torch.float32), persistent=False)
            if cell_targets == "goal" and not bool((self.cell_goal.sum(-1) == 1).all()):
                raise ValueError("BeliefVAE: cell_targets='goal' needs every task to pay in exactly one cell")
            # [tasks]: the class each task's goal decodes to (cell_targets="goal")
            self.register_buffer("goal_class", self.cell_goal.argmax(-1), persistent=False)
        elif decoder == "task_bins":
            self.decoder = CellRewardDecoder(latent_dim, task_bins, decoder_hidden)  # one logit per bin
            values = task_parameters(fam.default_tasks())
            self.bin_range = (float(values.min()), float(values.max()))
            classes = task_bin(values, *self.bin_range, task_bins)
            self.register_buffer("goal_class", torch.as_tensor(classes), persistent=False)
        else:
            act_in = 0 if fam.discrete_actions else self.action_dim
            in_dim = self.obs_dim if decoder == "next_obs" else 2 * self.obs_dim + act_in
            self.decoder = MLPRewardDecoder(latent_dim, in_dim, decoder_hidden)

    # --- decoding --------------------------------------------------------------------------------------------
    def cell_index(self, obs: torch.Tensor) -> torch.Tensor:
        """Grid cell index ``x * G + y`` of observations ``[..., 2]`` (``"cells"`` decoder only)."""
        cell = obs[..., :2].round().long()
        return cell[..., 0] * self.grid_size + cell[..., 1]

    def reward_nll(self, z: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``-log p(r_{j+1} | z_t, x_j)`` for every latent ``z [L+1, B, D]`` and transition -> ``[L+1, L, B]``."""
        rewards = batch["rewards"]  # [L, B]
        if self.decoder_kind == "cells":
            logits = self.decoder(z)  # [L + 1, B, C]
            cells = self.cell_index(batch["next_obs"])  # [L, B]
            index = cells.T.unsqueeze(0).expand(z.shape[0], -1, -1)  # [L + 1, B, L]
            logits_tj = logits.gather(-1, index).permute(0, 2, 1)  # [L + 1, L, B]
            target = (rewards > self.cfg.reward_threshold).float().expand_as(logits_tj)
            return F.binary_cross_entropy_with_logits(logits_tj, target, reduction="none")
        x = batch["next_obs"]
        if self.decoder_kind == "transition":
            parts = [x, batch["obs"]]
            if not self.family.discrete_actions:
                parts.append(batch["actions"])
            x = torch.cat(parts, dim=-1)
        predicted = self.decoder(z[:, None], x[None])  # [L + 1, L, B]
        return (predicted - rewards[None]).pow(2)

    def compute_loss(
        self, batch: dict[str, torch.Tensor], subsample: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The negative ELBO of a batch of trials (time-major, see :func:`trials_to_batch`); ``subsample``: draw
        ``elbo_subsample`` beliefs and ``decode_subsample`` transitions for it (training)."""
        valid = batch["valid"]
        mu, logvar = self.encoder(batch["actions"], batch["next_obs"], batch["rewards"], valid)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()  # reparameterised sample of every q_t
        kl = kl_to_previous(mu, logvar)
        beliefs = _draw(z.shape[0], self.cfg.elbo_subsample, z.device) if subsample else None
        scale = 1.0
        if beliefs is not None:
            z, scale = z[beliefs], z.shape[0] / len(beliefs)
        kwargs = {"belief_index": beliefs, "recon_scale": scale}
        if self.cfg.cell_targets == "goal" or self.decoder_kind == "task_bins":
            nll = self.goal_nll(z, batch["task_index"])[:, None]  # [E, 1, B]: one target per belief
            return elbo_loss(nll, kl, valid, self.cfg.kl_weight, target_valid=torch.ones_like(nll[0]), **kwargs)
        if self.cfg.cell_targets == "visited":
            steps = _draw(valid.shape[0], self.cfg.decode_subsample, z.device) if subsample else None
            if steps is None:
                return elbo_loss(self.reward_nll(z, batch), kl, valid, self.cfg.kl_weight, **kwargs)
            part = {k: v[steps] for k, v in batch.items() if k in ("obs", "actions", "rewards", "next_obs")}
            kwargs["recon_scale"] = scale * valid.shape[0] / len(steps)
            return elbo_loss(self.reward_nll(z, part), kl, valid, self.cfg.kl_weight, target_valid=valid[steps],
                             **kwargs)
        nll = self.all_cells_nll(z, batch["task_index"])  # [E, C, B]
        target_valid = torch.ones_like(nll[0])
        if self.cfg.cell_targets == "both":  # the visited transitions' terms, then the C cells' terms
            nll = torch.cat([self.reward_nll(z, batch), nll], dim=1)
            target_valid = torch.cat([valid.float(), target_valid])
        return elbo_loss(nll, kl, valid, self.cfg.kl_weight, target_valid=target_valid, **kwargs)

    def all_cells_nll(self, z: torch.Tensor, task_index: torch.Tensor) -> torch.Tensor:
        """``cell_targets="all"``: ``-log p(goal at c = task's | z_t)`` for every latent ``z [L+1, B, D]`` and cell
        ``c`` -> ``[L+1, C, B]``; ``task_index [B]`` indexes ``family.default_tasks()``."""
        logits = self.decoder(z)  # [L + 1, B, C]
        target = self.cell_goal[task_index.long()].expand_as(logits)
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none").permute(0, 2, 1)

    def goal_nll(self, z: torch.Tensor, task_index: torch.Tensor) -> torch.Tensor:
        """``cell_targets="goal"`` or ``decoder="task_bins"``: ``-log softmax(logits(z_t))[class of the task]`` (its
        goal cell, or the bin of its parameter) -> ``[L+1, B]``."""
        logits = self.decoder(z)  # [L + 1, B, C]
        goal = self.goal_class[task_index.long()]  # [B]
        return -torch.log_softmax(logits, -1).gather(-1, goal[None, :, None].expand(len(z), -1, 1))[..., 0]

    @property
    def goal_classes(self) -> int:
        """Size of :meth:`goal_map`: the grid's cells or the task parameter's bins."""
        if self.decoder_kind == "cells":
            return self.grid_size**2
        if self.decoder_kind == "task_bins":
            return self.cfg.task_bins
        raise ValueError(f"goal_classes needs decoder='cells' or 'task_bins', got {self.decoder_kind!r}")

    @torch.no_grad()
    def goal_map(self, mu: torch.Tensor) -> torch.Tensor:
        """The decoded belief over tasks at the belief mean, flat, ``[..., goal_classes]``: :meth:`goal_probabilities`
        per cell (``"cells"``), or ``p(task in bin k)`` per bin (``"task_bins"``, sums to 1)."""
        if self.decoder_kind == "task_bins":
            return torch.softmax(self.decoder(mu), -1)
        return self.goal_probabilities(mu).flatten(-2)

    @torch.no_grad()
    def goal_probabilities(self, mu: torch.Tensor) -> torch.Tensor:
        """``"cells"`` decoder: ``p(goal at cell)`` at the belief mean, ``[..., G, G]`` indexed ``[x, y]`` (independent
        Bernoullis, or one categorical for ``cell_targets="goal"``)."""
        if self.decoder_kind != "cells":
            raise ValueError("goal_probabilities needs decoder='cells'")
        logits = self.decoder(mu)
        probs = torch.softmax(logits, -1) if self.cfg.cell_targets == "goal" else torch.sigmoid(logits)
        return probs.reshape(*probs.shape[:-1], self.grid_size, self.grid_size)

    # --- Lightning ---------------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, metrics = self.compute_loss(batch, subsample=True)
        self.log("train/vae/loss", loss, prog_bar=True)
        self.log_dict({f"train/vae/{k}": v for k, v in metrics.items()})
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.cfg.lr)


def _draw(n: int, k: int | None, device: torch.device) -> torch.Tensor | None:
    """``k`` of ``range(n)`` uniformly without replacement, sorted (global torch RNG); ``None`` when ``k`` is ``None``
    or covers them all."""
    if k is None or k >= n:
        return None
    return torch.randperm(n, device=device)[:k].sort().values


def posterior_entropy(logvar: torch.Tensor) -> torch.Tensor:
    """Differential entropy of diagonal Gaussians ``[..., D] -> [...]``: ``0.5 * sum(log(2 pi e) + logvar)``."""
    return 0.5 * (np.log(2 * np.pi * np.e) + logvar).sum(-1)
