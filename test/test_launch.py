"""launch/fusion.launch.py, checked statically: `launch`/`launch_ros` are not installable here.

The file must still be right for ROS 2 installs, so its structure is read with `ast`:
the launch arguments it declares, the executable it starts and the config it points to
must match setup.py and config/.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / "launch" / "fusion.launch.py"
EXPECTED_ARGUMENTS = {"params_file", "model_path", "namespace", "use_sim_time", "log_level", "device"}


@pytest.fixture(scope="module")
def tree() -> ast.Module:
    return ast.parse(LAUNCH_FILE.read_text(), filename=str(LAUNCH_FILE))


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        node for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == name
    ]


def _first_string_args(calls: list[ast.Call]) -> list[str]:
    return [call.args[0].value for call in calls if call.args and isinstance(call.args[0], ast.Constant)]


def _keyword(call: ast.Call, name: str) -> object:
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value.value if isinstance(keyword.value, ast.Constant) else keyword.value
    raise AssertionError(f"{name}= missing")


def _console_scripts() -> set[str]:
    setup = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(setup):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    return {item.value.split("=")[0].strip() for item in value.elts}
    raise AssertionError("setup.py defines no console_scripts")


def test_defines_generate_launch_description(tree: ast.Module) -> None:
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert "generate_launch_description" in functions


def test_declares_exactly_the_documented_arguments(tree: ast.Module) -> None:
    declared = _first_string_args(_calls(tree, "DeclareLaunchArgument"))
    assert sorted(declared) == sorted(EXPECTED_ARGUMENTS)
    # Every LaunchConfiguration used refers to a declared argument (a typo would be a runtime error).
    assert set(_first_string_args(_calls(tree, "LaunchConfiguration"))) <= EXPECTED_ARGUMENTS


def test_starts_an_installed_executable_as_m2vae_fusion(tree: ast.Module) -> None:
    (node,) = _calls(tree, "Node")
    assert _keyword(node, "package") == "m2vae_ros"
    assert _keyword(node, "executable") in _console_scripts()
    assert _keyword(node, "name") == "m2vae_fusion"
    assert _keyword(node, "output") == "screen"


def test_default_params_file_exists_and_is_a_ros_params_file(tree: ast.Module) -> None:
    # os.path.join(get_package_share_directory("m2vae_ros"), "config", "fusion.yaml"): the constant
    # parts are the path inside the share directory, which setup.py fills from the repository's config/.
    joined = [[a.value for a in call.args if isinstance(a, ast.Constant)] for call in _calls(tree, "join")]
    (relative,) = [parts for parts in joined if parts and str(parts[-1]).endswith(".yaml")]
    params_file = REPO.joinpath(*relative)
    assert params_file.is_file() and relative[0] == "config"
    params = yaml.safe_load(params_file.read_text())
    assert set(params) == {"/**"} and "ros__parameters" in params["/**"]


def _optional_overrides(tree: ast.Module) -> set[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "OPTIONAL_OVERRIDES":
            return {key.value for key in node.value.keys}
    raise AssertionError("OPTIONAL_OVERRIDES missing")


def test_optional_overrides_default_to_the_params_file(tree: ast.Module) -> None:
    # A non-empty default would silently replace the user's params_file value.
    declared = {call.args[0].value: call for call in _calls(tree, "DeclareLaunchArgument")}
    optional = _optional_overrides(tree)
    assert optional == {"device", "use_sim_time"}
    for name in optional:
        assert _keyword(declared[name], "default_value") == ""


def test_model_path_is_passed_as_a_string(tree: ast.Module) -> None:
    # Untyped, launch YAML-parses the value: model_path:=2024 would reach the node as an int.
    (overrides,) = [node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
                    and getattr(node.targets[0], "id", None) == "overrides"]
    model_path = dict(zip((key.value for key in overrides.keys), overrides.values, strict=True))["model_path"]
    assert isinstance(model_path, ast.Call) and model_path.func.id == "ParameterValue"
    assert _first_string_args(_calls(model_path, "LaunchConfiguration")) == ["model_path"]
    assert _keyword(model_path, "value_type").id == "str"
