"""Compiled programs are released before the process runs out of memory mappings."""

import jax
import jax.numpy as jnp
import pytest

from ttc_jax import program_cache


def _limit(monkeypatch, tmp_path, value: str) -> None:
    path = tmp_path / "max_map_count"
    path.write_text(value)
    monkeypatch.setattr(program_cache, "MAX_MAP_COUNT", path)


def _compiled_square():
    square = jax.jit(lambda x: x * x)
    square(jnp.ones(3))
    assert square._cache_size() == 1
    return square


def test_caches_are_cleared_past_the_share_of_the_limit(monkeypatch, tmp_path, caplog):
    used = program_cache.mapping_count()
    assert used is not None and used > 10  # this test runs on Linux
    square = _compiled_square()
    _limit(monkeypatch, tmp_path, str(used))  # the process is at its limit
    assert program_cache.release_if_crowded(0.9)
    assert square._cache_size() == 0
    assert "released compiled programs" in caplog.text


def test_nothing_is_released_below_the_share(monkeypatch, tmp_path):
    square = _compiled_square()
    _limit(monkeypatch, tmp_path, str(10 * program_cache.mapping_count()))
    assert not program_cache.release_if_crowded(0.5)
    assert square._cache_size() == 1


def test_an_unknown_limit_releases_nothing(monkeypatch, tmp_path):
    square = _compiled_square()
    _limit(monkeypatch, tmp_path, "not a number")
    assert program_cache.mapping_limit() is None
    assert not program_cache.release_if_crowded()
    assert square._cache_size() == 1


@pytest.mark.parametrize("share", [0, -0.5, 1.5])
def test_a_share_outside_0_1_is_an_error(share):
    with pytest.raises(ValueError, match="share"):
        program_cache.release_if_crowded(share)
