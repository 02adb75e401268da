"""Hand-written (prediction, gold, equivalent) pairs for `is_equiv`, one group per normalisation
rule and per answer kind (docs/grading.md lists the rules). Each group has pairs that must match
and near misses that must not, so a rule that stops working or starts over-matching shows up.
"""

from typing import NamedTuple


class GradingPair(NamedTuple):
    rule: str
    pred: str
    gold: str
    equivalent: bool


GRADING_PAIRS = [
    # Whitespace and LaTeX spacing commands.
    GradingPair("spaces", "x + 1", "x+1", True),
    GradingPair("spaces", "2 \\, 3", "23", True),
    GradingPair("spaces", "\\pi r^2", "\\pi r^{2}", True),
    GradingPair("spaces", "2 3", "5", False),
    # \left / \right and other sizing commands.
    GradingPair("left-right", "\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})", True),
    GradingPair("left-right", "\\Big( 1, 2 \\Big)", "(1,2)", True),
    GradingPair("left-right", "\\left[ 1, 2 \\right)", "[1,2]", False),
    # \dfrac / \tfrac, and the \frac12, \sqrt3, a/b shorthands.
    GradingPair("frac", "\\dfrac{3}{4}", "\\frac{3}{4}", True),
    GradingPair("frac", "\\tfrac34", "\\frac{3}{4}", True),
    GradingPair("frac", "\\frac 59", "\\frac{5}{9}", True),
    GradingPair("frac", "3/4", "\\frac34", True),
    GradingPair("frac", "\\frac{270}7", "\\frac{270}{7}", True),
    GradingPair("frac", "\\dfrac{4}{3}", "\\frac{3}{4}", False),
    GradingPair("sqrt", "11\\sqrt2", "11\\sqrt{2}", True),
    GradingPair("sqrt", "\\sqrt3", "\\sqrt{2}", False),
    # Degrees.
    GradingPair("degrees", "90^\\circ", "90", True),
    GradingPair("degrees", "90^{\\circ}", "90", True),
    GradingPair("degrees", "30°", "30^\\circ", True),
    GradingPair("degrees", "45^\\circ", "90^\\circ", False),
    # Units in \text{} / \mbox{}, also squared.
    GradingPair("units", "5.4 \\text{ cents}", "5.4", True),
    GradingPair("units", "864 \\mbox{ inches}^2", "864", True),
    GradingPair("units", "\\frac{270}7\\text{ degrees}", "\\frac{270}{7}", True),
    GradingPair("units", "15\\text{ cm}", "16", False),
    # Trailing periods.
    GradingPair("trailing period", "5.", "5", True),
    GradingPair("trailing period", "\\frac{1}{2}.", "\\frac12", True),
    GradingPair("trailing period", "5.1", "5", False),
    # "x =" and "x \in" prefixes.
    GradingPair("variable prefix", "x = 5", "5", True),
    GradingPair("variable prefix", "y = 2x + 3", "2x+3", True),
    GradingPair("variable prefix", "x \\in [-2,7]", "[-2,7]", True),
    GradingPair("variable prefix", "x = 6", "5", False),
    # Thousands separators.
    GradingPair("thousands", "10,\\!080", "10080", True),
    GradingPair("thousands", "11,\\! 111,\\! 111,\\! 100", "11111111100", True),
    GradingPair("thousands", "58{,}500", "58,500", True),
    GradingPair("thousands", "1, 125", "1125", False),
    # Percent and dollars.
    GradingPair("percent", "10\\%", "10", True),
    GradingPair("percent", "12.5%", "12.5", True),
    GradingPair("percent", "0.1", "10\\%", False),
    GradingPair("dollars", "\\$32,\\!348", "32348", True),
    GradingPair("dollars", "\\$18.90", "18.9", True),
    GradingPair("dollars", "\\$36", "\\$37", False),
    # Math delimiters around the answer.
    GradingPair("delimiters", "$\\frac{1}{2}$", "\\frac12", True),
    GradingPair("delimiters", "\\(7\\)", "7", True),
    # Numbers: integers, decimals, fractions, leading decimal point.
    GradingPair("number", "0.5", "\\frac{1}{2}", True),
    GradingPair("number", ".0000672", "0.0000672", True),
    GradingPair("number", "-\\frac{3}{4}", "\\frac{-3}{4}", True),
    GradingPair("number", "007", "7", True),
    GradingPair("number", "2.50", "2.5", True),
    GradingPair("number", "\\frac{1}{3}", "0.3", False),
    GradingPair("number", "12", "21", False),
    GradingPair("number", "-5", "5", False),
    GradingPair("number", "0.5001", "\\frac{1}{2}", False),
    GradingPair("number", "0.333333", "\\frac{1}{3}", True),
    # Scientific notation is read as an exact number.
    GradingPair("scientific", "1e3", "1000", True),
    GradingPair("scientific", "1.5e-2", "0.015", True),
    GradingPair("scientific", "2.5E+2", "250", True),
    GradingPair("scientific", "2\\times10^{3}", "2000", True),
    GradingPair("scientific", "2 \\cdot 10^3", "2000", True),
    GradingPair("scientific", "-3 \\times 10^{-2}", "-\\frac{3}{100}", True),
    GradingPair("scientific", "1e3", "100", False),
    GradingPair("scientific", "2\\times10^{3}", "2\\times10^{4}", False),
    GradingPair("scientific", "1.5e-2", "0.15", False),
    # Symbolic expressions.
    GradingPair("expression", "(x+1)^2", "x^2+2x+1", True),
    GradingPair("expression", "\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", True),
    GradingPair("expression", "2\\sqrt{2}", "\\sqrt{8}", True),
    GradingPair("expression", "\\pi/2", "\\frac{\\pi}{2}", True),
    GradingPair("expression", "x^2+2x", "x^2+2x+1", False),
    GradingPair("expression", "\\sqrt{2}", "1.41", False),
    # Tuples and points (order matters).
    GradingPair("tuple", "(1, -2)", "(1,-2)", True),
    GradingPair("tuple", "(6,31,-1)", "(6, 31, -1)", True),
    GradingPair("tuple", "(\\frac{3}{2}, -13)", "\\left( \\frac{3}{2}, -13 \\right)", True),
    GradingPair("tuple", "(2, 1)", "(1, 2)", False),
    GradingPair("tuple", "(1, 2, 3)", "(1, 2)", False),
    # Intervals and unions (brackets matter).
    GradingPair("interval", "(-\\infty, 0]", "(-\\infty,0]", True),
    GradingPair(
        "interval", "[\\frac{\\pi^2}{8}, \\frac{5\\pi^2}{4}]", "[\\pi^2/8,5\\pi^2/4]", True
    ),
    GradingPair("interval", "(0,9) \\cup (9,36)", "(0,9)\\cup(9,36)", True),
    GradingPair("interval", "(3,4]", "(3,4)", False),
    GradingPair("interval", "(2,\\infty)", "[2,\\infty)", False),
    # Sets and lists of solutions (order does not matter).
    GradingPair("set", "\\{1\\pm\\sqrt{5},-2\\}", "\\{-2, 1+\\sqrt{5}, 1-\\sqrt{5}\\}", True),
    GradingPair("set", "3, 5, 7", "7, 5, 3", True),
    GradingPair("set", "1,-2", "-2,1", True),
    GradingPair("set", "3, 5", "3, 5, 7", False),
    # Matrices and vectors.
    GradingPair(
        "matrix",
        "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}",
        "\\begin{pmatrix}-1&0\\\\0&-1\\end{pmatrix}",
        True,
    ),
    GradingPair(
        "matrix",
        "\\begin{pmatrix} -1/3 \\\\ 2/3 \\end{pmatrix}",
        "\\begin{pmatrix} -\\frac{1}{3} \\\\ \\frac{2}{3} \\end{pmatrix}",
        True,
    ),
    GradingPair(
        "matrix",
        "\\begin{bmatrix} 1 \\\\ 2 \\end{bmatrix}",
        "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}",
        True,
    ),
    GradingPair(
        "matrix",
        "\\begin{pmatrix} 2 \\\\ 1 \\end{pmatrix}",
        "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}",
        False,
    ),
    # Equations that are the answer themselves.
    GradingPair("equation", "5x - 7y + 11z + 4 = 0", "5x-7y+11z+4=0", True),
    GradingPair("equation", "5x - 7y + 11z = 0", "5x-7y+11z+4=0", False),
    # Text answers and multiple-choice letters.
    GradingPair("text", "\\text{Evelyn}", "Evelyn", True),
    GradingPair("text", "\\text{EAST}", "\\text{east}", True),
    GradingPair("text", "x = \\text{Navin}", "\\text{Navin}", True),
    GradingPair("text", "\\text{odd}", "\\text{even}", False),
    GradingPair("choice", "(C)", "\\text{(C)}", True),
    GradingPair("choice", "\\text{C}", "\\text{(C)}", True),
    GradingPair("choice", "(B)", "\\text{(C)}", False),
    # Empty or missing answers never match.
    GradingPair("empty", "", "5", False),
    GradingPair("empty", "   ", "", False),
]
