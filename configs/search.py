"""Search strategy defaults for `ttc_jax.search.run`, one per strategy name.

    config = get_config("beam"); config.beam_width = 2

``get_config(name)`` returns `ttc_jax.search.strategy_config(name)`: every field with its
default and a comment on what it does lives there (ttc_jax/search/configs.py).
Names: majority, best_of_n, beam, lookahead, dvts, revisions.
"""

from ttc_jax.search import strategy_config


def get_config(name: str = "best_of_n"):
    return strategy_config(name)
