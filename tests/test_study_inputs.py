"""What a new user runs into with the study and `solve`: a work directory never mixes rows of
different settings, `solve` never charges a sample twice, the report shows the table that is
deployed, findings say when a study is too small to measure them, hand-written tables and bad
settings fail with one clear line before any model loads, and a study of one label at one
budget writes its report."""

import copy
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ttc_jax
from tests import search_helpers, study_helpers
from ttc_jax import solver
from ttc_jax.search import run, strategy_config
from ttc_jax.study import Study, run_study
from ttc_jax.study.config import check_study_config
from ttc_jax.study.findings import caveats, findings
from ttc_jax.study.provenance import StudyMismatchError
from ttc_jax.study.specs import labels_of, sequential_lengths

ROOT = Path(__file__).resolve().parents[1]
PROBLEMS = study_helpers.PROBLEMS[:10]


def tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


@pytest.fixture(scope="module")
def models():
    return study_helpers.tiny_models()


@pytest.fixture(scope="module")
def one_label_study(models, tmp_path_factory):
    """Majority voting alone at budget 1, no revisions: the smallest study a config allows."""
    workdir = tmp_path_factory.mktemp("one_label")
    config = study_helpers.tiny_config(str(workdir))
    config.strategies = ("majority",)
    config.budgets = (1,)
    config.revision_ratios = False
    few = copy.copy(models)
    few.revision = few.revision_verifier = None
    summary = Study(config, few, PROBLEMS, progress=False).run()
    return workdir, summary


# -- 1. a work directory holds rows of one setting -------------------------------------------


def test_a_rerun_with_other_settings_is_refused_naming_each_field(models, tmp_path):
    config = study_helpers.tiny_config(str(tmp_path))
    Study(config, models, PROBLEMS, progress=False)  # records the settings; computes nothing
    changed = copy.deepcopy(config)
    changed.search.temperature = 0.3
    changed.difficulty.samples = 16
    with pytest.raises(StudyMismatchError) as error:
        Study(changed, models, PROBLEMS, progress=False)
    message = str(error.value)
    assert "search.temperature: 0.8 -> 0.3" in message
    assert "difficulty.samples: 8 -> 16" in message
    other_policy = copy.copy(models)
    other_policy.policy = search_helpers.tiny_policy(seed=11)
    with pytest.raises(StudyMismatchError, match=r"models\.policy: another model"):
        Study(config, other_policy, PROBLEMS, progress=False)
    # Budgets, strategies and questions extend the study; a model may be left out.
    extended = copy.deepcopy(config)
    extended.budgets = (1, 2, 4, 8)
    extended.strategies = ("majority", "beam_m4")
    extended.data.per_level = 40
    fewer = copy.copy(models)
    fewer.policy_14x = None
    Study(extended, fewer, study_helpers.PROBLEMS, progress=False)
    record = json.loads((tmp_path / "study.json").read_text())
    assert record["models"]["policy_14x"] is not None  # still the recorded one


def test_rows_without_a_record_are_not_adopted(models, tmp_path):
    (tmp_path / "results.jsonl").write_text("")
    with pytest.raises(StudyMismatchError, match=r"no study\.json"):
        Study(study_helpers.tiny_config(str(tmp_path)), models, PROBLEMS, progress=False)


def unloadable_models(config, root: Path) -> None:
    """Model paths that exist but hold no checkpoint: loading them fails, so an error other
    than a load error shows the check ran first."""
    for field in ("policy", "prm", "policy_14x", "revision", "revision_verifier"):
        folder = root / field
        folder.mkdir(parents=True, exist_ok=True)
        config.models[field] = str(folder)


def test_run_study_refuses_mixed_settings_before_any_model_loads(tmp_path):
    config = study_helpers.tiny_config(str(tmp_path / "study"))
    unloadable_models(config, tmp_path / "models")
    with pytest.raises(FileNotFoundError, match=r"without config\.json"):  # the load is reached
        run_study(config, progress=False, echo=lambda _: None)
    config.search.temperature = 1.5
    with pytest.raises(StudyMismatchError, match=r"search\.temperature"):
        run_study(config, progress=False, echo=lambda _: None)


# -- 2. solve charges each sample once ----------------------------------------------------------


def tiny_prm(policy):
    small = policy.config.replace(hidden_size=16, intermediate_size=16, num_heads=2, num_kv_heads=1)
    return ttc_jax.PRM.random(small, "ttc_value", policy.tokenizer, seed=3)


SEARCH = {"max_new_tokens": 16, "max_step_tokens": 8, "max_rounds": 3}


def table_of(per_bin: dict, samples: int = 4, edges=(0.8, 0.6, 0.4, 0.2)) -> dict:
    return {
        "difficulty": {"samples": samples, "edges": list(edges)},
        "budgets": sorted({int(b) for row in per_bin.values() for b in row}),
        "table": per_bin,
        "search": dict(SEARCH),
    }


def test_solve_draws_fresh_samples_for_the_strategy_and_charges_each_once(monkeypatch):
    policy = search_helpers.tiny_policy()
    prm = tiny_prm(policy)
    calls = []

    def recording_run(*args, **kwargs):
        results = run(*args, **kwargs)
        calls.append(results[0])
        return results

    monkeypatch.setattr(solver, "run", recording_run)
    table = table_of({str(b): {"4": "best_of_n_weighted"} for b in range(1, 6)})
    result = ttc_jax.solve(search_helpers.QUESTIONS[1], 4, policy, prm, table, seed=0)
    estimate, strategy = calls
    assert [c.text for c in estimate.candidates] != [c.text for c in strategy.candidates]
    assert result.estimate_accounting.generations == 4
    assert result.strategy_accounting.generations == 4
    assert result.accounting.generations == 8
    assert result.accounting.policy_decode_tokens == (
        estimate.accounting.policy_decode_tokens + strategy.accounting.policy_decode_tokens
    )


# -- 5. hand-written tables and requests --------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t["table"].pop("2"), "lacks bin\\(s\\) 2"),
        (lambda t: t["table"].update({"6": {"1": "majority"}}), "has bin\\(s\\) 6 beyond"),
        (lambda t: t["table"].update({"3": {}}), "bin 3 has no budgets"),
        (lambda t: t["table"]["1"].update({"four": "majority"}), "budget 'four'"),
        (lambda t: t["table"]["1"].update({"2": "beam_m4"}), "beam_m4 at budget 2.*not fit"),
        (lambda t: t["table"]["1"].update({"4": "beam"}), "unknown strategy label"),
        (lambda t: t["difficulty"].update({"edges": [0.2, 0.4]}), "edges must not increase"),
        (lambda t: t["search"].update({"temperature": -1}), "temperature must be"),
    ],
)
def test_a_bad_table_is_one_clear_error(edit, message):
    table = table_of({str(b): {"1": "majority", "4": "beam_msqrt"} for b in range(1, 6)})
    edit(table)
    with pytest.raises(ValueError, match=message):
        solver.check_table(table)


def test_solve_checks_its_request_and_says_how_it_rounds_the_budget():
    policy = search_helpers.tiny_policy()
    prm = tiny_prm(policy)
    table = table_of({str(b): {"1": "majority", "4": "majority"} for b in range(1, 6)}, samples=2)
    for question in ("", "   ", None):
        with pytest.raises(ValueError, match="non-empty string"):
            ttc_jax.solve(question, 4, policy, prm, table)
    with pytest.raises(
        ValueError, match=r"budget must be an integer >= 1 \(generations\), got '4'"
    ):
        ttc_jax.solve("What is 1 + 1?", "4", policy, prm, table)
    result = ttc_jax.solve(search_helpers.QUESTIONS[0], 7, policy, prm, table)
    assert (result.requested_budget, result.budget) == (7, 4)


def test_ttc_solve_reports_a_bad_table_in_one_line(tmp_path):
    table = table_of({str(b): {"1": "majority"} for b in range(1, 5)})  # no bin 5
    path = tmp_path / "table.json"
    path.write_text(json.dumps(table))
    done = subprocess.run(
        [tool("ttc-solve"), "--config=configs/embedded.py", "--question=What is 2 + 2?",
         f"--config.study.strategy_table_file={path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "ttc-solve: the strategy table's 4 edges make bins 1, 2, 3, 4, 5; its table lacks bin(s) 5"
    ]


def test_ttc_solve_refuses_revisions_without_a_revision_model_before_loading(tmp_path):
    unloadable = tmp_path / "empty"
    unloadable.mkdir()
    done = subprocess.run(
        [tool("ttc-solve"), "--config=configs/palm2_math.py", "--question=What is 2 + 2?",
         "--revisions", "--config.search.prompt.num_shots=0",
         f"--config.models.policy={unloadable}", f"--config.models.prm={unloadable}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "ttc-solve: revisions need models.revision and models.revision_verifier"
    )


# -- 3, 4, 6. the report ------------------------------------------------------------------------


def table_rows(report: str, heading: str) -> dict[str, list[str]]:
    """bin -> cells of the Markdown table under ``heading``."""
    section = report.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    split = ([c.strip() for c in row.strip("|").split("|")] for row in rows[1:])
    return {cells[0]: cells[1:] for cells in split}


def test_the_report_shows_the_deployed_table_beside_the_oracle_one(one_label_study):
    workdir, _ = one_label_study
    report = (workdir / "report.md").read_text()
    deployed = json.loads((workdir / "strategy_table.json").read_text())
    shown = table_rows(report, "## Deployed strategy table (strategy_table.json")
    assert shown == {b: [row["1"]] for b, row in deployed["table"].items()}
    assert "## Compute-optimal table on oracle bins" in report


def test_a_study_of_one_label_at_one_budget_writes_its_report(one_label_study):
    workdir, summary = one_label_study
    assert summary["labels"] == ["majority"] and summary["budgets"] == [1]
    assert (workdir / "accuracy_vs_budget.png").is_file()
    assert not (workdir / "revision_ratios.png").exists()
    report = (workdir / "report.md").read_text()
    assert "Not drawn, nothing to show: revision_ratios.png" in report
    rows = [json.loads(line) for line in (workdir / "results.jsonl").read_text().splitlines()]
    assert {r["strategy"] for r in rows} == {"majority", "larger_greedy"}


def test_findings_that_a_study_cannot_support_say_so(one_label_study):
    _, summary = one_label_study
    lines = findings(summary)
    beam = [line for line in lines if line.startswith("Beam search (M = sqrt N)")]
    assert beam and "not measurable here (needs beam_msqrt and best_of_n_weighted" in beam[0]
    degenerate = copy.deepcopy(summary)
    for per in degenerate["accuracy"].values():
        for budget in per:
            per[budget] = 0.0
    assert findings(degenerate) == [
        "No finding is measurable here: every strategy's accuracy is 0.0% at every budget "
        "(10 questions)."
    ]
    one_budget = copy.deepcopy(summary)
    one_budget["budgets"] = [1, 4]
    one_budget["accuracy"]["best_of_n_weighted"] = {"1": 0.5, "4": 0.5}
    for key in ("beam_msqrt@4 - best_of_n_weighted@4", "beam_msqrt@1 - best_of_n_weighted@1"):
        one_budget["effects"][key] = {"effect": 0.1, "interval": [0.05, 0.15]}
    beam = [line for line in findings(one_budget) if line.startswith("Beam search (M = sqrt N)")]
    assert beam[0].endswith("this study has only B=4).")
    assert all(" none of " not in line for line in findings(one_budget))


def test_the_exchange_is_measured_only_near_its_matched_budget(one_label_study):
    _, summary = one_label_study
    points = {p["ratio"]: p for p in summary["exchange"]["points"]}
    # The tiny larger policy is about 4x; at R = 22 the matched compute is 4.4 samples, and the
    # grid's only budget, 1, lies below half of it: nothing is measured.
    assert points[22.0]["multiplier"] == pytest.approx(4.39, abs=0.01)
    assert all(p["budget"] is None for p in points.values())
    lines = [line for line in findings(summary) if line.startswith("FLOPs exchange at R=22")]
    assert lines == [
        "FLOPs exchange at R=22: not measured (the matched compute is 4.4 samples; it needs a "
        "budget between 2.2 and 4.4 in the grid)."
    ]


def test_too_few_questions_for_the_bins_are_a_caveat(one_label_study):
    _, summary = one_label_study
    small = copy.deepcopy(summary)
    small["questions"] = 2
    small["difficulty"]["bin_counts"]["oracle"] = {"1": 1, "2": 1}
    assert caveats(small) == [
        "2 questions in 5 bins: bins 3, 4 and 5 are empty, so the difficulty edges around them "
        "repeat and the deployed table fills their rows from the nearest bin.",
        "Bins 1 and 2 rest on one question each.",
    ]
    assert caveats(summary) == []


# -- 7, 9, 13. settings checked before anything loads -------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("search.max_new_tokens", 0, "max_new_tokens must be an integer >= 1"),
        ("search.temperature", -1.0, "temperature must be a finite number >= 0"),
        ("models.prm_kind", "ttc_valu", "models.prm_kind: unknown PRM kind 'ttc_valu'"),
        ("search.prompt.num_shots", 4, "num_shots=4 needs prompt.shots_file"),
        ("max_rows", 0, "max_rows must be an integer >= 1"),
    ],
)
def test_bad_settings_fail_before_any_model_loads_or_file_is_written(
    field, value, message, tmp_path
):
    config = study_helpers.tiny_config(str(tmp_path / "study"))
    unloadable_models(config, tmp_path / "models")
    *parents, last = field.split(".")
    section = config
    for part in parents:
        section = section[part]
    section[last] = value
    with pytest.raises(ValueError, match=message):
        run_study(config, progress=False, echo=lambda _: None)
    assert not (tmp_path / "study").exists()


def test_max_rows_below_one_is_refused_by_the_search():
    policy = search_helpers.tiny_policy()
    with pytest.raises(ValueError, match="max_rows must be an integer >= 1"):
        run(strategy_config("majority"), policy, None, PROBLEMS[:1], 2, max_rows=0)
    config = study_helpers.tiny_config("unused")
    config.max_rows = -4
    with pytest.raises(ValueError, match="max_rows must be an integer >= 1"):
        check_study_config(config, check_models=False)


def test_revision_ratios_cover_every_divisor_of_a_budget():
    assert sequential_lengths(3) == [1, 3]
    assert sequential_lengths(12) == [1, 2, 3, 4, 6, 12]
    assert sequential_lengths(16) == [1, 2, 4, 8, 16]
    config = study_helpers.tiny_config("unused")
    config.budgets = (3,)
    assert labels_of(config, has_revisions=True)[-2:] == ["revisions_s1", "revisions_s3"]


# -- 9, 10, 14, 15. the command line ------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--config.study.no_such_field=1"],
            "ttc-study: bad --config override: the config has no field 'no_such_field'",
        ),
        (
            ["--config.study.budgets=(1,4)", "--config.study.budgets=(16,)"],
            "ttc-study: --config.study.budgets is given more than once",
        ),
    ],
)
def test_bad_overrides_are_one_line(arguments, message):
    done = subprocess.run(
        [tool("ttc-study"), "--config=configs/embedded.py", *arguments],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message)


# Long enough (minutes) that a Ctrl-C a second after its settings are recorded always lands
# mid-study, however fast the machine and however warm its compilation cache.
LONG_STUDY = [
    "--config=configs/embedded.py",
    "--config.study.data.per_level=20",
    "--config.study.budgets=(1,16)",
    "--config.study.strategies=('majority',)",
    "--config.study.revision_ratios=False",
    "--config.study.difficulty.samples=16",
    "--config.study.difficulty.charged_samples=1",
    "--config.study.models.policy_14x=",
]


# A second in, it lands while the models load; five in, under the first stage's progress bar.
@pytest.mark.parametrize("seconds_in", [1, 5])
def test_ctrl_c_stops_a_study_in_one_line_without_library_chatter(tmp_path, seconds_in):
    child = subprocess.Popen(
        [tool("ttc-study"), *LONG_STUDY, f"--config.study.workdir={tmp_path}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A test runner's worker may ignore SIGINT, and a child inherits that: restore it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline and not (tmp_path / "study.json").exists():
        time.sleep(0.1)
    time.sleep(seconds_in)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 1
    assert "Traceback" not in stderr
    assert (
        stderr.strip()
        .splitlines()[-1]
        .endswith(
            "ttc-study: stopped (Ctrl-C); every finished row is kept, and the same command resumes "
            "the study"
        )
    )
    # absl's and JAX's INFO lines ("loaded 14 parameters", backend probing) stay quiet.
    assert "loaded 14 parameters" not in stderr and "Unable to initialize backend" not in stderr


def test_verbosity_brings_the_library_lines_back(tmp_path):
    table = table_of({str(b): {"1": "majority"} for b in range(1, 6)}, samples=1)
    path = tmp_path / "table.json"
    path.write_text(json.dumps(table))
    done = subprocess.run(
        [tool("ttc-solve"), "--config=configs/embedded.py", "--question=What is 2 + 2?",
         f"--config.study.strategy_table_file={path}", "--budget=1", "--verbosity=0",
         f"--compile_cache={tmp_path}/programs"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "loaded 14 parameters" in done.stderr
    assert json.loads(done.stdout)["budget"] == 1
    # Its compiled programs were kept in the folder it was given.
    assert len(list((tmp_path / "programs").iterdir())) > 10


def test_ttc_train_reports_an_unknown_override_in_one_line():
    done = subprocess.run(
        [tool("ttc-train"), "--config=configs/embedded.py:quick", "--config.no_such_field=1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "ttc-train: bad --config override: the config has no field 'no_such_field'"
    ]
