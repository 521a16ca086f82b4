"""The backend's layout is its architecture (docs/architecture.md): these tests hold the code to it.

Each subpackage may import only the layers below it; only the emulator imports moto, and only aws/session.py
imports boto3; the compiler is pure; a local run loads no AWS code at all; modules and functions stay short.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "inst" / "python" / "metaflow_r"
# What each part of the backend may import of the backend, lowest layer first. The S3 datastore reaches AWS
# through the one session and error translation (aws.session, aws.errors), which import only core.
ALLOWED = {
    "core": set(),
    "aws.session": {"core"},
    "aws.errors": {"core"},
    "datastore": {"core", "aws.session", "aws.errors"},
    "runtime": {"core", "datastore"},
    "report": {"core", "datastore"},
    "client": {"core", "datastore", "runtime", "report"},
    "aws": {"core", "datastore", "runtime", "aws", "aws.session", "aws.errors"},
    "emulator": {"core", "emulator", "aws"},  # the strict emulator checks requests by aws/requests' rules
    "cli": {"core", "datastore", "runtime", "report", "aws", "aws.session", "aws.errors", "emulator", "cli"},
}
THIRD_PARTY_ONLY_IN = {"moto": ("emulator",), "boto3": ("aws.session", "emulator"),
                       "botocore": ("aws.session", "aws.errors", "emulator")}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), str(path))
    return found


def imported(tree: ast.Module) -> set[str]:
    """Every module ``tree`` imports, at its top or inside a function (lazy imports count too)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, "imports within the backend are absolute, so their layer shows"
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def part(module: str) -> str:
    """The part of the backend ``module`` (relative to metaflow_r) belongs to, as ALLOWED names them."""
    for candidate in sorted(ALLOWED, key=len, reverse=True):
        if module == candidate or module.startswith(candidate + "."):
            return candidate
    return module


def test_every_module_imports_only_the_layers_below_it():
    wrong = []
    for module, tree in modules().items():
        if module == "":  # the package's face: lazy names of every layer
            continue
        mine = part(module)
        for name in imported(tree):
            if name.startswith("metaflow_r.") and name.count(".") >= 1:
                target = part(name.removeprefix("metaflow_r."))
                if target in ALLOWED and target != mine and target not in ALLOWED[mine]:
                    wrong.append(f"{module} ({mine}) imports {name} ({target})")
    assert wrong == []


def test_the_layer_table_knows_every_subpackage():
    parts = {part(module) for module in modules() if module}
    assert parts <= set(ALLOWED), parts - set(ALLOWED)
    assert {"core", "datastore", "runtime", "report", "client", "aws", "cli", "emulator"} <= parts


@pytest.mark.parametrize("library, homes", sorted(THIRD_PARTY_ONLY_IN.items()))
def test_an_aws_library_is_imported_only_where_it_belongs(library, homes):
    importers = sorted(module for module, tree in modules().items()
                       if any(name == library or name.startswith(library + ".") for name in imported(tree)))
    assert importers, f"no module imports {library}: the rule no longer means anything"
    assert [m for m in importers if part(m) not in homes and not any(m.startswith(h) for h in homes)] == []


def test_the_compiler_is_pure():
    tree = modules()["aws.step_functions.compile"]
    outside = {name for name in imported(tree) if not name.startswith("metaflow_r.")}
    assert outside <= {"__future__", "re", "dataclasses", "typing", "__future__.annotations",
                       "dataclasses.dataclass", "dataclasses.field", "typing.Any"}, outside
    backend = {part(n.removeprefix("metaflow_r.")) for n in imported(tree) if n.startswith("metaflow_r.")}
    assert backend <= {"core", "datastore", "aws"}
    assert not {n for n in imported(tree) if n.startswith(("metaflow_r.datastore.flow", "metaflow_r.datastore.s3",
                                                           "metaflow_r.aws.session", "metaflow_r.aws.errors"))}


def test_modules_and_functions_are_short():
    long = []
    for module, tree in modules().items():
        lines = tree.body[-1].end_lineno if tree.body else 0
        if lines >= MAX_MODULE_LINES:
            long.append(f"module {module}: {lines} lines")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length >= MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name}: {length} lines")
    assert long == []


def test_a_local_run_loads_no_aws_code(tmp_path):
    """Not only the imports the rules above see: what a real local run of the seed's ParameterFlow has
    loaded when it ends."""
    script = ROOT / "examples" / "parameter_flow.R"
    spec = subprocess.run(["Rscript", str(script), "spec"], capture_output=True, text=True, cwd=tmp_path, check=True)
    program = (
        "import json, sys\n"
        "from metaflow_r.cli import main\n"
        f"code = main(['run', '--alpha', '0.5'], {spec.stdout!r}, {{'launch_dir': {str(tmp_path)!r}}})\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'moto')\n"
        "                or m.startswith(('metaflow_r.aws', 'metaflow_r.emulator')))\n"
        "print(json.dumps([code, loaded]))\n")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=tmp_path)
    assert "alpha is 0.5" in done.stdout, done.stdout + done.stderr
    code, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert code == 0, done.stderr
    assert loaded == []


def test_r_files_and_functions_are_short():
    """The same rule for the R package's files and functions (R parses them)."""
    program = """
    for (f in list.files("R", full.names = TRUE)) {
      n <- length(readLines(f))
      if (n >= %d) cat(sprintf("file %%s: %%d lines\\n", f, n))
      data <- utils::getParseData(parse(f, keep.source = TRUE))
      for (id in data$parent[data$token == "FUNCTION"]) {
        expr <- data[data$id == id, ]
        if (expr$line2 - expr$line1 + 1 >= %d) cat(sprintf("%%s:%%d: %%d lines\\n", f, expr$line1, expr$line2 - expr$line1 + 1))
      }
    }
    cat("checked\\n")
    """ % (MAX_MODULE_LINES, MAX_FUNCTION_LINES)
    done = subprocess.run(["Rscript", "-e", program], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.splitlines() == ["checked"], done.stdout
