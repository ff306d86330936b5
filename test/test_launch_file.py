"""launch/localize.launch.py names the installed ``localize`` executable and config/localize.yaml.

``launch`` and ``launch_ros`` cannot be installed here, so the launch file is read with ``ast``:
the checks cover what ``ros2 launch vbl localize.launch.py`` depends on (package, executable,
params file, remappings, described arguments, overrides forwarded only when given, the Fast DDS
profile, the launch ending with the node and failing with it); test_node.py runs the executable
the same way, and checks that a bad parameter makes it exit non-zero.
"""

from __future__ import annotations

import ast
import dataclasses
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
    """Names of the ``LaunchConfiguration("literal")`` calls (the overrides are read in a loop)."""
    return {
        call.args[0].value
        for call in _calls(tree, "LaunchConfiguration")
        if isinstance(call.args[0], ast.Constant)
    }


def _function(tree: ast.Module, name: str) -> ast.FunctionDef:
    (function,) = [f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == name]
    return function


def _resolve(tree: ast.AST, expr: ast.expr) -> ast.expr:
    """The value assigned to a local name (the launch file names a few sub-expressions)."""
    if not isinstance(expr, ast.Name):
        return expr
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == expr.id for t in node.targets):
            return node.value
    raise AssertionError(f"{expr.id} is not assigned in the launch file")


def _arguments(tree: ast.AST) -> dict[str, dict[str, ast.expr]]:
    return {ast.literal_eval(c.args[0]): _keywords(c) for c in _calls(tree, "DeclareLaunchArgument")}


def _overrides(tree: ast.Module) -> dict[str, str]:
    """The OVERRIDES table: argument name -> parameter type name."""
    (assign,) = [
        n for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "OVERRIDES"
    ]
    assert isinstance(assign.value, ast.Dict)
    return {
        ast.literal_eval(k): v.id
        for k, v in zip(assign.value.keys, assign.value.values, strict=True)
        if isinstance(v, ast.Name)
    }


@pytest.fixture(scope="module")
def tree() -> ast.Module:
    return ast.parse(LAUNCH.read_text(), filename=str(LAUNCH))


def test_defines_generate_launch_description(tree: ast.Module) -> None:
    names = [f.name for f in tree.body if isinstance(f, ast.FunctionDef)]
    assert "generate_launch_description" in names
    imported = {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names
    }
    assert {"LaunchDescription", "DeclareLaunchArgument", "Node", "OpaqueFunction", "Shutdown"} <= imported


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
    arguments = _arguments(tree)
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
    arguments = _arguments(tree)
    assert {"params_file", "map", "model", "image_topic", "device", "fastdds_profile"} <= set(arguments)
    for name, kwargs in arguments.items():
        description = ast.literal_eval(kwargs["description"])
        assert len(description) > 15, f"launch argument {name!r} lacks a description"
        assert "vbl train" not in description, "no message may name a command that does not exist"
    # every argument used, none undeclared: by name, or through the OVERRIDES loop
    assert _launch_configurations(tree) | set(_overrides(tree)) == set(arguments)
    from vbl_ros.ros.params import DEVICES, IMAGE_QOS, IMAGE_TRANSPORTS

    # the node checks the values (one place says what is valid); the descriptions name them all
    for name, choices in (
        ("device", DEVICES),
        ("image_transport", IMAGE_TRANSPORTS),
        ("image_qos", IMAGE_QOS),
    ):
        description = ast.literal_eval(arguments[name]["description"])
        assert all(choice in description for choice in choices), (name, description)


def test_overrides_are_node_parameters_forwarded_only_when_given(tree: ast.Module) -> None:
    """Empty-default arguments reach the node only when set: the params file decides otherwise."""
    from vbl_ros.ros.params import parameter_table

    overrides = _overrides(tree)
    table = {name: ptype for name, ptype, _default, _ in parameter_table()}
    python_types = {"string": "str", "integer": "int", "double": "float", "bool": "bool"}
    assert {"map", "model", "device", "image_transport", "image_qos", "inference_threads"} <= set(overrides)
    for name, value_type in overrides.items():
        assert python_types[table[name]] == value_type, f"{name}: the node declares a {table[name]}"
    arguments = _arguments(tree)
    for name in overrides:
        assert ast.literal_eval(arguments[name]["default_value"]) == "", f"{name} is not empty by default"
    # inside the OpaqueFunction: each argument is performed and kept only when not empty
    function = _function(tree, "localize_node")
    (opaque,) = _calls(tree, "OpaqueFunction")
    assert getattr(_keywords(opaque)["function"], "id", None) == "localize_node"
    comparisons = [
        c
        for c in ast.walk(function)
        if isinstance(c, ast.Compare)
        and isinstance(c.ops[0], ast.NotEq)
        and isinstance(c.comparators[0], ast.Constant)
        and c.comparators[0].value == ""
    ]
    assert comparisons, "overrides must be skipped when empty"
    assert _calls(function, "perform") and _calls(function, "ParameterValue")


def test_the_launch_ends_with_the_node_and_fails_with_it(tree: ast.Module) -> None:
    """``on_exit``: a Shutdown when the node ended cleanly; an exception (launch exits 1) otherwise."""
    (node,) = _calls(tree, "Node")
    on_exit = _keywords(node)["on_exit"]
    assert isinstance(on_exit, ast.Name)
    handler = _function(tree, on_exit.id)
    assert [a.arg for a in handler.args.args] == ["event", "context"]
    (check,) = [n for n in ast.walk(handler) if isinstance(n, ast.If)]
    assert "event.returncode" in ast.unparse(check.test) and "!= 0" in ast.unparse(check.test)
    assert isinstance(check.body[0], ast.Raise), "a failed node must fail the launch"
    assert _calls(handler, "Shutdown"), "the launch must end when the node ends"


def test_the_node_gets_the_fastdds_profile_for_large_frames(tree: ast.Module) -> None:
    from vbl_ros.ros.middleware import FASTDDS_PROFILE, PROFILE_VARIABLE

    arguments = _arguments(tree)
    default = _resolve(tree, arguments["fastdds_profile"]["default_value"])
    (env,) = _calls(default, "EnvironmentVariable")
    assert ast.literal_eval(env.args[0]) == PROFILE_VARIABLE  # a robot-wide profile is kept
    (share,) = _calls(default, "FindPackageShare")
    path_join = _calls(default, "PathJoinSubstitution")[0]
    assert ast.literal_eval(share.args[0]) == "vbl"
    assert Path(*[ast.literal_eval(e) for e in path_join.args[0].elts[1:]]) == Path(FASTDDS_PROFILE)
    assert (REPO / FASTDDS_PROFILE).is_file()
    assert 'glob("config/*.xml")' in (REPO / "setup.py").read_text()
    (node,) = _calls(tree, "Node")
    additional_env = _keywords(node)["additional_env"]
    assert PROFILE_VARIABLE in ast.unparse(additional_env)


def test_image_topic_is_remapped(tree: ast.Module) -> None:
    (node,) = _calls(tree, "Node")
    kwargs = _keywords(node)
    remappings = {
        ast.literal_eval(t.elts[0]): ast.literal_eval(t.elts[1].args[0]) for t in kwargs["remappings"].elts
    }
    assert remappings == {"image": "image_topic", "odometry": "odometry_topic"}


def test_config_sets_every_parameter_to_the_nodes_default() -> None:
    """config/localize.yaml states the defaults of NodeParams and LocalizerConfig, nothing else."""
    from vbl_ros.localizer import LocalizerConfig
    from vbl_ros.ros.params import NodeParams, parameter_table

    data = yaml.safe_load(CONFIG.read_text())
    params = data["/**"]["ros__parameters"]
    table = {name: (ptype, default) for name, ptype, default, _ in parameter_table()}
    assert set(params) == set(table), "config/localize.yaml should list every parameter"
    python_types = {"string": str, "integer": int, "double": float, "bool": bool}
    for name, value in params.items():
        ptype = table[name][0]
        assert type(value) is python_types[ptype], f"{name}: {value!r} is not a {ptype}"
    defaults = dataclasses.asdict(NodeParams()) | dataclasses.asdict(LocalizerConfig())
    differing = {name: (value, defaults[name]) for name, value in params.items() if value != defaults[name]}
    assert not differing, f"config/localize.yaml differs from the code's defaults (yaml, code): {differing}"
    assert "vbl train" not in CONFIG.read_text()
