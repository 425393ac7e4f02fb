"""The package's dependencies point one way: CLI -> workflows -> stage families -> execution -> LLM -> core.

Every `import` in src/xinstruct is read, those inside functions included (a lazy import is still a
dependency), and the test fails on an import cycle, on an import of a higher layer, on a module that no
layer claims (a new top-level module has to be placed here, on purpose), and on a private name (`_helper`)
imported from another part of the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import xinstruct

SRC = Path(xinstruct.__file__).parent
LAYERS = ("core", "llm", "execution", "family", "workflow", "cli")  # low to high
CORE = {"xinstruct", "xinstruct.records", "xinstruct.io", "xinstruct.languages", "xinstruct.config",
        "xinstruct.langid", "xinstruct.parsers", "xinstruct.markdown", "xinstruct.rows", "xinstruct.prompts",
        "xinstruct.data"}
FAMILIES = ("curate", "train", "evaluate", "serve")
WORKFLOWS = ("experiment",)  # compose the families: train arms, then evaluate them
# Imports between stage families, each on purpose: the backward model learns curation's generation prompt
# from its input pairs, and DPO's preferences are curation's judge's verdicts.
BETWEEN_FAMILIES = {("train", "curate")}


def module_name(path: Path, root: Path = SRC) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(mod: str) -> str | None:
    parts = mod.split(".")
    if mod in ("xinstruct.cli", "xinstruct.cliargs", "xinstruct.__main__") or (
            len(parts) == 3 and parts[1] in FAMILIES + WORKFLOWS and parts[2] == "cli"):
        return "cli"
    if mod in CORE or any(mod.startswith(c + ".") for c in CORE - {"xinstruct"}):
        return "core"
    if len(parts) > 1 and parts[1] == "llm":
        return "llm"
    if len(parts) > 1 and parts[1] == "execution":
        return "execution"
    if len(parts) > 1 and parts[1] in FAMILIES:
        return "family"
    if len(parts) > 1 and parts[1] in WORKFLOWS:
        return "workflow"
    return None


def imports(source: str, mod: str, is_package: bool = False) -> list[tuple[str, list[str], int]]:
    """(imported xinstruct module, names imported from it, line) for every import statement in `source`, at
    any depth."""
    out: list[tuple[str, list[str], int]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "xinstruct"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package
                pkg = mod.split(".") if is_package else mod.split(".")[:-1]
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] == "xinstruct":
                out.append((base, [a.name for a in node.names], node.lineno))
    return out


def graph(root: Path = SRC) -> dict[str, list[tuple[str, int]]]:
    """Module -> (module it imports, line); `from package import module` counts as importing the module."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    out = {}
    for mod, p in files.items():
        deps = []
        for base, names, line in imports(p.read_text(encoding="utf-8"), mod, p.name == "__init__.py"):
            subs = [f"{base}.{n}" for n in names if f"{base}.{n}" in files]
            deps += [(d, line) for d in subs] if subs and len(subs) == len(names) else [(base, line)]
        out[mod] = deps
    return out


def violations(g: dict[str, list[tuple[str, int]]]) -> list[str]:
    bad = []
    for mod, deps in g.items():
        a = layer(mod)
        if a is None:
            bad.append(f"{mod}: no layer claims it (add it to tests/test_layers.py)")
            continue
        for dep, line in deps:
            b = layer(dep)
            if b is None or dep == mod:
                continue
            if LAYERS.index(b) > LAYERS.index(a):
                bad.append(f"{mod}:{line} imports {dep}: {a} -> {b} is upward")
            elif a == b == "family":
                fa, fb = mod.split(".")[1], dep.split(".")[1]
                if fa != fb and (fa, fb) not in BETWEEN_FAMILIES:
                    bad.append(f"{mod}:{line} imports {dep}: {fa} -> {fb} between stage families")
    return bad


def cycles(g: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """The import cycles among the package's modules (strongly connected components of two or more, or a
    module importing itself)."""
    edges = {m: sorted({d for d, _ in deps if d in g}) for m, deps in g.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in edges[v]:
                out.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def private_imports(root: Path = SRC) -> list[str]:
    """`from A import _name` where A is in another part of the package (`xinstruct.X...` vs `xinstruct.Y...`):
    a private helper used across parts belongs in a module both may import, under a public name."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    def part(m: str) -> str:
        return m.split(".")[1] if m.count(".") else ""

    bad = []
    for mod, p in files.items():
        for base, names, line in imports(p.read_text(encoding="utf-8"), mod, p.name == "__init__.py"):
            for n in names:
                if n.startswith("_") and not n.startswith("__") and part(base) != part(mod):
                    bad.append(f"{mod}:{line} imports {base}.{n}")
    return bad


def test_the_package_has_no_import_cycle_and_no_upward_import():
    g = graph()
    assert len(g) > 50  # the walk found the package
    assert not cycles(g), f"import cycles: {cycles(g)}"
    assert not violations(g), "\n".join(violations(g))
    assert not private_imports(), private_imports()


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "xinstruct"
    for name, text in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return root


def test_the_walk_finds_an_upward_import_hidden_inside_a_function(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "records.py": "def f():\n    from xinstruct.curate.job import run_pipeline\n",
        "llm/__init__.py": "",
        "llm/hf.py": "from .artifacts import read_model_meta\n",
        "llm/artifacts.py": "",
        "curate/__init__.py": "",
        "curate/job.py": "",
        "serve/chat.py": "def g():\n    import xinstruct.evaluate.runner\n",
        "serve/cli.py": "from xinstruct.evaluate.cli import _model_flags\nfrom xinstruct.serve.chat import _own\n",
        "evaluate/runner.py": "",
        "stray.py": "",
    })
    g = graph(root)
    assert g["xinstruct.llm.hf"] == [("xinstruct.llm.artifacts", 1)]  # a relative import, resolved
    found = violations(g)
    assert any(v.startswith("xinstruct.records:2 imports xinstruct.curate.job: core -> family") for v in found)
    assert any("serve -> evaluate between stage families" in v for v in found)
    assert any(v.startswith("xinstruct.stray: no layer") for v in found)
    assert len(found) == 3  # serve/cli.py -> evaluate/cli.py is within the CLI layer
    assert private_imports(root) == ["xinstruct.serve.cli:1 imports xinstruct.evaluate.cli._model_flags"]


@pytest.mark.parametrize("files, cycle", [
    ({"a.py": "import xinstruct.b\n", "b.py": "def f():\n    import xinstruct.a\n"}, ["xinstruct.a", "xinstruct.b"]),
    ({"a.py": "from xinstruct.b import x\n", "b.py": "def f():\n    from xinstruct import a\n"},
     ["xinstruct.a", "xinstruct.b"]),
    ({"a.py": "import xinstruct.b\n", "b.py": ""}, None),
])
def test_the_walk_finds_a_cycle_through_a_function_level_import(tmp_path, files, cycle):
    g = graph(_package(tmp_path, {"__init__.py": "", **files}))
    assert cycles(g) == ([cycle] if cycle else [])


def test_no_module_but_a_backends_own_and_the_registry_branches_on_a_backends_name():
    """What differs between backends (shard and batch sizes, scoring options, Ray resources, how the engine is
    built) lives in each backend's `SPEC` (`xinstruct.llm.backends`): a backend's name compared, or used as a key,
    anywhere else is knowledge in a second place."""
    from xinstruct.llm import BACKENDS

    own = {"xinstruct.llm", "xinstruct.llm.backends", "xinstruct.llm.llamacpp", "xinstruct.llm.hf",
           "xinstruct.llm.vllm", "xinstruct.llm.openai_compat"}
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if module_name(path) in own:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                values = [node.left, *node.comparators]
            elif isinstance(node, ast.Dict):
                values = [k for k in node.keys if k is not None]
            else:
                continue
            names = {c.value for v in values for c in ast.walk(v) if isinstance(c, ast.Constant)}
            if names & set(BACKENDS):
                found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not found, found


def test_no_function_is_longer_than_a_screen_and_a_half():
    """80 lines at most: a function a newcomer reads in one go (the curate job's loop is one of them)."""
    long = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} "
                            f"({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long
