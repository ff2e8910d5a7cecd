"""Diagnostics of offline VariBAD: is the belief or the RL stage the weak link? GridNavi's checks live in
``grid``, sparse PointRobot's in ``point``, what both use in ``common``, the command line in ``cli``
(``python -m lit_offmeta.algorithms.borel.diagnostics <check>``).

The checks (``docs/BOREL.md`` reports what they measured):

``belief``: the decoded ``p(goal at cell)`` of a trained model's belief after hand-made paths (the prior, a failed
sweep of the bottom row, a failed sweep of the bottom row and the right column, a walk onto a goal). A
calibrated belief gives ~1/21 everywhere at the prior and ~0 on searched cells.

``exact-rl``: the SAME DQN as the pipeline trained on hyper-states whose belief part is the EXACT posterior over
the 21 goals (uniform over the goal cells not yet searched; one-hot once the goal paid), computed from each
logged trial. It bounds what the RL stage can reach on this data with a perfect belief.

``belief-error``: the total variation between a trained model's decoded belief and the exact posterior, on the
trials its RL stage trains on (``--ckpt``), or a ``train-vae`` VAE's on the config's RL trials (``--vae``), or along
the checkpoint's own policy's trials (``--ckpt --on-policy``).

``exact-eval``: a checkpoint's agent evaluated with its learned belief and with the exact posterior in its place
(agents that see a normalised goal map): how much the belief at evaluation costs.

``belief-probe``: a supervised readout (MLP) fitted to the exact posterior from a VAE's belief or its encoder's
hidden state: how much of the posterior the representation holds at all.

``coverage``: how far the behaviour data searches: the distinct cells each logged episode (and trial) enters,
against the ~10 cells the Bayes-adaptive policy enters in its first episode; with ``--family point_robot_sparse``
how many degrees of the goal arc each logged episode sweeps.

``goal-found`` (sparse PointRobot): a checkpoint's trials on the held-out goals, split by whether its belief at
the start of episode 2 locates the goal (the decoded reward's peak on the goal arc lies within the goal radius):
episode 2's success with and without a located goal, and how many rewarded steps episode 1 had. With ``--paths``
another checkpoint's policy drives the trials: does this belief keep what that policy's episode 1 found?

``arc-nll`` (sparse PointRobot, ``goal_arc`` decoder): how close a belief is to the exact posterior. On the
PointRobot config's VAE batches, the negative log-probability of the trial's goal bin summed over the trial's
beliefs (the VAE's loss, at the belief mean) next to the exact posterior's (uniform over the training goals whose
rewards agree with every step so far, :func:`exact_task_posterior`) and the uniform one's.

``second-search`` (sparse PointRobot): how often the RL stage's trials pay in episode 2 after a first episode that
paid nothing (overall and for the goals near the arc's ends): the examples of a second search after a miss.

``belief-support`` (sparse PointRobot, ``goal_arc`` decoder): do the RL stage's trials hold the beliefs the agent
meets? For the belief each held-out trial starts episode 2 with (split by whether episode 1 found the goal), the
total-variation distance to the nearest belief the RL trials start episode 2 with, how many lie within ``--radius``,
and how often their episode 2 paid: what SAC has to learn from at that belief.

``mean-action`` (any SAC agent): along the agent's own trials on the held-out tasks, the critics' value of the
actor's mean action against the best of ``--samples`` draws from its policy, per episode: how often a draw is worth
``--threshold`` more, and how often the agent is parked (mean action below 0.1) where one is. A Gaussian's mean
between two good actions is what ``rl_action_samples`` corrects.

``touches`` (sparse PointRobot): how often a logged path, relabelled for another training task, passes through
that task's goal disc for a few steps and moves on: the evidence a belief needs to keep a goal touched once.

``train-vae``: stage 1 of the pipeline alone (the GridNavi config's BeliefVAE with ``--vae`` JSON overrides,
Adam, the datamodule's batches), a few times faster than ``lit-offmeta fit`` on a loaded machine; writes the VAE's
settings and ``state_dict``.

    python -m lit_offmeta.algorithms.borel.diagnostics train-vae --data data --mix-prob 1.0 --steps 6000 --out vae.pt \
        [--vae '{"kl_weight": 0.01}'] [--batch '{"tasks_per_batch": 16}']
    python -m lit_offmeta.algorithms.borel.diagnostics belief-error --vae vae.pt --data data
    python -m lit_offmeta.algorithms.borel.diagnostics belief-probe --vae vae.pt --data data [--hidden]
    python -m lit_offmeta.algorithms.borel.diagnostics belief --vae vae.pt     # or --ckpt <run>/checkpoints/<x>.ckpt
    python -m lit_offmeta.algorithms.borel.diagnostics exact-rl --data data --steps 4000 [--rl-data relabelled]
    python -m lit_offmeta.algorithms.borel.diagnostics belief-error --ckpt <run>/checkpoints/<x>.ckpt --data data \
        [--on-policy]
    python -m lit_offmeta.algorithms.borel.diagnostics exact-eval --ckpt <run>/checkpoints/<x>.ckpt
    python -m lit_offmeta.algorithms.borel.diagnostics coverage --data data [--family point_robot_sparse]
    python -m lit_offmeta.algorithms.borel.diagnostics goal-found --ckpt <run>/checkpoints/<x>.ckpt   # PointRobot
    python -m lit_offmeta.algorithms.borel.diagnostics arc-nll --ckpt <run>/checkpoints/<x>.ckpt --data data
    python -m lit_offmeta.algorithms.borel.diagnostics second-search --ckpt <run>/checkpoints/<x>.ckpt --data data
    python -m lit_offmeta.algorithms.borel.diagnostics belief-support --ckpt <run>/checkpoints/<x>.ckpt --data data
    python -m lit_offmeta.algorithms.borel.diagnostics mean-action --ckpt <run>/checkpoints/<x>.ckpt --action-samples 0
"""
