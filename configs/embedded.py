"""The embedded world: its training pipeline (``ttc-train --config configs/embedded.py``) and
its compute-optimal study (``ttc-study --config configs/embedded.py``, the ``study`` section).

``--config configs/embedded.py:quick`` is the same pipeline at toy sizes (a minute on two
CPU cores; the tests run it). ``:harder`` (and ``:harder_quick``) is the same pipeline on
task version 5, the harder world, whose larger policy is meant not to be perfect
(docs/embedded.md); ``:harder_v4``, ``:harder_v3`` and ``:harder_v2`` its earlier trials, on
versions 4, 3 and 2.
Any field can be overridden on the command line, e.g. ``--config.workdir=/tmp/run
--config.stages=evaluate``.

Where PAPER.md says a value is UNSTATED, the choice is commented here.
"""

import ml_collections


def model(hidden_size, num_layers, num_heads, intermediate_size):
    return ml_collections.ConfigDict(
        dict(
            hidden_size=hidden_size,
            num_layers=num_layers,
            num_heads=num_heads,
            intermediate_size=intermediate_size,
        )
    )


def train(**settings):
    """Optimiser settings (`ttc_jax.training.loop.TrainConfig` fields; ``epochs`` instead of
    ``steps`` for fine-tuning on a fixed set of examples)."""
    defaults = dict(
        learning_rate=3e-3,
        warmup_steps=50,
        weight_decay=0.01,
        b1=0.9,
        b2=0.95,
        grad_clip=1.0,
        log_every=50,
        checkpoint_every=100,
    )
    return ml_collections.ConfigDict({**defaults, **settings})


def get_config(mode: str = "full") -> ml_collections.ConfigDict:
    from ttc_jax.embedded import SAMPLING_TEMPERATURE

    modes = ("full", "quick", "harder", "harder_quick", "harder_v4", "harder_v3", "harder_v2")
    if mode not in modes:
        raise ValueError(f"mode must be one of {modes}, got {mode!r}")
    config = ml_collections.ConfigDict()
    config.mode = mode
    config.workdir = "embedded_run"
    # The task (ttc_jax.embedded.task.TASK_VERSIONS): 1, the world first shipped; 2 to 5,
    # the harder world's, with compound steps. Recorded in every model's training.json, so
    # the shipped models are asked their own task.
    config.task = dict(version=1)
    # Where `export` writes the five checkpoints and `evaluate` reads them (and writes
    # evaluation.json): a relative path is under workdir, an absolute one as given. A run
    # writes nothing outside these two; `python -m ttc_jax.embedded.ship <workdir>/export`
    # then replaces the checkpoints shipped inside the package.
    config.output_dir = "export"
    # Comma-separated stages to run (in pipeline order); "" = all of them.
    config.stages = ""
    config.seed = 0
    # Room for a revision prompt with four earlier level-5 attempts and its answer.
    config.max_position_embeddings = 1024
    # Tokens a sampled solution may take (a level-5 reference takes about 90).
    config.max_new_tokens = 128

    # Reference solutions, one stream for both policies (same batches, same tokens).
    config.sft = dict(rows=16, row_length=256, level_weights=[1, 1, 1, 1, 1])
    config.policy = dict(
        model=model(hidden_size=64, num_layers=2, num_heads=8, intermediate_size=256),
        # 4e-3: at 3e-3 the same model and data ended at loss 0.153 and a level-1 pass@1
        # of 0.19; at 4e-3, 0.065 (docs/embedded.md).
        train=train(steps=1600, learning_rate=4e-3),
    )
    # About 14x the policy's parameters (14.5x; 15.1x without the embeddings).
    config.policy_14x = dict(
        model=model(hidden_size=176, num_layers=4, num_heads=8, intermediate_size=704),
        train=train(steps=1600, learning_rate=1.5e-3),
    )

    # Question counts below are sized so that the whole pipeline fits in two hours on a
    # 2-core CPU, the policies' training taking about 40 minutes of it.
    # MC labels: 16 samples a question, 16 rollouts a step (the paper's).
    config.prm_labels = dict(
        questions_per_level=100,
        samples_per_question=16,
        rollouts_per_step=16,
        chunk_questions=50,
        prompts_per_call=128,
        # Label each reference solution too (quick mode: a toy policy never answers right).
        include_reference=False,
        # UNSTATED: the temperature of the sampled solutions (rollouts use the world's);
        # the world's, so the PRM learns on samples like those it judges in the study.
        sample_temperature=SAMPLING_TEMPERATURE,
    )
    # The paper: AdamW lr 3e-5 at PaLM 2 scale, early stop on 10% held-out questions; its PRM
    # is the policy's size. Here value heads fine-tuned with their backbone (the policy with
    # 2 extra layers and 800 more steps on references; the 14x policy) reached AUROC
    # 0.57-0.79 by level, under the policy's own log-prob, and did not react to a planted
    # wrong digit. So the PRM starts from the 14x policy, which knows the task, and its head
    # also reads that model's log-likelihood of the steps (docs/embedded.md).
    config.prm = dict(
        # The trained model it starts from: "policy" or "policy_14x".
        backbone="policy_14x",
        # "likelihood": the backbone as it is and a head on its hidden state and its
        # log-likelihood of the steps (a ttc_likelihood PRM), fitted on the MC labels;
        # "value": the backbone fine-tuned with a value head (a ttc_value PRM; the settings
        # below from base_train on).
        head="likelihood",
        # The likelihood head's fit (`ttc_jax.training.head_fit.HeadFitConfig`); the penalty
        # holds back the hidden state's weights only. 10, chosen on the labels' validation
        # questions from 1e-4, 1e-2, 0.1, 1 and 10 by the final step's AUROC on levels 2-5
        # (0.934, 0.932, 0.931, 0.942, 0.943): the hidden state lowers held-out cross-entropy
        # (it knows how hard a question is) but not the ranking of answers (docs/embedded.md).
        head_fit=dict(
            learning_rate=0.01, steps=3000, weight_decay=10.0, eval_every=50, patience=10
        ),
        validation_fraction=0.1,
        rows=32,
        row_length=256,
        # Before the value head, the backbone trains this much longer on fresh reference
        # solutions (steps=0: not at all), so the PRM knows the task better than the
        # policy it judges (for a "policy" backbone: 800 steps at 1e-3).
        base_train=train(steps=0),
        # Fresh decoder layers on top of the backbone's (for a "policy" backbone: 2).
        extra_layers=0,
        # Weight of a next-token loss on fresh reference solutions beside the value loss
        # (0: none), so the PRM keeps what it knows of the task while it learns to judge.
        reference_weight=0.0,
        train=train(epochs=4, learning_rate=5e-4, eval_every=100, patience=3),
    )
    # Revision data: 64 samples a question at a higher temperature than the world's (the
    # paper's; its value is UNSTATED), at most 16 examples a question so that easy questions
    # do not crowd out the rest (UNSTATED).
    config.revision_data = dict(
        questions_per_level=100,
        samples_per_question=64,
        temperature=SAMPLING_TEMPERATURE + 0.2,
        max_examples_per_question=16,
        chunk_questions=50,
        prompts_per_call=32,
        # The reference solution as one more correct answer (quick mode, as above).
        include_reference=False,
        # What the context attempts are drawn from: "incorrect" samples (the paper) or "any";
        # what the model learns to write: a correct "sample" (the paper), the "reference"
        # max_examples_per_question times, "keep": the last attempt when it is right and
        # the reference otherwise, or "copy": the last attempt right or wrong, a test of
        # whether the model can copy at all (ttc_jax.training.revisions; docs/embedded.md),
        # or "mend": the last attempt rewritten as the right solution in its wording (a
        # right one unchanged, a wrong one mended from its first slip on).
        context="any",
        target="mend",
    )
    config.revision = dict(
        # Fresh decoder layers on top of the policy's (0: the policy's size, as the paper's
        # revision model; more cost more per revision than a policy sample costs).
        extra_layers=0,
        # The rotary base (0: the policy's, 1e4); docs/embedded.md has a trial at 1e8.
        rope_theta=0.0,
        # The fraction of examples whose target is their last attempt (target "keep") shown
        # without the question, whose loss only reading the attempt can lower (0: none;
        # docs/embedded.md has the trials).
        hidden_question_fraction=0.0,
        # Warm-up phases before the training below (0 epochs: none), each of this many epochs
        # at this learning rate: copying attempts with the question hidden, then every last
        # attempt as the target with the question shown (revision_stages.warmup_phases;
        # needs revision_data.target "keep", "copy" or "mend"; docs/embedded.md has the
        # trials). ``phases`` names those to run ("copy" teaches copying wrong attempts too).
        warmup=dict(epochs=2.0, learning_rate=3e-3, phases=("hidden",)),
        validation_fraction=0.1,
        # 768: the longest example possible (a question, four attempts and the answer, each
        # at most max_new_tokens) fits; shorter rows than 1024 halve the attention's cost.
        rows=10,
        row_length=768,
        # At the warm-up's rate, as in the trial that chose this recipe (docs/embedded.md).
        train=train(epochs=2, learning_rate=3e-3, eval_every=100, patience=3),
        # Rounds after that training: the model's own revision chains (``chains`` of
        # ``attempts`` on each revision-data question, at the world's temperature), every
        # attempt mended as the target of the prompt after it, trained on for ``epochs`` at
        # ``learning_rate`` (0 rounds: none; docs/embedded.md has the trials). A row that
        # mends a wrong attempt appears ``mend_repeats`` times.
        on_policy=dict(
            rounds=1,
            chains=4,
            attempts=5,
            prompts_per_call=128,
            epochs=2.0,
            learning_rate=1e-3,
            mend_repeats=1,
        ),
    )
    # Revision chains on training questions, for the revision verifier (UNSTATED sizes).
    config.verifier_data = dict(
        questions_per_level=40,
        chains=4,
        chain_length=5,
        chunk_questions=50,
        prompts_per_call=128,
    )
    config.verifier = dict(
        # The policy (not the 14x PRM): its long prompts would make a 14x-sized model slow
        # to train here. It is deepened by fresh layers as a policy-built PRM would be.
        backbone="policy",
        extra_layers=2,
        validation_fraction=0.1,
        reference_weight=0.0,
        # As the revision model's: its examples are revision prompts and an attempt.
        rows=10,
        row_length=768,
        # One epoch: its long revision prompts make a step about 5 s on two cores.
        train=train(epochs=1, learning_rate=1e-3, eval_every=50, patience=3),
    )
    # Fresh test questions (the test split), the same for every model.
    config.evaluate = dict(
        levels=[1, 2, 3, 4, 5],
        questions_per_level=60,
        samples=16,
        revision_chains=4,
        revision_length=5,
        seed=2024,
    )

    config.study = study(config.max_new_tokens)

    if mode == "harder_v2":
        _make_harder_v2(config)
    elif mode in ("harder_v3", "harder_v4"):
        _make_harder(config, version=int(mode[-1]))
    elif mode.startswith("harder"):
        _make_harder(config, version=5)
    if mode.endswith("quick"):
        _make_quick(config)
        if mode == "harder_quick":
            config.workdir = "embedded_v5_quick"
            config.study.workdir = "embedded_v5_quick/study"
    return config


def _make_harder(config: ml_collections.ConfigDict, version: int) -> None:
    """Task ``version`` 5 (`ttc_jax.embedded.task.HARDER_LEVEL_SPECS_5`, ``:harder``), 4
    (``:harder_v4``) or 3 (``:harder_v3``), everything else as the full run's; levels 1 and
    2, which hold no compound step, drawn twice as often in the reference stream, so that
    both policies learn the simple steps as fast as in version 1 (in version 3 a batch holds
    122 simple steps against version 1's 164 and version 2's 68)."""
    config.task.version = version
    config.workdir = f"embedded_v{version}"
    if version >= 5:
        # Twice version 1's steps for the small policy: at 1,600 it had learned almost
        # nothing (loss 0.224, level-1 pass@1 0.03); at 3,200 it met its goal (loss 0.063,
        # pass@1 0.90) on the same trial (docs/embedded.md).
        config.policy.train.steps = 3200
    config.sft.level_weights = [2, 2, 1, 1, 1]


def _make_harder_v2(config: ml_collections.ConfigDict) -> None:
    """The harder world's first trial: task version 2 (compound steps from level 2 on),
    level 1 drawn twice as often. Stopped at step 1,000 of the 14x policy: it had not learnt
    level 1 (docs/embedded.md)."""
    config.task.version = 2
    config.workdir = "embedded_v2"
    config.sft.level_weights = [2, 1, 1, 1, 1]


def study(max_new_tokens: int) -> ml_collections.ConfigDict:
    """The study on the shipped models (`ttc_jax.study.study_config` with this world's prompt,
    delimiter and temperature): 5 levels x 10 fresh test questions, budgets 1, 4 and 16, 32
    difficulty samples; 10 minutes on a 2-core CPU, 7 once its compiled programs are kept
    (docs/benchmarks.md). The paper's grid costs far more:
    ``--config.study.budgets='(1,2,4,8,16,32,64)' --config.study.data.per_level=100``."""
    from ttc_jax.embedded import VERIFIER_KINDS, set_search_settings
    from ttc_jax.study import study_config

    config = study_config()
    config.workdir = "embedded_study"
    config.models.prm_kind = VERIFIER_KINDS["prm"]
    config.models.revision_verifier_kind = VERIFIER_KINDS["revision_verifier"]
    config.data.per_level = 10
    config.budgets = (1, 4, 16)
    set_search_settings(config.search, max_new_tokens)
    config.difficulty.samples = 32
    # 800 sample rows a call: the 50 questions search in one call at budget 16 (and 4), and
    # difficulty in two calls of 25, so every call of a budget has one shape and compiles
    # once (8 min 36 s against 9 min 59 s at 512 rows; 12.6 GB at peak against 7.5 GB).
    config.max_rows = 800
    return config


def _make_quick(config: ml_collections.ConfigDict) -> None:
    """Toy sizes: every stage runs and writes what the next reads, in about a minute."""
    config.workdir = "embedded_quick"
    config.sft.rows = 4
    tiny = model(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    for name in ("policy", "policy_14x"):
        config[name].model = tiny
        config[name].train = train(steps=6, warmup_steps=2, log_every=2, checkpoint_every=2)
    config.policy_14x.model = model(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
    quick_fit = train(epochs=1, warmup_steps=1, log_every=1, checkpoint_every=2, eval_every=2)
    config.prm_labels.update(
        questions_per_level=2,
        samples_per_question=2,
        rollouts_per_step=2,
        chunk_questions=5,
        include_reference=True,
    )
    config.revision_data.update(
        questions_per_level=2, samples_per_question=4, chunk_questions=5, include_reference=True
    )
    config.verifier_data.update(questions_per_level=2, chains=1, chain_length=2, chunk_questions=5)
    config.revision.warmup.epochs = 1.0
    config.revision.on_policy.update(chains=1, attempts=2, epochs=1.0)
    config.prm.head_fit.update(steps=20, eval_every=5)
    for name in ("prm", "revision", "verifier"):
        config[name].rows = 4
        config[name].train = quick_fit
        config[name].validation_fraction = 0.5
    config.max_new_tokens = 24
    config.evaluate.update(
        levels=[1, 2], questions_per_level=2, samples=2, revision_chains=1, revision_length=2
    )
    config.study.workdir = "embedded_quick/study"
