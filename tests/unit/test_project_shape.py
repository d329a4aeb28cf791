"""The shape DEVELOPERS.md fixes, checked so a later change cannot quietly break it."""

from __future__ import annotations

import ast
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_core_never_imports_azure_functions_functions_or_devtools() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            name
            for name in _imports(path)
            if name.split(".")[0] in {"functions", "devtools"} or name.startswith("azure.functions")
        )
        for path in (ROOT / "core").rglob("*.py")
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_function_app_only_registers_blueprints() -> None:
    tree = ast.parse((ROOT / "function_app.py").read_text(encoding="utf-8"))
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    calls = [n for n in tree.body[1:] if isinstance(n, ast.Expr)]  # [0] is the docstring
    assert calls, "no blueprint registered"
    for stmt in calls:
        assert isinstance(stmt.value, ast.Call)
        assert ast.unparse(stmt.value.func) == "app.register_functions"


def test_every_blueprint_module_is_registered() -> None:
    registered = {
        ast.unparse(n.args[0]).split(".")[0]
        for n in ast.walk(ast.parse((ROOT / "function_app.py").read_text(encoding="utf-8")))
        if isinstance(n, ast.Call) and ast.unparse(n.func) == "app.register_functions"
    }
    with_blueprint = {
        p.stem
        for p in (ROOT / "functions").glob("*.py")
        if "func.Blueprint()" in p.read_text(encoding="utf-8")
    }
    assert with_blueprint == registered


def test_host_json_has_the_bundle_queue_retries_and_unsampled_requests() -> None:
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    assert host["version"] == "2.0"
    assert host["extensionBundle"]["version"] == "[4.*, 5.0.0)"
    queues = host["extensions"]["queues"]
    assert queues["maxDequeueCount"] == 5
    assert queues["messageEncoding"] == "base64"
    h, m, s = (int(x) for x in queues["maxPollingInterval"].split(":"))
    assert h * 3600 + m * 60 + s <= 10
    excluded = host["logging"]["applicationInsights"]["samplingSettings"]["excludedTypes"].split(";")
    assert "Request" in excluded


def test_runtime_requirements_hold_the_fixed_dependencies() -> None:
    lines = (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    names = {
        line.split(">")[0].split("<")[0].split("=")[0].strip() for line in lines if line and line[0] != "#"
    }
    assert {
        "azure-functions",
        "azure-identity",
        "msgraph-sdk",
        "azure-data-tables",
        "azure-storage-queue",
        "azure-keyvault-secrets",
    } <= names
    dev = (ROOT / "requirements-dev.txt").read_text(encoding="utf-8")
    assert "-r requirements.txt" in dev
    assert "pytest-mock" in dev


def test_deployment_package_leaves_out_dev_tools_and_local_settings() -> None:
    ignored = set((ROOT / ".funcignore").read_text(encoding="utf-8").split())
    assert {"devtools/", "tests/", "node_modules/", ".venv/", "local.settings.json"} <= ignored
