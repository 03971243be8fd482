"""A search space written in YAML, as Hyperopt expressions.

    maxDepth: {quniform: [3, 8, 1]}       # 3, 4, ... 8 (integers when all three are)
    stepSize: {loguniform: [0.01, 0.3]}   # bounds as values, sampled on a log scale
    subsample: {uniform: [0.5, 1.0]}
    impurity: {choice: [gini, entropy]}
"""

from __future__ import annotations

import math


def to_hyperopt(space: dict[str, dict[str, list]]) -> dict:
    from hyperopt import hp

    out = {}
    for name, dist in space.items():
        (kind, args), = dist.items()
        if kind == "uniform":
            out[name] = hp.uniform(name, args[0], args[1])
        elif kind == "loguniform":
            out[name] = hp.loguniform(name, math.log(args[0]), math.log(args[1]))
        elif kind == "quniform":
            out[name] = hp.quniform(name, args[0], args[1], args[2])
        elif kind == "choice":
            out[name] = hp.choice(name, list(args))
        else:  # the config model refuses other names before we get here
            raise AssertionError(kind)
    return out


def typed(space: dict[str, dict[str, list]], point: dict) -> dict:
    """Hyperopt's sample -> parameter values of the types the estimator wants."""
    out = {}
    for name, value in point.items():
        (kind, args), = space[name].items()
        if kind == "quniform" and all(float(a).is_integer() for a in args):
            value = int(round(value))
        elif hasattr(value, "item"):  # numpy scalar
            value = value.item()
        out[name] = value
    return out
