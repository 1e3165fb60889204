# SPDX-License-Identifier: GPL-2.0-only
"""The type stubs ship with the package and match the modules' names."""

from __future__ import annotations

import ast
import inspect
import pathlib

import morpheus
import morpheus._morpheus as native

PKG = pathlib.Path(morpheus.__file__).parent
MODULE_ATTRS = {"__doc__", "__file__", "__loader__", "__name__", "__package__", "__spec__", "__all__",
                "__path__", "__cached__", "__builtins__"}


def stub_names(path: pathlib.Path) -> set:
    """Top-level names a stub file declares."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("_morpheus"):
            names.update(a.asname or a.name for a in node.names if a.asname == a.name)
    return names - {"__all__"}


def test_stubs_and_marker_ship_with_the_package():
    for f in ("py.typed", "__init__.pyi", "_morpheus.pyi"):
        assert (PKG / f).is_file(), f


def test_native_stub_matches_the_native_module():
    actual = {n for n in dir(native) if n not in MODULE_ATTRS}
    assert stub_names(PKG / "_morpheus.pyi") == actual


def test_package_stub_matches_the_package():
    public = {n for n, v in vars(morpheus).items()
              if not n.startswith("_") and not inspect.ismodule(v)} | {"__version__"}
    assert set(morpheus.__all__) == public
    assert stub_names(PKG / "__init__.pyi") == public


def test_every_public_item_is_documented():
    for name in morpheus.__all__:
        obj = getattr(morpheus, name)
        if callable(obj):
            assert (obj.__doc__ or "").strip(), f"morpheus.{name} has no docstring"
    for name in dir(native):
        obj = getattr(native, name)
        if callable(obj) and not name.startswith("__"):
            assert (obj.__doc__ or "").strip() or name.startswith("_"), f"_morpheus.{name} has no docstring"
