"""The one registry convention (blockprune/registry.py) and the five registries built on it."""
import dataclasses
import importlib
import pkgutil
import re
import sys

import pytest

from blockprune import arch, export, methods, scoring, width
from blockprune.errors import UserError
from blockprune.registry import Registry, import_all


@dataclasses.dataclass(frozen=True)
class Thing:
    name: str
    size: int = 0


def test_a_registry_keeps_registration_order_refuses_a_taken_name_and_unregisters():
    r = Registry("thing", reserved=("auto",))
    b, a = r.register(Thing("b")), r.register(Thing("a"))
    assert list(r) == ["b", "a"] and list(r.values()) == [b, a] and r["a"] is a and r.get("b") is b
    with pytest.raises(ValueError, match="thing 'a' is already registered"):
        r.register(Thing("a", 1))
    assert r["a"] is a  # the first stays
    with pytest.raises(ValueError, match="thing 'auto' is already reserved"):
        r.register(Thing("auto"))
    assert r.unregister("b") is b and list(r) == ["a"] and "b" not in r
    with pytest.raises(KeyError):
        r.unregister("b")


def test_get_of_an_unknown_name_is_a_user_error_listing_the_choices():
    r = Registry("thing")
    r.register(Thing("b"))
    r.register(Thing("a"))
    with pytest.raises(UserError, match=r"^unknown thing 'c'; choose one of b, a$"):
        r.get("c")


def test_an_entry_with_several_names_is_registered_under_all_or_none_and_unregistered_from_all():
    r = Registry("type", names=lambda t: t.name.split("+"))
    r.register(Thing("x"))
    with pytest.raises(ValueError, match="type 'x'"):
        r.register(Thing("y+x"))
    assert list(r) == ["x"]  # nothing of the refused entry stays
    both = r.register(Thing("y+z"))
    assert r["y"] is r["z"] is both
    r.unregister("z")
    assert list(r) == ["x"]


def test_replaced_swaps_an_entry_in_place_for_the_block_only():
    r = Registry("thing")
    first, second = r.register(Thing("a")), r.register(Thing("b"))
    with r.replaced(Thing("a", 1)) as variant:
        assert r["a"] is variant and list(r) == ["a", "b"]
    assert r["a"] is first and list(r.values()) == [first, second]
    with pytest.raises(KeyError):
        with r.replaced(Thing("c")):
            pass


def test_import_all_imports_every_module_first_ones_first_but_no_subpackage(tmp_path, monkeypatch):
    pkg = tmp_path / "plugins"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("ORDER = []\n")
    (pkg / "sub" / "__init__.py").write_text("from .. import ORDER\nORDER.append('sub')\n")
    for name in ("b", "a", "c"):
        (pkg / f"{name}.py").write_text(f"from . import ORDER\nORDER.append({name!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import plugins

    try:
        import_all("plugins", plugins.__path__, first=("c",))
        assert plugins.ORDER == ["c", "a", "b"]
    finally:
        for name in [n for n in sys.modules if n == "plugins" or n.startswith("plugins.")]:
            del sys.modules[name]


# -- the five registries ------------------------------------------------------------------------------------
# each registry's module: the registry and the `register`, `unregister` and `get` its plug-ins use
REGISTRIES = {"method": ("methods", "METHODS"), "scorer": ("scoring", "SCORERS"), "width score": ("width", "SCORES"),
              "export format": ("export", "FORMATS"), "model type": ("arch", "ADAPTERS")}


def registry_of(kind):
    package, name = REGISTRIES[kind]
    module = importlib.import_module(f"blockprune.{package}.registry")
    return module, getattr(module, name)


@pytest.mark.parametrize("kind", REGISTRIES)
def test_each_registry_refuses_a_second_entry_under_a_taken_name(kind):
    module, registry = registry_of(kind)
    name = next(iter(registry))
    entry = registry[name]
    before = list(registry.items())
    with pytest.raises(ValueError, match=f"{kind} '{name}' is already registered"):
        # a copy, not the same object: a second plug-in under the first one's name
        module.register(entry if isinstance(entry, type) else dataclasses.replace(entry))
    assert list(registry.items()) == before


@pytest.mark.parametrize("kind", REGISTRIES)
def test_each_registry_names_its_choices_for_an_unknown_name(kind):
    module, registry = registry_of(kind)
    with pytest.raises(UserError, match=re.escape(f"unknown {kind} 'nope'; choose one of {', '.join(registry)}")):
        module.get("nope")


def test_export_keeps_auto_for_the_choice_it_makes():
    with pytest.raises(ValueError, match="export format 'auto' is already reserved"):
        export.register(export.Format("auto", export.FORMATS["vanilla"].write))


@pytest.mark.parametrize("package", [arch, export, methods, scoring, width], ids=lambda p: p.__name__)
def test_each_plugin_package_imports_every_module_of_its_own(package):
    modules = {m.name for m in pkgutil.iter_modules(package.__path__) if not m.ispkg}
    assert {n for n in modules if f"{package.__name__}.{n}" not in sys.modules} == set()
