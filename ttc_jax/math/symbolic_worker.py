"""math-verify's equivalence check, and the worker process that runs it for symbolic.py.

This file is also run as a script (the worker's entry point), so it imports nothing from
ttc_jax: a worker then starts with sympy and math-verify only, not the whole package.

Only math-verify's LaTeX path is used: it builds sympy objects from a parse tree. It still
reaches sympy's parse_expr (Python eval) in one place, `sympy.Number(token)` on each number
token, and sympy itself sympifies unit-prefix names on import. Inside a worker, parse_expr is
wrapped so that it accepts only such a lone number literal or name, which can call nothing,
and refuses any other text.
"""

import functools
import json
import logging
import re
import signal
import sys
from multiprocessing.connection import Connection

READY_MESSAGE = b"ready"
# Parsed answers kept per worker. A gold answer is checked against every sample of its question,
# and the same wrong answers recur, so most checks parse at most one new text; parsing is about
# 40% of a check.
PARSE_CACHE_SIZE = 4096
INERT_PARSE_EXPR_TEXT = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[A-Za-z_][A-Za-z0-9_]*")


@functools.cache
def _latex_extraction_config():
    from math_verify import LatexExtractionConfig

    return (LatexExtractionConfig(),)


@functools.lru_cache(maxsize=PARSE_CACHE_SIZE)
def _parsed(answer: str) -> tuple:
    """math-verify's parse of one answer (sympy objects are immutable, so sharing is safe).

    Wrapped in "$...$" because math-verify finds bare LaTeX unreliably. Only the LaTeX extraction
    is enabled: the plain-expression one goes through sympy's parse_expr.
    """
    from math_verify import parse

    return tuple(
        parse(f"${answer}$", extraction_config=_latex_extraction_config(), parsing_timeout=None)
    )


def symbolic_equiv(pred: str, gold: str) -> bool:
    """math-verify's verdict on two LaTeX answers, in this process and without a time bound.

    Outside a worker, call `ttc_jax.math.symbolic.check_equivalent`, which bounds the time.
    """
    from math_verify import verify

    return bool(verify(list(_parsed(gold)), list(_parsed(pred)), timeout_seconds=None))


def restrict_code_evaluating_parsers() -> None:
    """Makes sympy's parse_expr, wherever it is imported, refuse all but inert text."""
    import latex2sympy2_extended.latex2sympy2 as latex2sympy_module
    import math_verify.parser as math_verify_parser
    import sympy.parsing
    import sympy.parsing.sympy_parser as sympy_parser

    unrestricted_parse_expr = sympy_parser.parse_expr

    def parse_inert_text_only(text, *args, **kwargs):
        if not (isinstance(text, str) and INERT_PARSE_EXPR_TEXT.fullmatch(text)):
            raise RuntimeError("the grading worker parses no text as Python code")
        return unrestricted_parse_expr(text, *args, **kwargs)

    for module in (sympy_parser, sympy.parsing, math_verify_parser, latex2sympy_module):
        module.parse_expr = parse_inert_text_only


def serve(requests: Connection, replies: Connection) -> None:
    """Answers [pred, gold] requests with [equivalent, error text] until the parent goes."""
    restrict_code_evaluating_parsers()
    # math-verify warns once that its own timeouts are off; the parent enforces a deadline.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    symbolic_equiv("1", "1")  # builds math-verify's regexes and parser before the first deadline
    replies.send_bytes(READY_MESSAGE)
    while True:
        try:
            pred, gold = json.loads(requests.recv_bytes())
        except EOFError:
            return
        try:
            reply = [symbolic_equiv(pred, gold), ""]
        except Exception as error:  # whatever math-verify raises, nothing was shown equivalent
            reply = [False, f"{type(error).__name__}: {error}"]
        replies.send_bytes(json.dumps(reply).encode())


if __name__ == "__main__":
    # An interrupt meant for the parent (Ctrl-C, a notebook's interrupt or its kernel's
    # shutdown) reaches its whole process group; the worker leaves when its pipe closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    request_fd, reply_fd = (int(arg) for arg in sys.argv[1:3])
    serve(Connection(request_fd, writable=False), Connection(reply_fd, readable=False))
