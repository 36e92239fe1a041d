"""The house's lines, read from the sources: which room may import which, and no import cycles
(including imports made only for type checking: a cycle there is a design one all the same)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHAT_LIBRARIES = {"telegram", "discord"}
ENGINE_LIBRARIES = {"torch", "diffusers", "transformers"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, as absolute names (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _graph(*packages: str) -> dict[str, set[str]]:
    files = [p for package in packages for p in (ROOT / package).rglob("*.py")]
    modules = {_module_name(p): p for p in files}
    return {name: {i for i in _imports(path) if i in modules and i != name} for name, path in modules.items()}


def _top_levels(path: Path) -> set[str]:
    return {name.split(".")[0] for name in _imports(path)}


def test_no_module_of_the_bot_or_the_engine_imports_itself_back_through_others():
    graph = _graph("bot", "engine")
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    # A package's __init__ importing its own submodules is not a cycle of design.
    real = [c for c in cycles if not any(b.startswith(a + ".") for a, b in zip(c, c[1:]))]
    assert real == [], " ; ".join(" -> ".join(c) for c in real)


def test_the_core_imports_no_chat_library_and_no_torch():
    for path in (ROOT / "bot").rglob("*.py"):
        if "adapters" in path.relative_to(ROOT).parts:
            continue
        assert not _top_levels(path) & (CHAT_LIBRARIES | ENGINE_LIBRARIES), path


def test_the_use_cases_decode_no_picture_themselves():
    """Picture codecs (Pillow) live in engine/pictures.py: the core passes bytes in and out."""
    for path in [ROOT / "bot" / "service.py", *(ROOT / "bot" / "core").rglob("*.py")]:
        assert "PIL" not in _top_levels(path), path


def test_the_front_ends_import_no_database_driver_and_no_torch():
    for path in (ROOT / "bot" / "adapters").rglob("*.py"):
        imported = _imports(path)
        assert not {name.split(".")[0] for name in imported} & (ENGINE_LIBRARIES | {"sqlite3", "aiosqlite", "asyncpg"}), path
        assert not any(name == "bot.store" or name.startswith("bot.store.") for name in imported), path


def test_the_store_imports_no_chat_library_no_torch_and_no_picture_codec():
    """The database room: its drivers, and of the bot only the clock (nothing above it)."""
    for path in (ROOT / "bot" / "store").rglob("*.py"):
        imported = _imports(path)
        assert not _top_levels(path) & (CHAT_LIBRARIES | ENGINE_LIBRARIES | {"PIL"}), path
        above = {name for name in imported if name.split(".")[0] == "bot" and not name.startswith(("bot.store", "bot.clock"))}
        assert above == set(), path


def test_the_engine_knows_nothing_of_the_bot():
    for path in (ROOT / "engine").rglob("*.py"):
        assert "bot" not in _top_levels(path), path


def test_a_sub_router_never_imports_its_adapter():
    routers = (
        ("telegram/upgrades.py", {"bot.adapters.telegram", "bot.adapters.telegram.adapter"}),
        ("discord/upgrades.py", {"bot.adapters.discord", "bot.adapters.discord.adapter"}),
    )
    for router, adapters in routers:
        assert not _imports(ROOT / "bot" / "adapters" / router) & adapters, router
    # Each front end's rooms (Telegram's updates, statuses, delivery, surfaces ...; Discord's
    # gateway, commands, statuses, delivery ...; the web's access, jobs, uploads ...) get what
    # they need passed in; only the front end itself (adapter.py) puts them together.
    for platform, least in (("telegram", 12), ("discord", 14), ("web", 8)):
        package = ROOT / "bot" / "adapters" / platform
        rooms = [path for path in package.glob("*.py") if path.name not in ("adapter.py", "__init__.py")]
        assert len(rooms) >= least, rooms
        for room in rooms:
            assert f"bot.adapters.{platform}.adapter" not in _imports(room), f"{platform}/{room.name}"


def test_the_rooms_import_one_way_front_ends_then_the_chat_flow_then_the_core():
    """A front end may use the chat flow and the core; the chat flow the core; the core and the
    store neither: they call a front end back only through the FrontEnd protocol they are given."""

    def importing(package: str, *, forbidden: tuple[str, ...]) -> list[str]:
        found = []
        for path in (ROOT / package).rglob("*.py"):
            found += [f"{path.relative_to(ROOT)}: {name}" for name in _imports(path) if name.startswith(forbidden)]
        return found

    assert importing("bot/chat", forbidden=("bot.adapters",)) == []
    assert importing("bot/core", forbidden=("bot.adapters", "bot.chat")) == []
    assert importing("bot/store", forbidden=("bot.adapters", "bot.chat", "bot.core")) == []
    service = [name for name in _imports(ROOT / "bot" / "service.py") if name.startswith(("bot.adapters", "bot.chat"))]
    assert service == []


def test_no_test_module_imports_another():
    """What several test modules share lives in tests/harness/ (or conftest.py): a test module
    that imports another ties its tests to that module's helpers and fixtures, so editing one
    test file breaks others."""
    offenders = sorted({
        f"{path.name} imports {'.'.join(name.split('.')[:2])}"
        for path in (ROOT / "tests").glob("test_*.py")
        for name in _imports(path)
        if name.startswith("tests.test_")
    })
    assert offenders == []
