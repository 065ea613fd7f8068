"""The package's shape, read from its source (Python's ast, no import): the core knows nothing of the Space, and no
module of ddpm/ imports itself back through another."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ddpm"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The modules `path` imports, at any depth of its code (imports inside functions too), absolute."""
    name, found = module_name(path), set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names}  # `from . import x` may name a module
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {m: {i for i in imports(p) if i in modules and i != m} for m, p in modules.items()}


def test_the_core_knows_nothing_of_the_space():
    """ddpm/ outside ddpm/space/ (the scheduler, sampling, training, Hub I/O) imports neither the Space nor Gradio."""
    core = [p for p in PACKAGE.rglob("*.py") if "space" not in p.relative_to(PACKAGE).parts]
    leaks = {module_name(p): sorted(i for i in imports(p) if i.startswith(("ddpm.space", "gradio"))) for p in core}
    assert not {m: i for m, i in leaks.items() if i}, leaks
    assert len(core) >= 10


def test_no_module_of_the_package_imports_itself_back():
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for nxt in sorted(edges[module]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert "ddpm.space.handlers" in edges and "ddpm.scheduler" in edges["ddpm.hub"]


def test_every_training_flag_has_its_help_beside_its_field():
    """train_accelerate.py's --help reads each flag's help from the TrainConfig field it sets (one place a flag)."""
    import dataclasses

    from ddpm.config import TrainConfig

    fields = dataclasses.fields(TrainConfig)
    assert len(fields) > 40
    assert not [f.name for f in fields if len(f.metadata.get("help", "")) < 8], "a field without help"
    assert "HELP" not in (ROOT / "train_accelerate.py").read_text()
