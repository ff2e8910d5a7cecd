"""OfflineVariBAD (BOReL): the whole pipeline in one LightningModule, run by one ``lit-offmeta fit``.

Stages, in training-update order (Dorfman & Tamar, slides "Our Method"; docs/REFERENCE.md, "Pipeline"):

1. ``vae_steps`` updates of the :class:`~lit_offmeta.algorithms.borel.vae.BeliefVAE` on reward-relabelled
   trials from :class:`~lit_offmeta.datamodules.trajectory.TrialDataModule`;
2. state relabelling: the now frozen encoder turns the RL trials into hyper-state transitions
   (:func:`~lit_offmeta.algorithms.borel.hyperstates.relabel_states`), once, at the first RL update (and again
   after resuming from a checkpoint, deterministically). The RL trials are the logged ones (``rl_data="own"``)
   or reward-relabelled ones whose task is independent of the behaviour (``rl_data="relabelled"``, see
   :meth:`OfflineVariBAD.rl_trials`);
3. ``rl_steps`` updates of DQN (discrete) or SAC (continuous) on hyper-states (:class:`RLConfig`);
4. online evaluation by the project's :class:`~lit_offmeta.callbacks.AdaptationEvaluator`, like every other method:
   :meth:`OfflineVariBAD.adapt` is the Bayes-adaptive :class:`~lit_offmeta.algorithms.borel.policy.BeliefPolicy`
   (or Thompson sampling, with the evaluator's ``adapt_kwargs: {policy: thompson}``), whose belief is updated after
   every step of a multi-episode trial; the evaluator logs the mean return and success of each episode of the trial.

``belief_input="oracle"`` is the slides' upper bound: the same RL stage and evaluation, with the belief replaced by
the true task's parameters (:func:`~lit_offmeta.tasks.task_features`) in every hyper-state.

Training stops by itself after ``vae_steps + rl_steps`` updates (``trainer.max_steps`` counts optimizer steps,
which differ between the stages, so leave it at -1).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import LightningModule

from lit_offmeta.algorithms.borel.config import RLConfig, VAEConfig
from lit_offmeta.algorithms.borel.dqn import HyperStateDQN
from lit_offmeta.algorithms.borel.hyperstates import HyperStateTransitions, relabel_states
from lit_offmeta.algorithms.borel.policy import BeliefPolicy, ThompsonPolicy
from lit_offmeta.algorithms.borel.sac import HyperStateSAC
from lit_offmeta.algorithms.borel.vae import BeliefVAE
from lit_offmeta.algorithms.guards import TrainingGuards
from lit_offmeta.data.relabel import TrialArrays, mix_trials
from lit_offmeta.tasks import task_features

_PREDICT_REFUSAL = (
    "OfflineVariBAD adapts online, by its belief during each trial, not to offline data, so `predict` has nothing "
    "to adapt to. Roll its policy out instead: model.adapt() is a BeliefPolicy (reset/act/observe) that "
    "lit_offmeta.callbacks.AdaptationEvaluator evaluates (`lit-offmeta test --config CONFIG --ckpt_path CKPT`)"
)


class OfflineVariBAD(TrainingGuards, LightningModule):
    """Belief VAE, then off-policy RL on hyper-states, from offline multi-episode trials.

    Args:
        family: task family name.
        vae: the belief VAE and its optimiser (:class:`~lit_offmeta.algorithms.borel.config.VAEConfig`).
        rl: the RL agent, its batches and optimiser (:class:`~lit_offmeta.algorithms.borel.config.RLConfig`).
        vae_steps: VAE updates (stage 1).
        rl_steps: RL updates (stage 3).
        rl_data: ``"own"``: the RL stage trains on each task's logged trials; ``"relabelled"``: on
            ``rl_trials_per_task`` fresh reward-relabelled trials per task (:meth:`rl_trials`). Only for families
            whose dynamics do not depend on the task.
        rl_trials_per_task: relabelled RL trials per training task (``rl_data="relabelled"``).
        belief_input: how the RL agent sees the belief: ``"latent"``, ``(mu, logvar)``; ``"decoded"``, the frozen
            decoder's map at ``mu`` (:meth:`BeliefVAE.goal_map`: ``p(goal at cell)`` for ``decoder="cells"``,
            ``p(task in bin)`` for ``"task_bins"``), the same belief in the coordinates in which Q-values are simple
            (which cells or ranges of the task parameter are still worth searching); ``"oracle"``, the true task's
            parameters instead of a belief (an agent told the task: the upper bound BOReL is compared with; the
            VAE is not used, so ``vae_steps: 1`` suffices).
        episode_time: the RL agent also sees the step within the episode, ``t / H`` (see
            :func:`~lit_offmeta.algorithms.borel.hyperstates.relabel_states`); the evaluation policy counts it.
        hyperstate_cache: if set, the hyper-state transitions are also written there (atomic ``.pt``).
        seed: seeds RL batch sampling and the relabelled RL trials.

    Example:
        >>> model = OfflineVariBAD("grid_navi", vae_steps=10, rl_steps=10,
        ...                        vae={"action_embed_dim": 0, "reward_embed_dim": 8, "hidden_dim": 64})
        >>> type(model.agent).__name__
        'HyperStateDQN'
    """

    def __init__(
        self,
        family: str = "grid_navi",
        vae: VAEConfig = VAEConfig(),
        rl: RLConfig = RLConfig(),
        vae_steps: int = 2000,
        rl_steps: int = 10000,
        rl_data: Literal["own", "relabelled"] = "own",
        rl_trials_per_task: int = 400,
        belief_input: Literal["latent", "decoded", "oracle"] = "latent",
        episode_time: bool = False,
        hyperstate_cache: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.vae_config, self.rl_config = VAEConfig.of(vae), RLConfig.of(rl)
        if vae_steps < 1 or rl_steps < 0:
            raise ValueError(f"OfflineVariBAD: need vae_steps >= 1 and rl_steps >= 0, got {vae_steps}, {rl_steps}")
        if rl_data not in ("own", "relabelled"):
            raise ValueError(f"OfflineVariBAD: rl_data must be 'own' or 'relabelled', got {rl_data!r}")
        if rl_data == "relabelled" and rl_trials_per_task < 1:
            raise ValueError(f"OfflineVariBAD: rl_trials_per_task must be >= 1, got {rl_trials_per_task}")
        if belief_input not in ("latent", "decoded", "oracle"):
            raise ValueError(f"OfflineVariBAD: belief_input must be 'latent', 'decoded' or 'oracle', got "
                             f"{belief_input!r}")
        vae, rl = self.vae_config.as_dict(), self.rl_config.as_dict()  # plain data in checkpoints
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.vae = BeliefVAE(family, **self.vae_config.model_kwargs())
        fam = self.vae.family
        self.family = fam
        if belief_input == "decoded" and self.vae.decoder_kind not in ("cells", "task_bins"):
            raise ValueError("OfflineVariBAD: belief_input='decoded' needs the VAE's decoder='cells' (grid families) "
                             f"or 'task_bins', got {self.vae.decoder_kind!r}")
        cfg = self.rl_config
        self.rl_algorithm = cfg.resolve(fam.name, fam.discrete_actions)
        # the oracle's belief input: every task's parameters (a buffer: it moves with the module to the GPU); only
        # for the oracle, since not every family's tasks are numbers (Meta-World's are environment names)
        table = np.stack([task_features(t) for t in fam.default_tasks()]) if belief_input == "oracle" else None
        self.register_buffer("task_table", None if table is None else torch.as_tensor(table), persistent=False)
        if belief_input == "latent":
            belief_dim = 2 * self.vae.encoder.latent_dim
        else:
            belief_dim = self.vae.goal_classes if belief_input == "decoded" else self.task_table.shape[1]
        input_dim = fam.obs_dim + belief_dim + int(episode_time)
        if self.rl_algorithm == "dqn":
            grid_size = int(round(float(fam.observation_space.high.max()))) + 1 if cfg.state_one_hot else 0
            self.agent = HyperStateDQN(input_dim, fam.action_dim, cfg.hidden, cfg.lr, cfg.gamma, cfg.tau,
                                       cfg.double_q, cfg.cql_alpha, grid_size)
        else:
            self.agent = HyperStateSAC(input_dim, fam.action_dim, cfg.hidden, actor_lr=cfg.actor_lr or cfg.lr,
                                       critic_lr=cfg.lr, gamma=cfg.gamma, tau=cfg.tau,
                                       alpha=0.2 if cfg.alpha is None else cfg.alpha, cql_alpha=cfg.cql_alpha,
                                       cql_samples=cfg.cql_samples)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self.register_buffer("logvar_confident", torch.zeros(self.vae.encoder.latent_dim))
        self.hyperstates: HyperStateTransitions | None = None
        self._generator = torch.Generator().manual_seed(seed)

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
        """
        rl = trials
        if self.hparams.rl_data == "relabelled":
            targets = np.repeat(np.unique(trials.task_index), self.hparams.rl_trials_per_task)
            rng = np.random.default_rng([self.hparams.seed, 1])
            rl = mix_trials(self.family, trials, targets, rng, mix_prob=1.0)
        return rl

    def build_hyperstates(self, trials: TrialArrays) -> HyperStateTransitions:
        """Stage 2: freeze the encoder and relabel the RL trials (:meth:`rl_trials` of ``trials``) into
        hyper-state transitions."""
        self.vae.requires_grad_(False)
        trials = self.rl_trials(trials)
        self.hyperstates = relabel_states(
            self.vae.encoder, trials, episode_time=self.hparams.episode_time, belief_input=self.belief_input()
        )
        if self.hparams.belief_input == "oracle":  # each row's belief columns: its own task's parameters
            columns = slice(self.family.obs_dim, self.family.obs_dim + self.task_table.shape[1])
            features = self.task_table.cpu()[self.hyperstates.task_index]
            self.hyperstates.obs[:, columns] = features
            self.hyperstates.next_obs[:, columns] = features
        if self.hparams.belief_input == "latent":
            # The trial's last episode, where the belief has seen the most: its mean log-variance is the "confident"
            # belief that Thompson sampling pairs with its samples (the decoded input does not read logvar).
            last = self.hyperstates.episode == trials.episodes_per_trial - 1
            latent = self.vae.encoder.latent_dim
            logvar = self.hyperstates.obs[:, self.family.obs_dim + latent : self.family.obs_dim + 2 * latent]
            self.logvar_confident.copy_(logvar[last].mean(0))
        if self.hparams.hyperstate_cache:
            self.hyperstates.save(self.hparams.hyperstate_cache)
        return self.hyperstates

    def belief_input(self, task: torch.Tensor | None = None):
        """The belief's representation in the hyper-state (``None``: ``(mu, logvar)``), see ``belief_input``. For the
        oracle: ``task`` ``[F]`` in every row (``None``: zeros, which :meth:`build_hyperstates` fills per row)."""
        if self.hparams.belief_input == "latent":
            return None
        if self.hparams.belief_input == "oracle":
            width = self.task_table.shape[1]
            return lambda mu, logvar: (mu.new_zeros(*mu.shape[:-1], width) if task is None
                                       else task.to(mu).expand(*mu.shape[:-1], width))
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
            if self.vae_config.lr_decay:
                cosine_lr_decay_([vae_opt], int(self.updates) / hp.vae_steps)
            loss, metrics = self.vae.compute_loss(batch, subsample=True)  # stage 1: VAE on (reward-relabelled) trials
            vae_opt.zero_grad()
            self.manual_backward(loss)
            vae_opt.step()
            self.log("train/vae/loss", loss, prog_bar=True)
            self.log_dict({f"train/vae/{k}": v for k, v in metrics.items()})
        else:
            if self.hyperstates is None:
                self.build_hyperstates(self._trials())  # stage 2: state relabelling, once
            cfg = self.rl_config
            rl_batch = self.hyperstates.sample(cfg.tasks_per_batch, cfg.batch_per_task, self._generator)
            rl_batch = {k: v.to(self.device) for k, v in rl_batch.items()}
            if cfg.lr_decay:
                cosine_lr_decay_(agent_opts, (int(self.updates) - hp.vae_steps) / max(hp.rl_steps, 1))
            metrics = self.agent.update(rl_batch, agent_opts, self.manual_backward)  # stage 3: RL
            for k, v in metrics.items():  # the RL losses (loss_q, or loss_critic and loss_actor) in the progress bar
                self.log(f"train/rl/{k}", v, prog_bar=k.startswith("loss_"))
        self.updates += 1
        if int(self.updates) >= hp.vae_steps + hp.rl_steps:
            self.trainer.should_stop = True

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """The belief VAE's negative ELBO on one evaluated task's logged trials (``TrialDataModule.test_dataloader``):
        how well the belief explains held-out tasks. The online evaluation is the ``AdaptationEvaluator``'s."""
        loss, metrics = self.vae.compute_loss(batch)
        n = int(batch["task_index"].numel())
        self.log("test/vae/loss", loss, batch_size=n)
        self.log_dict({f"test/vae/{k}": v for k, v in metrics.items()}, batch_size=n)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        agent_opts = self.agent.configure_optimizers()
        agent_opts = agent_opts if isinstance(agent_opts, list) else [agent_opts]
        return [self.vae.configure_optimizers(), *agent_opts]

    # --- evaluation ------------------------------------------------------------------------------------------
    def adapt(self, context: dict[str, torch.Tensor] | None = None, steps: int | None = None,
              policy: Literal["belief", "thompson"] = "belief") -> BeliefPolicy:
        """The evaluated policy: ``"belief"``, the Bayes-adaptive one; ``"thompson"``, posterior sampling with the
        same encoder and agent (the slides' comparison; ``AdaptationEvaluator(adapt_kwargs={"policy": "thompson"})``).
        BOReL adapts ONLINE, by its belief, from the start of each trial; offline ``context`` and ``steps`` are
        accepted for the shared evaluator's contract and not used. The oracle (``belief_input="oracle"``) reads the
        task's parameters from ``context["task_features"]`` (``TrialDataModule.adaptation_batch`` gives them)."""
        if policy not in ("belief", "thompson"):
            raise ValueError(f"OfflineVariBAD.adapt: policy must be 'belief' or 'thompson', got {policy!r}")
        if self.hparams.belief_input == "oracle":
            if policy == "thompson":
                raise ValueError("OfflineVariBAD.adapt: the oracle is told the task; it has no belief to sample from "
                                 "(policy='thompson' needs belief_input 'latent' or 'decoded')")
            features = (context or {}).get("task_features")
            if features is None or features.numel() != self.task_table.shape[1]:
                raise ValueError(f"OfflineVariBAD.adapt: the oracle needs context['task_features'], the task's "
                                 f"{self.task_table.shape[1]} parameters (TrialDataModule.adaptation_batch gives "
                                 f"them), got {None if features is None else tuple(features.shape)}")
            return self.belief_policy(features.reshape(-1))
        return self.thompson_policy(self.hparams.seed) if policy == "thompson" else self.belief_policy()

    def setup(self, stage: str) -> None:
        if stage == "predict":  # before Lightning asks the TrialDataModule for a predict loader it lacks
            raise ValueError(_PREDICT_REFUSAL)

    def predict_step(self, batch: Any, batch_idx: int = 0) -> None:
        """Refused (:data:`_PREDICT_REFUSAL` says why and what to use)."""
        raise ValueError(_PREDICT_REFUSAL)

    def belief_policy(self, task: torch.Tensor | None = None) -> BeliefPolicy:
        """The Bayes-adaptive policy: the agent on ``(s, belief)``, the belief updated after every step (the oracle:
        on ``(s, task)``, ``task`` the true task's parameters)."""
        return BeliefPolicy(self.vae.encoder, self.agent, self.family.discrete_actions, horizon=self._horizon(),
                            belief_input=self.belief_input(task))

    def _horizon(self) -> int | None:
        return self.family.horizon if self.hparams.episode_time else None

    def thompson_policy(self, seed: int = 0) -> ThompsonPolicy:
        """The posterior-sampling comparison policy (one belief sample per episode): a latent sample, or, for an
        agent that reads the decoded map (``belief_input: decoded``), a goal class sampled from the map."""
        decoded = self.hparams.belief_input == "decoded"
        return ThompsonPolicy(
            self.vae.encoder,
            self.agent,
            self.family.discrete_actions,
            self.logvar_confident,
            seed=seed,
            horizon=self._horizon(),
            belief_input=self.belief_input(),
            goal_map=self.vae.goal_map if decoded else None,
        )

    # --- exact resumption ------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The RL batch sampler's stream (torch's global one, which SAC's action noise uses, is saved by
        # TrainingGuards, and the datamodule saves the next batch's key).
        checkpoint["borel_rng"] = {"rl_sampler": self._generator.get_state()}
        super().on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.hyperstates = None  # rebuilt from the data at the next RL update
        self._generator.set_state(checkpoint["borel_rng"]["rl_sampler"])
        super().on_load_checkpoint(checkpoint)


def cosine_lr_decay_(optimizers, progress: float) -> None:
    """Set every param group's ``lr`` to its initial one times ``(1 + cos(pi * progress)) / 2`` (``progress`` in
    [0, 1]). The initial rate is kept in the group (``initial_lr``, saved with the optimiser's state), so a resumed
    run continues the same schedule."""
    factor = 0.5 * (1.0 + math.cos(math.pi * min(max(float(progress), 0.0), 1.0)))  # a float, never a tensor lr
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor
