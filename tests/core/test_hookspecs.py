"""Every hook is typed, documented in its docstring, and documented for plugin authors."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from probepilot import hookspecs

REPO = Path(__file__).resolve().parents[2]
HOOKS = sorted(
    name
    for name, fn in vars(hookspecs).items()
    if name.startswith("probepilot_") and inspect.isfunction(fn)
)


def plugin_docs() -> str:
    """The README's plugin section plus docs/plugins.md: where plugin authors look."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Writing a plugin$(.*?)(?=^## |\Z)", readme, re.M | re.S)
    assert match, "README.md has no '## Writing a plugin' section"
    return match.group(1) + (REPO / "docs" / "plugins.md").read_text(encoding="utf-8")


def test_there_are_hooks() -> None:
    assert "probepilot_register_drivers" in HOOKS
    assert "probepilot_event" in HOOKS


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_documented_for_plugin_authors(name: str) -> None:
    assert re.search(rf"^#+ `?{name}\(", plugin_docs(), re.M), (
        f"{name} has no heading in the README's 'Writing a plugin' section or docs/plugins.md"
    )


def test_docs_name_no_hook_that_does_not_exist() -> None:
    documented = set(re.findall(r"^#+ `?(probepilot_\w+)\(", plugin_docs(), re.M))
    assert documented == set(HOOKS)


@pytest.mark.parametrize("name", HOOKS)
def test_hookspec_docstring_is_complete(name: str) -> None:
    fn = getattr(hookspecs, name)
    doc = inspect.getdoc(fn) or ""
    signature = inspect.signature(fn)
    for param in signature.parameters:
        assert f":param {param}:" in doc, f"{name}: parameter {param!r} undocumented"
        assert signature.parameters[param].annotation is not inspect.Parameter.empty
    assert signature.return_annotation is not inspect.Signature.empty
    assert ":return:" in doc, f"{name}: return undocumented"
    assert "thread" in doc, f"{name}: does not say which thread calls it"
    opts = fn.probepilot_spec
    kind = (
        "Historic"
        if opts.get("historic")
        else "firstresult"
        if opts.get("firstresult")
        else "every plugin"
    )
    assert kind.lower() in doc.lower(), f"{name}: does not say it is {kind}"
