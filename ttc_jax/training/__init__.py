"""Training with optax: packed batches, a resumable loop with orbax checkpoints, language-model
and value-head losses, MC-rollout PRM labels and revision data."""
