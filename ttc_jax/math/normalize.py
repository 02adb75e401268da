"""MATH-style string normalisation of final answers, and exact rationals.

`normalize_answer` turns an extracted answer into a canonical string so that most equivalent
pairs are decided by plain string equality, long before any symbolic check. The rules follow the
MATH grading function (Hendrycks et al.) with the extra cases open graders handle; they are
listed, in the order applied, in docs/grading.md. Every rule is a linear-time string or regex
operation without nested quantifiers, so a long or hostile input cannot make it slow.

`as_rational` reads the canonical forms of plain numbers (integers, decimals, fractions of
integers, scientific notation) so that numeric answers, the most common kind, are compared exactly
without sympy.
"""

import re
from fractions import Fraction

# "\\ " is a spacing command but "\\\\" (a matrix row break) followed by a space is not.
_SPACING_COMMANDS = re.compile(r"(?<!\\)\\(?:[,;:! ]|quad\b|qquad\b)|~")
_SIZING_COMMANDS = re.compile(
    r"\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|Biggl|Biggr|big|Big|bigg|Bigg)(?![a-zA-Z])"
    r"|\\displaystyle(?![a-zA-Z])"
)
_FRAC_VARIANTS = re.compile(r"\\[dt]frac(?![a-zA-Z])")
_DEGREES = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ(?![a-zA-Z])|\\degree(?![a-zA-Z])|°")
# A unit is a trailing \text{...} or \mbox{...} of words (optionally squared or cubed) right
# after a value ending in a digit or a bracket: "5\text{ cm}^2". A text-only answer
# ("\text{Evelyn}") has no value before it and stays.
_TRAILING_UNIT = re.compile(
    r"(?<=[0-9}\])])\s*\\(?:text|mbox|textrm|mathrm)\{\s*[A-Za-z][A-Za-z. ]*\}\s*"
    r"(?:\^\s*\{?\d\}?)?\s*$"
)
_TEXT_WRAPPER = re.compile(r"\\(?:text|mbox|textrm|textbf|mathrm|mathbf)\{([^{}]*)\}")
# ",\\!" (a comma pulled tight) only ever groups digits, so it is marked before "\\!" goes.
_GROUPING_COMMA = re.compile(r",\s*\\!\s*")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:(?:,|\{,\})\d{3})+(?:\.\d+)?")
_THOUSANDS_SEPARATOR = re.compile(r",|\{,\}")
# "x = 5", "y = 2x + 3", "x \in [-2, 7]": a short variable name and one relation sign.
_VARIABLE_PREFIX = re.compile(r"(?:[A-Za-z](?:_\{?\w+\}?)?|\\[a-zA-Z]+)\s*(?:=|\\in(?![a-zA-Z]))")
_SINGLE_LETTER_CHOICE = re.compile(r"\(([A-Za-z])\)")
_WORDS = re.compile(r"[A-Za-z]{2,}(?: [A-Za-z]+)*")
_SPACES_NEAR_SYMBOLS = re.compile(r"\s*([^A-Za-z\s])\s*")
_WHITESPACE_RUN = re.compile(r"\s+")
_SQRT_SHORTHAND = re.compile(r"\\sqrt(?![a-zA-Z])\s*([0-9A-Za-z])")
_FRAC_TWO_CHARS = re.compile(r"\\frac(?![a-zA-Z])\s*([0-9A-Za-z])\s*([0-9A-Za-z])")
_FRAC_FIRST_CHAR = re.compile(r"\\frac(?![a-zA-Z])\s*([0-9A-Za-z])\s*\{")
_FRAC_SECOND_CHAR = re.compile(r"\\frac(?![a-zA-Z])\s*(\{[^{}]*\})\s*([0-9A-Za-z])")
_INTEGER_SLASH = re.compile(r"(-?)(\d+)/(\d+)")
_BARE_DECIMAL_POINT = re.compile(r"(^|[^\w}.])\.(\d)")

# Longer literals (60 digits) would make Fraction arithmetic itself the slow part.
_DECIMAL = re.compile(r"-?\d{1,60}(?:\.\d{1,60})?")
_FRACTION = re.compile(r"(-?)\\frac\{(-?\d{1,60})\}\{(-?\d{1,60})\}")
# "1e3", "1.5E-2", "2\times10^{3}", "2\cdot10^3". Without braces only one digit is the exponent,
# as in LaTeX ("10^34" is 10^3 * 4). Exponents of four or more digits are left to the symbolic
# check and its guards against huge numbers.
_SCIENTIFIC = re.compile(
    r"(?P<mantissa>-?\d{1,60}(?:\.\d{1,60})?)"
    r"(?:[eE](?P<e>[-+]?\d{1,3})"
    r"|\\(?:times|cdot)10\^(?:\{(?P<braced>[-+]?\d{1,3})\}|(?P<digit>\d)))"
)


def _strip_math_delimiters(text: str) -> str:
    """Removes "$...$", "\\(...\\)" and "\\[...\\]" around the answer and stray "$" signs."""
    for opening, closing in (("\\(", "\\)"), ("\\[", "\\]")):
        if text.startswith(opening) and text.endswith(closing):
            text = text[len(opening) : -len(closing)]
    # Dollar signs are either math delimiters or currency ("\$18.90"): neither is the answer.
    return text.replace("\\$", "").replace("$", "")


def _strip_variable_prefix(text: str) -> str:
    """Drops "x =" / "x \\in" before the value, but only when it is the one relation present."""
    match = _VARIABLE_PREFIX.match(text)
    if match is None or text.count("=") > 1:
        return text
    value = text[match.end() :]
    return value if value.strip() else text


def _strip_trailing_period(text: str) -> str:
    """Sentences end with "." after the answer; a single trailing period is not part of it."""
    text = text.rstrip()
    if text.endswith("\\."):
        return text[:-2]
    if text.endswith(".") and not text.endswith(".."):
        return text[:-1]
    return text


def _fix_shorthand(text: str) -> str:
    """ "\\sqrt3" -> "\\sqrt{3}", "\\frac12" -> "\\frac{1}{2}", "3/4" -> "\\frac{3}{4}"."""
    text = _SQRT_SHORTHAND.sub(r"\\sqrt{\1}", text)
    text = _FRAC_TWO_CHARS.sub(r"\\frac{\1}{\2}", text)
    text = _FRAC_FIRST_CHAR.sub(r"\\frac{\1}{", text)
    text = _FRAC_SECOND_CHAR.sub(r"\\frac\1{\2}", text)
    slash = _INTEGER_SLASH.fullmatch(text)
    if slash is not None:
        sign, numerator, denominator = slash.groups()
        text = f"{sign}\\frac{{{numerator}}}{{{denominator}}}"
    return _BARE_DECIMAL_POINT.sub(r"\g<1>0.\2", text)


def normalize_answer(answer: str) -> str:
    """Returns the canonical form of one final answer (see docs/grading.md for the rules).

    Spaces are dropped except between two letters, where LaTeX needs them ("\\pi r" is not
    "\\pir"), and after commas, so the canonical form is still valid LaTeX with the same
    meaning for the symbolic check.
    """
    text = _strip_math_delimiters(answer.strip()).strip()
    text = _GROUPING_COMMA.sub("{,}", text)
    text = _WHITESPACE_RUN.sub(" ", text)
    text = _SPACING_COMMANDS.sub(" ", text)
    text = _SIZING_COMMANDS.sub("", text)
    text = _FRAC_VARIANTS.sub(r"\\frac", text)
    text = _DEGREES.sub("", text)
    text = text.replace("\\%", "").replace("%", "")
    text = _strip_trailing_period(text)
    text = _strip_variable_prefix(text.strip())
    text = _TRAILING_UNIT.sub("", text)
    text = _TEXT_WRAPPER.sub(r"\1", text)
    text = _WHITESPACE_RUN.sub(" ", text).strip()
    if _THOUSANDS.fullmatch(text):
        text = _THOUSANDS_SEPARATOR.sub("", text)
    text = _SPACES_NEAR_SYMBOLS.sub(r"\1", text)
    # Left over commas separate items; math-verify reads "1,125" as a number but "1, 125" as a
    # list, so one space after each keeps the meaning through to the symbolic check.
    text = text.replace(",", ", ")
    text = _fix_shorthand(text)
    choice = _SINGLE_LETTER_CHOICE.fullmatch(text)
    if choice is not None:
        text = choice.group(1)
    if _WORDS.fullmatch(text):
        text = text.casefold()
    return text


def as_rational(canonical: str) -> tuple[Fraction, bool] | None:
    """Reads a canonical plain number; returns (value, written_as_decimal) or None.

    The flag matters because decimals are rounded answers: "0.333" may stand for 1/3, a call
    the symbolic check makes, while two integers or fractions compare exactly here. A number in
    scientific notation is a decimal when its mantissa is one ("1.5e-2", not "1e3").
    """
    if _DECIMAL.fullmatch(canonical):
        return Fraction(canonical), "." in canonical
    scientific = _SCIENTIFIC.fullmatch(canonical)
    if scientific is not None:
        mantissa = scientific["mantissa"]
        exponent = int(scientific["e"] or scientific["braced"] or scientific["digit"])
        return Fraction(mantissa) * Fraction(10) ** exponent, "." in mantissa
    fraction = _FRACTION.fullmatch(canonical)
    if fraction is None:
        return None
    sign, numerator, denominator = fraction.groups()
    if int(denominator) == 0:
        return None
    value = Fraction(int(numerator), int(denominator))
    return (-value if sign else value), False
