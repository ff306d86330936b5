"""launch/localize.launch.py names the installed ``localize`` executable and config/localize.yaml.

``launch`` and ``launch_ros`` cannot be installed here, so the launch file is read with ``ast``:
the checks cover what ``ros2 launch vbl localize.launch.py`` depends on (package, executable,
params file, remappings, described arguments); test_node.py runs the executable the same way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch" / "localize.launch.py"
CONFIG = REPO / "config" / "localize.yaml"


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (getattr(node.func, "id", None) == name or getattr(node.func, "attr", None) == name)
    ]


def _keywords(call: ast.Call) -> dict[str, ast.expr]:
    return {kw.arg: kw.value for kw in call.keywords if kw.arg}


def _launch_configurations(tree: ast.AST) -> set[str]:
    return {ast.literal_eval(call.args[0]) for call in _calls(tree, "LaunchConfiguration")}


def _resolve(tree: ast.AST, expr: ast.expr) -> ast.expr:
    """The value assigned to a local name (the launch file names a few sub-expressions)."""
    if not isinstance(expr, ast.Name):
        return expr
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == expr.id for t in node.targets):
            return node.value
    raise AssertionError(f"{expr.id} is not assigned in the launch file")


@pytest.fixture(scope="module")
def tree() -> ast.Module:
    return ast.parse(LAUNCH.read_text(), filename=str(LAUNCH))


def test_defines_generate_launch_description(tree: ast.Module) -> None:
    names = [f.name for f in tree.body if isinstance(f, ast.FunctionDef)]
    assert "generate_launch_description" in names
    imported = {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names
    }
    assert {"LaunchDescription", "DeclareLaunchArgument", "Node"} <= imported


def test_node_is_the_installed_localize_executable(tree: ast.Module) -> None:
    (node,) = _calls(tree, "Node")
    kwargs = _keywords(node)
    assert ast.literal_eval(kwargs["package"]) == "vbl"
    executable = ast.literal_eval(kwargs["executable"])
    setup = ast.parse((REPO / "setup.py").read_text())
    scripts = [
        ast.literal_eval(elt)
        for call in _calls(setup, "setup")
        for kw in call.keywords
        if kw.arg == "entry_points"
        for key, value in zip(kw.value.keys, kw.value.values, strict=True)
        if ast.literal_eval(key) == "console_scripts"
        for elt in value.elts
    ]
    assert f"{executable} = vbl_ros.ros.localize_node:main" in [s.replace("  ", " ") for s in scripts]
    assert "script_dir=$base/lib/vbl" in (REPO / "setup.cfg").read_text()  # where ros2 launch looks


def test_params_file_argument_defaults_to_the_packaged_config(tree: ast.Module) -> None:
    arguments = {ast.literal_eval(c.args[0]): _keywords(c) for c in _calls(tree, "DeclareLaunchArgument")}
    default = _resolve(tree, arguments["params_file"]["default_value"])
    (share,) = _calls(default, "FindPackageShare")
    assert ast.literal_eval(share.args[0]) == "vbl"
    parts = [ast.literal_eval(e) for e in default.args[0].elts[1:]]
    assert Path(*parts) == CONFIG.relative_to(REPO)
    assert 'glob("config/*.yaml")' in (REPO / "setup.py").read_text()  # installed to share/vbl/config
    (node,) = _calls(tree, "Node")
    parameters = _keywords(node)["parameters"]
    first = parameters.elts[0]
    assert isinstance(first, ast.Call) and ast.literal_eval(first.args[0]) == "params_file"


def test_launch_arguments_are_described_and_used(tree: ast.Module) -> None:
    arguments = {ast.literal_eval(c.args[0]): _keywords(c) for c in _calls(tree, "DeclareLaunchArgument")}
    assert {"params_file", "map", "model", "image_topic", "device"} <= set(arguments)
    for name, kwargs in arguments.items():
        description = ast.literal_eval(kwargs["description"])
        assert len(description) > 15, f"launch argument {name!r} lacks a description"
    assert _launch_configurations(tree) == set(arguments)  # every argument used, none undeclared
    from vbl_ros.ros.params import DEVICES, IMAGE_TRANSPORTS

    assert tuple(ast.literal_eval(arguments["device"]["choices"])) == DEVICES
    assert tuple(ast.literal_eval(arguments["image_transport"]["choices"])) == IMAGE_TRANSPORTS


def test_image_topic_is_remapped_and_overrides_are_node_parameters(tree: ast.Module) -> None:
    (node,) = _calls(tree, "Node")
    kwargs = _keywords(node)
    remappings = {
        ast.literal_eval(t.elts[0]): ast.literal_eval(t.elts[1].args[0]) for t in kwargs["remappings"].elts
    }
    assert remappings == {"image": "image_topic", "odometry": "odometry_topic"}
    overrides = kwargs["parameters"].elts[1]
    from vbl_ros.ros.params import parameter_table

    names = {row[0] for row in parameter_table()}
    assert {ast.literal_eval(k) for k in overrides.keys} <= names


def test_config_sets_only_declared_parameters_with_their_types() -> None:
    from vbl_ros.ros.params import parameter_table

    data = yaml.safe_load(CONFIG.read_text())
    params = data["/**"]["ros__parameters"]
    table = {name: (ptype, default) for name, ptype, default, _ in parameter_table()}
    assert set(params) == set(table), "config/localize.yaml should list every parameter"
    python_types = {"string": str, "integer": int, "double": float, "bool": bool}
    for name, value in params.items():
        ptype = table[name][0]
        assert type(value) is python_types[ptype], f"{name}: {value!r} is not a {ptype}"
