"""The toy task: one-digit addition prompts and a reward that can be computed from text alone."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

FIRST_NUMBER = re.compile(r"\d+")


@dataclass(frozen=True)
class Problem:
    prompt: str
    answer: int


def load_problems(count: int, seed: int) -> list[Problem]:
    """`count` addition problems, the same for the same seed."""
    rng = random.Random(seed)
    problems = []
    for _ in range(count):
        a, b = rng.randrange(10), rng.randrange(10)
        problems.append(Problem(prompt=f"Q: what is {a} + {b}? A:", answer=a + b))
    return problems


def reward(response: str, answer: int) -> float:
    """1.0 when the first number in the response is the answer, 0.2 for any other number
    (the partial credit gives a random policy something to learn from), else 0.0."""
    match = FIRST_NUMBER.search(response)
    if match is None:
        return 0.0
    return 1.0 if int(match.group()) == answer else 0.2
