"""The benchmarks behind `scripts/bench <sub-command>`.

Each sub-command is a module here with a `main(argv) -> int`: `send` is send.py, `segments`
is segments.py, and a name that is a Python keyword takes a trailing underscore (`import` is
import_.py). Dropping a module in is all it takes to add one; common.py holds what they share.
"""
import importlib
import keyword
import pkgutil
from pathlib import Path

HELPERS = {"common"}


def module_name(command: str) -> str:
    name = command.replace("-", "_")
    return name + "_" if keyword.iskeyword(name) else name


def commands() -> list[str]:
    found = []
    for m in pkgutil.iter_modules([str(Path(__file__).resolve().parent)]):
        if m.name.startswith("_") or m.name in HELPERS:
            continue
        found.append(m.name[:-1] if m.name.endswith("_") and keyword.iskeyword(m.name[:-1]) else m.name)
    return sorted(found)


def load(command: str):
    """The sub-command's module, or None when there is no such benchmark."""
    if command not in commands():
        return None
    module = importlib.import_module(f"{__name__}.{module_name(command)}")
    return module if callable(getattr(module, "main", None)) else None
