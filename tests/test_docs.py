"""Every docstring example in the package runs (DESIGN.md: examples that run as doctests)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import normalizingflows as nf

MODULES = sorted(m.name for m in pkgutil.walk_packages(nf.__path__, prefix="normalizingflows.")
                 if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def test_the_public_modules_have_examples() -> None:
    # Count the examples without running them again (the test above runs them).
    finder = doctest.DocTestFinder()
    with_examples = [name for name in MODULES
                     if any(t.examples for t in finder.find(importlib.import_module(name)))]
    for name in ("normalizingflows.flows.core", "normalizingflows.flows.registry",
                 "normalizingflows.nn.made", "normalizingflows.bijectors.planar"):
        assert name in with_examples
