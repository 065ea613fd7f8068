"""The project's shape, read from its source (Python's ast, no import): the core knows nothing of the Space, no module
of ddpm/ or benchmarks/ imports itself back through another, and the benchmarks' report measures nothing."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ddpm"
BENCHMARKS = ROOT / "benchmarks"


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


def graph(*packages: Path) -> dict[str, set[str]]:
    """Module -> the modules of `packages` it imports."""
    modules = {module_name(p): p for package in packages for p in package.rglob("*.py")}
    return {m: {i for i in imports(p) if i in modules and i != m} for m, p in modules.items()}


def test_the_core_knows_nothing_of_the_space():
    """ddpm/ outside ddpm/space/ (the scheduler, sampling, training, Hub I/O) imports neither the Space nor Gradio."""
    core = [p for p in PACKAGE.rglob("*.py") if "space" not in p.relative_to(PACKAGE).parts]
    leaks = {module_name(p): sorted(i for i in imports(p) if i.startswith(("ddpm.space", "gradio"))) for p in core}
    assert not {m: i for m, i in leaks.items() if i}, leaks
    assert len(core) >= 10


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """An import cycle of the graph (a depth-first search), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for nxt in sorted(edges[module]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[module] = 2
        return None

    return next((c for m in sorted(edges) if m not in state and (c := visit(m, [m]))), None)


def test_no_module_imports_itself_back():
    """No cycle in ddpm/ nor in benchmarks/ (imports inside functions count): checked here with Python's ast."""
    edges = graph(PACKAGE, BENCHMARKS)
    assert cycle(edges) is None, " -> ".join(cycle(edges))
    assert "ddpm.space.handlers" in edges and "ddpm.scheduler" in edges["ddpm.hub"]
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]  # the check can fail


def test_the_benchmarks_report_measures_nothing_and_the_harness_knows_no_experiment():
    """benchmarks/: experiments import the harness, the metrics and the report; the report (all the prose) and the
    shared parts import no experiment, so no measurement hides in a sentence and no sentence in a measurement."""
    edges = graph(PACKAGE, BENCHMARKS)
    shared = {"benchmarks.harness", "benchmarks.metrics"}
    for module in ("benchmarks.report", *shared):
        assert {i for i in edges[module] if i.startswith("benchmarks.")} <= shared, module
    experiments = {m for m in edges if m.startswith("benchmarks.")} - shared - {"benchmarks.report", "benchmarks"}
    assert {"benchmarks.fashion", "benchmarks.served", "benchmarks.gpu", "benchmarks.ddim_gap"} <= experiments
    assert "benchmarks.report" in edges["benchmarks.__main__"]


def test_every_training_flag_has_its_help_beside_its_field():
    """train_accelerate.py's --help reads each flag's help from the TrainConfig field it sets (one place a flag)."""
    import dataclasses

    from ddpm.config import TrainConfig

    fields = dataclasses.fields(TrainConfig)
    assert len(fields) > 40
    assert not [f.name for f in fields if len(f.metadata.get("help", "")) < 8], "a field without help"
    assert "HELP" not in (ROOT / "train_accelerate.py").read_text()
