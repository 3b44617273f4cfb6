"""Closest-name suggestions for lookups by name (tensors, endpoints, scopes, nets), and capped name lists."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from tf1tune.errors import NameNotFoundError


def closest(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """The up to `n` candidates most similar to `name`, best first.

    Matches on the whole name and on the last path component, so `logits` finds
    `resnet_v1_50/logits` as well as `logit`.
    """
    pool = sorted(set(candidates))
    found = difflib.get_close_matches(name, pool, n=n, cutoff=0.5)
    if len(found) < n:
        tail = name.rsplit("/", 1)[-1]
        by_tail = {c.rsplit("/", 1)[-1]: c for c in pool}
        for t in difflib.get_close_matches(tail, list(by_tail), n=n, cutoff=0.6):
            if by_tail[t] not in found:
                found.append(by_tail[t])
    if len(found) < n:
        found += [c for c in pool if name in c and c not in found][: n - len(found)]
    return found[:n]


def capped(items: Iterable[str], n: int = 5) -> str:
    """The first `n` items joined with commas, then `and K more` (`a, b, c and 7 more`)."""
    items = list(items)
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def not_found(kind: str, name: str, candidates: Iterable[str], hint: str = "") -> NameNotFoundError:
    """A `NameNotFoundError` for `name`, listing the closest `candidates`."""
    pool = list(candidates)
    near = closest(name, pool)
    if near:
        listed = "closest: " + ", ".join(near)
    elif pool:
        listed = "some that exist: " + ", ".join(sorted(pool)[:5])
    else:
        listed = "there are none"
    msg = f"no {kind} named '{name}' ({listed})"
    if hint:
        msg += f"; {hint}"
    return NameNotFoundError(msg)
