"""OfflineVariBAD (BOReL): the whole pipeline in one LightningModule, run by one ``lit-offmeta fit``.

Stages, in training-update order (Dorfman & Tamar, slides "Our Method"; docs/REFERENCE.md, "Pipeline"):

1. ``vae_steps`` updates of the :class:`~lit_offmeta.algorithms.borel.vae.BeliefVAE` on reward-relabelled
   trials from :class:`~lit_offmeta.datamodules.trajectory.TrialDataModule`;
2. state relabelling: the now frozen encoder turns the RL trials into hyper-state transitions
   (:func:`~lit_offmeta.algorithms.borel.hyperstates.relabel_states`), once, at the first RL update (and again
   after resuming from a checkpoint, deterministically). The RL trials are the logged ones (``rl_data="own"``)
   or reward-relabelled ones whose task is independent of the behaviour (``rl_data="relabelled"``, see
   :meth:`OfflineVariBAD.rl_trials`);
3. ``rl_steps`` updates of DQN (discrete) or SAC (continuous) on hyper-states, ``rl_tasks_per_batch`` tasks x
   ``rl_batch_per_task`` transitions each;
4. evaluation every ``eval_every`` RL updates and at the end: one trial per held-out task with the
   :class:`~lit_offmeta.algorithms.borel.policy.BeliefPolicy`, through the shared rollout code.

Training stops by itself after ``vae_steps + rl_steps`` updates (``trainer.max_steps`` counts optimizer steps,
which differ between the stages, so leave it at -1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import LightningModule
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from lit_offmeta.algorithms.borel.dqn import HyperStateDQN
from lit_offmeta.algorithms.borel.hyperstates import HyperStateTransitions, relabel_states
from lit_offmeta.algorithms.borel.policy import BeliefPolicy, ThompsonPolicy
from lit_offmeta.algorithms.borel.sac import HyperStateSAC
from lit_offmeta.algorithms.borel.vae import BeliefVAE
from lit_offmeta.algorithms.guards import TrainingGuards
from lit_offmeta.data.relabel import TrialArrays, mix_trials
from lit_offmeta.data.search_walks import search_walk_trials
from lit_offmeta.rollout import rollout

_PREDICT_REFUSAL = (
    "OfflineVariBAD adapts online, by its belief during each trial, not to offline data, so `predict` has nothing "
    "to adapt to. Roll its policy out instead: model.adapt() is a BeliefPolicy (reset/act/observe) that "
    "lit_offmeta.callbacks.AdaptationEvaluator evaluates (`lit-offmeta test --config CONFIG --ckpt_path CKPT`)"
)


class OfflineVariBAD(TrainingGuards, LightningModule):
    """Belief VAE, then off-policy RL on hyper-states, from offline multi-episode trials.

    Args:
        family: task family name.
        vae_steps: VAE updates (stage 1).
        rl_steps: RL updates (stage 3).
        vae: keyword arguments of :class:`BeliefVAE` (besides ``family``).
        rl_algorithm: ``"dqn"``, ``"sac"`` or ``"auto"`` (DQN for discrete actions, SAC otherwise).
        rl: keyword arguments of :class:`HyperStateDQN` / :class:`HyperStateSAC` (besides the sizes).
        rl_tasks_per_batch: tasks per RL batch (reference 16, drawn with replacement).
        rl_batch_per_task: transitions per task in an RL batch (reference 256).
        eval_every: evaluate every this many RL updates (0: only at the end).
        eval_episodes: episodes per evaluation trial (``None``: the datamodule's ``episodes_per_trial``).
        hyperstate_cache: if set, the hyper-state transitions are also written there (atomic ``.pt``).
        episode_time: the RL agent also sees the step within the episode, ``t / H`` (see
            :func:`~lit_offmeta.algorithms.borel.hyperstates.relabel_states`); the evaluation policy counts it.
        rl_data: ``"own"``: the RL stage trains on each task's logged trials; ``"relabelled"``: on
            ``rl_trials_per_task`` fresh reward-relabelled trials per task (:meth:`rl_trials`). Only for families
            whose dynamics do not depend on the task.
        rl_trials_per_task: relabelled RL trials per training task (``rl_data="relabelled"``).
        rl_belief_input: how the RL agent sees the belief: ``"latent"``, ``(mu, logvar)``; ``"decoded"``, the
            frozen decoder's goal map at ``mu`` (:meth:`BeliefVAE.goal_map`: ``p(goal at cell)`` for
            ``decoder="cells"``, ``p(goal in bin)`` for ``"goal_arc"``), the same belief in the coordinates in which
            Q-values are simple (which cells or stretches of the arc are still worth searching).
        rl_lr_decay: anneal the RL optimisers' learning rates to 0 over the ``rl_steps`` updates (cosine), so
            the final policy is not one snapshot of a still-moving Q-function (docs/BOREL.md).
        rl_reward_memory: the RL agent also sees the trial's reward memory ``(found, s')``, the successor state
            of the latest rewarded step (:func:`~lit_offmeta.algorithms.borel.hyperstates.reward_memory`), next to
            the belief: an exact record of a goal touched for one step, which the GRU belief can forget. Only for
            sparse families (a positive reward marks the goal).
        vae_lr_decay: anneal the VAE's learning rate to 0 over the ``vae_steps`` updates (cosine), so the frozen
            encoder is a settled one rather than the last step of a noisy optimiser (docs/BOREL.md).
        rl_eval_ema: decays ``d`` of exponential moving averages of the RL agent's weights,
            ``w_ema <- d w_ema + (1 - d) w`` after every RL update (starting from the first update's weights). Every
            evaluation also rolls out each average, logged under ``rollout_ema{d}/``; training is unchanged (the
            averages draw no random numbers), so one run measures the last iterate and its averages side by side.
            For a policy whose evaluations swing between checkpoints (docs/BOREL.md).
        rl_search_walks_per_task: add this many search walks per training task to the RL stage's trials, kept
            whole (:func:`~lit_offmeta.data.search_walks.search_walk_trials`: logged steps chained into searches
            that steer to the goals the trial's rewards have not ruled out). They give the RL stage the beliefs an
            agent holds after its own fruitless search, which logged single-task trials never produce
            (docs/BOREL.md). Low-dimensional goal families only.
        rl_action_samples: SAC only: the evaluated agent acts with the action its critics value most among its mean
            action and this many draws from its policy (:meth:`HyperStateSAC.act`), instead of the mean alone. Where
            the critics value several directions (search either way along an arc), the Gaussian's mean can fall
            between them onto the action they value least (docs/BOREL.md). Training is unchanged, so it can be set
            for a trained checkpoint (``benchmarks/borel_action_samples.py``).
        vae_from: a pipeline checkpoint whose trained VAE this run reuses (loaded with ``weights_only=True``; the
            ``vae`` settings must match): the VAE stage is skipped and RL starts at once, so RL-stage arms can be
            compared on one belief.
        seed: seeds RL batch sampling and evaluation.

    Example:
        >>> model = OfflineVariBAD("grid_navi", vae_steps=10, rl_steps=10,
        ...                        vae={"action_embed_dim": 0, "reward_embed_dim": 8, "hidden_dim": 64})
        >>> type(model.agent).__name__
        'HyperStateDQN'
    """

    def __init__(
        self,
        family: str = "grid_navi",
        vae_steps: int = 2000,
        rl_steps: int = 10000,
        vae: dict[str, Any] | None = None,
        rl_algorithm: Literal["auto", "dqn", "sac"] = "auto",
        rl: dict[str, Any] | None = None,
        rl_tasks_per_batch: int = 16,
        rl_batch_per_task: int = 256,
        eval_every: int = 0,
        eval_episodes: int | None = None,
        hyperstate_cache: str | None = None,
        episode_time: bool = False,
        rl_data: Literal["own", "relabelled"] = "own",
        rl_trials_per_task: int = 400,
        rl_belief_input: Literal["latent", "decoded"] = "latent",
        rl_lr_decay: bool = False,
        vae_lr_decay: bool = False,
        rl_reward_memory: bool = False,
        rl_eval_ema: Sequence[float] = (),
        rl_search_walks_per_task: int = 0,
        rl_action_samples: int = 0,
        vae_from: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if vae_steps < 1 or rl_steps < 0:
            raise ValueError(f"OfflineVariBAD: need vae_steps >= 1 and rl_steps >= 0, got {vae_steps}, {rl_steps}")
        if rl_tasks_per_batch < 1 or rl_batch_per_task < 1:
            raise ValueError("OfflineVariBAD: rl_tasks_per_batch and rl_batch_per_task must be >= 1")
        if rl_data not in ("own", "relabelled"):
            raise ValueError(f"OfflineVariBAD: rl_data must be 'own' or 'relabelled', got {rl_data!r}")
        if rl_search_walks_per_task < 0:
            raise ValueError(f"OfflineVariBAD: rl_search_walks_per_task must be >= 0, got {rl_search_walks_per_task}")
        if rl_data == "relabelled" and rl_trials_per_task < 1:
            raise ValueError(f"OfflineVariBAD: rl_trials_per_task must be >= 1, got {rl_trials_per_task}")
        rl_eval_ema = tuple(float(d) for d in rl_eval_ema)
        if any(not 0.0 < d < 1.0 for d in rl_eval_ema) or len(set(rl_eval_ema)) != len(rl_eval_ema):
            raise ValueError(f"OfflineVariBAD: rl_eval_ema must hold distinct decays in (0, 1), got {rl_eval_ema}")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.vae = BeliefVAE(family, **(vae or {}))
        fam = self.vae.family
        self.family = fam
        if rl_algorithm == "auto":
            rl_algorithm = "dqn" if fam.discrete_actions else "sac"
        if rl_algorithm not in ("dqn", "sac"):
            raise ValueError(f"OfflineVariBAD: rl_algorithm must be 'auto', 'dqn' or 'sac', got {rl_algorithm!r}")
        if rl_action_samples < 0 or (rl_action_samples and fam.discrete_actions):
            raise ValueError(f"OfflineVariBAD: rl_action_samples must be >= 0, and 0 for a discrete family (a DQN acts "
                             f"by the argmax of its Q-values already), got {rl_action_samples}")
        if rl_algorithm == "dqn" and not fam.discrete_actions:
            raise ValueError(
                f"OfflineVariBAD: DQN needs discrete actions; family {fam.name!r} is continuous, use 'sac'"
            )
        if rl_algorithm == "sac" and fam.discrete_actions:
            raise ValueError(
                f"OfflineVariBAD: SAC needs continuous actions; family {fam.name!r} is discrete, use 'dqn'"
            )
        if rl_belief_input not in ("latent", "decoded"):
            raise ValueError(f"OfflineVariBAD: rl_belief_input must be 'latent' or 'decoded', got {rl_belief_input!r}")
        if rl_belief_input == "decoded" and self.vae.decoder_kind not in ("cells", "goal_arc"):
            raise ValueError("OfflineVariBAD: rl_belief_input='decoded' needs the VAE's decoder='cells' (GridNavi) "
                             f"or 'goal_arc' (PointRobot), got {self.vae.decoder_kind!r}")
        if rl_reward_memory and not getattr(fam, "sparse", False):
            raise ValueError(f"OfflineVariBAD: rl_reward_memory needs a sparse-reward family (a positive reward marks "
                             f"the goal); {fam.name!r} is not one")
        belief_dim = 2 * self.vae.encoder.latent_dim if rl_belief_input == "latent" else self.vae.goal_classes
        memory_dim = 1 + fam.obs_dim if rl_reward_memory else 0
        input_dim = fam.obs_dim + belief_dim + memory_dim + int(episode_time)
        agent_cls = HyperStateDQN if rl_algorithm == "dqn" else HyperStateSAC
        self.agent = agent_cls(input_dim, fam.action_dim, **(rl or {}))
        # torch's averaging keeps its count of averaged updates as a buffer, so the averages resume with the run
        self.agent_ema = nn.ModuleList(
            AveragedModel(self.agent, multi_avg_fn=get_ema_multi_avg_fn(d)).requires_grad_(False) for d in rl_eval_ema
        )
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self.register_buffer("logvar_confident", torch.zeros(self.vae.encoder.latent_dim))
        self.hyperstates: HyperStateTransitions | None = None
        self._generator = torch.Generator().manual_seed(seed)
        if vae_from is not None:
            self._load_vae(vae_from)

    def _load_vae(self, path: str) -> None:
        """Reuse the VAE of the pipeline checkpoint ``path`` and start in the RL stage (``vae_from``)."""
        if not Path(path).is_file():
            raise ValueError(f"OfflineVariBAD: vae_from {path!r} is not a file")
        state = torch.load(path, map_location="cpu", weights_only=True).get("state_dict", {})
        vae_state = {k[len("vae."):]: v for k, v in state.items() if k.startswith("vae.")}
        if not vae_state:
            raise ValueError(f"OfflineVariBAD: vae_from {path!r} holds no pipeline VAE (no 'vae.*' weights)")
        try:
            self.vae.load_state_dict(vae_state)
        except RuntimeError as err:
            raise ValueError(f"OfflineVariBAD: vae_from {path!r} does not fit this run's vae settings: {err}") from err
        self.updates.fill_(self.hparams.vae_steps)

    # --- stages ----------------------------------------------------------------------------------------------
    @property
    def in_rl_stage(self) -> bool:
        return int(self.updates) >= self.hparams.vae_steps

    def rl_trials(self, trials: TrialArrays) -> TrialArrays:
        """The trials the RL stage learns from.

        ``rl_data="own"``: the logged trials. In those the behaviour depends on the task (an agent walks to its own
        goal), so the data's Bellman targets at a hyper-state ``(s, b)`` average over the tasks whose agents go
        there, not over the belief ``b``: ``E_data[r | s, b, a] != E_b[r | s, a]``, and the Q-function is
        optimistic about the behaviour's own directions (the MDP ambiguity again, now in the RL stage).
        ``rl_data="relabelled"``: ``rl_trials_per_task`` trials per task from :func:`mix_trials` with
        ``mix_prob=1``: every episode from any trial and episode slot, rewards recomputed for the trial's task. The
        task is then independent of the behaviour, so given ``(s, b)`` it is distributed as the belief says (for a
        calibrated belief). Drawn once with a fixed generator (``seed``), so a resumed run rebuilds the same data.
        ``rl_search_walks_per_task`` adds whole search walks. A walk's choices depend on the rewards it received and
        on its own random numbers, never on the task itself, so these keep the property above.
        """
        rl = trials
        if self.hparams.rl_data == "relabelled":
            targets = np.repeat(np.unique(trials.task_index), self.hparams.rl_trials_per_task)
            rng = np.random.default_rng([self.hparams.seed, 1])
            rl = mix_trials(self.family, trials, targets, rng, mix_prob=1.0)
        walks = self.hparams.get("rl_search_walks_per_task", 0)  # absent from older checkpoints
        if walks:
            targets = np.repeat(np.unique(trials.task_index), walks)
            rng = np.random.default_rng([self.hparams.seed, 2])  # its own stream: the relabelled trials stay as without
            searches, _ = search_walk_trials(self.family, trials, targets, rng)
            rl = TrialArrays.concatenate([rl, searches])
        return rl

    def build_hyperstates(self, trials: TrialArrays) -> HyperStateTransitions:
        """Stage 2: freeze the encoder and relabel the RL trials (:meth:`rl_trials` of ``trials``) into
        hyper-state transitions."""
        self.vae.requires_grad_(False)
        trials = self.rl_trials(trials)
        self.hyperstates = relabel_states(
            self.vae.encoder, trials, episode_time=self.hparams.episode_time, belief_input=self.belief_input(),
            reward_memory_input=self.hparams.rl_reward_memory,
        )
        if self.hparams.rl_belief_input == "latent":
            # The trial's last episode, where the belief has seen the most: its mean log-variance is the "confident"
            # belief that Thompson sampling pairs with its samples (the decoded input does not read logvar).
            last = self.hyperstates.episode == trials.episodes_per_trial - 1
            latent = self.vae.encoder.latent_dim
            logvar = self.hyperstates.obs[:, self.family.obs_dim + latent : self.family.obs_dim + 2 * latent]
            self.logvar_confident.copy_(logvar[last].mean(0))
        if self.hparams.hyperstate_cache:
            self.hyperstates.save(self.hparams.hyperstate_cache)
        return self.hyperstates

    def belief_input(self):
        """The belief's representation in the hyper-state (``None``: ``(mu, logvar)``), see ``rl_belief_input``."""
        if self.hparams.rl_belief_input == "latent":
            return None
        return lambda mu, logvar: self.vae.goal_map(mu)

    def _trials(self) -> TrialArrays:
        dm = getattr(self.trainer, "datamodule", None)
        trials = getattr(dm, "train_trials", None)
        if trials is None:
            raise RuntimeError(
                "OfflineVariBAD needs a TrialDataModule (lit_offmeta.datamodules.trajectory) whose setup() loaded "
                "train_trials, for state relabelling"
            )
        return trials

    # --- Lightning ---------------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        hp = self.hparams
        optimizers = self.optimizers()
        vae_opt, agent_opts = optimizers[0], optimizers[1:]
        if not self.in_rl_stage:
            if hp.vae_lr_decay:
                cosine_lr_decay_([vae_opt], int(self.updates) / hp.vae_steps)
            loss, metrics = self.vae.compute_loss(batch)  # stage 1: VAE on (reward-relabelled) trials
            vae_opt.zero_grad()
            self.manual_backward(loss)
            vae_opt.step()
            self.log("train/vae/loss", loss, prog_bar=True)
            self.log_dict({f"train/vae/{k}": v for k, v in metrics.items()})
        else:
            if self.hyperstates is None:
                self.build_hyperstates(self._trials())  # stage 2: state relabelling, once
            rl_batch = self.hyperstates.sample(hp.rl_tasks_per_batch, hp.rl_batch_per_task, self._generator)
            rl_batch = {k: v.to(self.device) for k, v in rl_batch.items()}
            if hp.rl_lr_decay:
                cosine_lr_decay_(agent_opts, (int(self.updates) - hp.vae_steps) / max(hp.rl_steps, 1))
            metrics = self.agent.update(rl_batch, agent_opts, self.manual_backward)  # stage 3: RL
            for average in self.agent_ema:
                average.update_parameters(self.agent)
            for k, v in metrics.items():  # the RL losses (loss_q, or loss_critic and loss_actor) in the progress bar
                self.log(f"train/rl/{k}", v, prog_bar=k.startswith("loss_"))
        self.updates += 1
        rl_done = int(self.updates) - hp.vae_steps
        finished = rl_done >= hp.rl_steps
        if rl_done > 0 and ((hp.eval_every and rl_done % hp.eval_every == 0) or finished):
            self._log_evaluation()
        if finished:
            self.trainer.should_stop = True

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        agent_opts = self.agent.configure_optimizers()
        agent_opts = agent_opts if isinstance(agent_opts, list) else [agent_opts]
        return [self.vae.configure_optimizers(), *agent_opts]

    # --- evaluation ------------------------------------------------------------------------------------------
    def adapt(self, context: dict[str, torch.Tensor] | None = None, steps: int | None = None) -> BeliefPolicy:
        """The Bayes-adaptive policy. BOReL adapts ONLINE, by its belief, from the start of each trial; offline
        ``context`` and ``steps`` are accepted for the shared evaluator's contract and not used."""
        return self.belief_policy()

    def setup(self, stage: str) -> None:
        if stage == "predict":  # before Lightning asks the TrialDataModule for a predict loader it lacks
            raise ValueError(_PREDICT_REFUSAL)

    def predict_step(self, batch: Any, batch_idx: int = 0) -> None:
        """Refused (:data:`_PREDICT_REFUSAL` says why and what to use)."""
        raise ValueError(_PREDICT_REFUSAL)

    def belief_policy(self, ema: float | None = None, action_samples: int | None = None) -> BeliefPolicy:
        """The Bayes-adaptive policy on the last RL iterate, or on its moving average with decay ``ema`` (one of
        ``rl_eval_ema``); ``action_samples`` overrides ``rl_action_samples``."""
        if action_samples is None:
            action_samples = self.hparams.get("rl_action_samples", 0)  # absent from older checkpoints
        return BeliefPolicy(self.vae.encoder, self.rl_agent(ema), self.family.discrete_actions,
                            horizon=self._horizon(), belief_input=self.belief_input(),
                            reward_memory=self.hparams.rl_reward_memory, action_samples=action_samples,
                            seed=self.hparams.seed)

    def rl_agent(self, ema: float | None = None) -> nn.Module:
        """The RL agent (``ema=None``) or its moving average with decay ``ema``."""
        if ema is None:
            return self.agent
        decays = [float(d) for d in self.hparams.rl_eval_ema]
        if float(ema) not in decays:
            raise ValueError(f"OfflineVariBAD: no moving average with decay {ema}; this model keeps {decays} "
                             "(rl_eval_ema)")
        return self.agent_ema[decays.index(float(ema))].module

    def _horizon(self) -> int | None:
        return self.family.horizon if self.hparams.episode_time else None

    def thompson_policy(self, seed: int = 0) -> ThompsonPolicy:
        """The posterior-sampling comparison policy (one belief sample per episode): a latent sample, or, for an
        agent that reads the decoded goal map (``rl_belief_input: decoded``), a goal cell sampled from the map."""
        decoded = self.hparams.rl_belief_input == "decoded"
        return ThompsonPolicy(
            self.vae.encoder,
            self.agent,
            self.family.discrete_actions,
            self.logvar_confident,
            seed=seed,
            horizon=self._horizon(),
            belief_input=self.belief_input(),
            goal_map=self.vae.goal_map if decoded else None,
            reward_memory=self.hparams.rl_reward_memory,
        )

    def _eval_setup(self) -> tuple[list[dict], int]:
        dm = getattr(self.trainer, "datamodule", None)
        tasks = dm.test_tasks if dm is not None else [self.family.default_tasks()[i] for i in self.family.split().test]
        episodes = self.hparams.eval_episodes or getattr(dm, "episodes_per_trial", 2)
        return tasks, episodes

    def _log_evaluation(self) -> None:
        tasks, episodes = self._eval_setup()
        result = evaluate_trials(self.adapt(), self.family, tasks, episodes, seed=self.hparams.seed)
        self.log_dict(summarise(result, prefix="rollout/"))
        for decay in self.hparams.rl_eval_ema:
            result = evaluate_trials(self.belief_policy(decay), self.family, tasks, episodes, seed=self.hparams.seed)
            self.log_dict(summarise(result, prefix=f"rollout_ema{float(decay):g}/"))
        self.train()

    # --- exact resumption ------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The RL batch sampler's stream (torch's global one, which SAC's action noise uses, is saved by
        # TrainingGuards, and the datamodule saves the next batch's key).
        checkpoint["borel_rng"] = {"rl_sampler": self._generator.get_state()}
        super().on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.hyperstates = None  # rebuilt from the data at the next RL update
        state = checkpoint.get("borel_rng")  # absent in checkpoints written before it was saved
        if state is not None:
            self._generator.set_state(state["rl_sampler"])
        super().on_load_checkpoint(checkpoint)


def cosine_lr_decay_(optimizers, progress: float) -> None:
    """Set every param group's ``lr`` to its initial one times ``(1 + cos(pi * progress)) / 2`` (``progress`` in
    [0, 1]). The initial rate is kept in the group (``initial_lr``, saved with the optimiser's state), so a resumed
    run continues the same schedule."""
    factor = 0.5 * (1.0 + math.cos(math.pi * min(max(float(progress), 0.0), 1.0)))  # a float, never a tensor lr
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor


def evaluate_trials(policy, family, tasks: list[dict], episodes: int, seed: int = 0, record: bool = False):
    """One trial of ``episodes`` episodes per task, from the family's start state (reference bug 6: never a
    random start), through the shared rollout code. Returns its ``RolloutResult``."""
    was = [(m, m.training) for m in (getattr(policy, "encoder", None), getattr(policy, "agent", None)) if m]
    try:
        return rollout(policy, family, tasks, episodes=episodes, seed=seed, record=record)
    finally:
        for m, training in was:
            m.train(training)


def summarise(result, prefix: str = "") -> dict[str, float]:
    """Mean return and success per episode of a trial, and over episodes 2+ (where the task should be known)."""
    out = {}
    returns = np.asarray(result.returns)
    for e in range(returns.shape[1]):
        out[f"{prefix}return_ep{e + 1}"] = float(returns[:, e].mean())
        if result.success is not None:
            out[f"{prefix}success_ep{e + 1}"] = float(result.success[:, e].mean())
    out[f"{prefix}return_trial"] = float(returns.sum(1).mean())
    if result.success is not None and returns.shape[1] > 1:
        out[f"{prefix}success_ep2plus"] = float(result.success[:, 1:].mean())
    return out

