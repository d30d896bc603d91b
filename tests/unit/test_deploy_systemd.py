"""deploy/systemd: the units pass ``systemd-analyze verify``, and their ExecStart lines, with the example
environment files' values, are command lines granny's own argument parser accepts."""

from __future__ import annotations

import argparse
import configparser
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from granny.cli import build_parser, planner_config
from granny.config import ENV_SECRET, parse_address

REPO = Path(__file__).resolve().parents[2]
SYSTEMD = REPO / "deploy" / "systemd"
UNITS = {"granny-planner.service": "planner.env.example", "granny-worker.service": "worker.env.example"}
INSTALLED = "/opt/granny/bin/granny"  # where the units (and docs/operations.md) install granny


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string((SYSTEMD / name).read_text())
    return parser


def env_file(name: str) -> dict[str, str]:
    values = {}
    for line in (SYSTEMD / name).read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def exec_argv(name: str, env: dict[str, str]) -> list[str]:
    """ExecStart as systemd runs it: ``${VAR}`` is one argument, a lone ``$VAR`` word is split at whitespace."""
    words = shlex.split(unit(name)["Service"]["ExecStart"])
    argv: list[str] = []
    for word in words:
        if re.fullmatch(r"\$\w+", word):
            argv += env[word[1:]].split()
        else:
            argv.append(re.sub(r"\$\{(\w+)\}", lambda m: env[m[1]], word))
    return argv


def parsed(name: str, **extra: str) -> argparse.Namespace:
    argv = exec_argv(name, env_file(UNITS[name]) | extra)
    assert argv[0] == INSTALLED
    return build_parser().parse_args(argv[1:])


def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (scripts/test installs it)")
    granny = Path(sys.executable).with_name("granny")
    assert granny.exists()
    for name in UNITS:  # verify wants the program to exist: point it at this venv's granny
        (tmp_path / name).write_text((SYSTEMD / name).read_text().replace(INSTALLED, str(granny)))
    proc = subprocess.run([analyze, "verify", *(str(tmp_path / n) for n in UNITS)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


def test_the_planner_unit_runs_a_real_planner_command_with_its_data_in_the_state_directory() -> None:
    args = parsed("granny-planner.service")
    assert args.command == "planner" and args.bind == env_file("planner.env.example")["PLANNER_BIND"]
    config = planner_config(args)
    service = unit("granny-planner.service")["Service"]
    assert str(config.data_dir) == "/var/lib/" + service["StateDirectory"]
    assert service["StateDirectoryMode"] == "0700" and service["Restart"] == "on-failure"
    assert service["EnvironmentFile"] == "/etc/granny/planner.env"


def test_extra_flags_in_the_environment_file_reach_the_planner() -> None:
    args = parsed("granny-planner.service", PLANNER_ARGS="--policy spot --retain 2h")
    assert args.policy == "spot" and planner_config(args).retain == 7200


def test_the_worker_unit_runs_a_real_worker_command_with_the_secret_from_its_environment_file() -> None:
    env = env_file("worker.env.example")
    args = parsed("granny-worker.service")
    assert args.command == "worker" and args.secret_file is None
    parse_address(args.planner, "--planner")
    assert ENV_SECRET in env, "the worker reads the cluster secret from its environment"
    service = unit("granny-worker.service")["Service"]
    assert service["EnvironmentFile"] == "/etc/granny/worker.env" and service["Restart"] == "on-failure"
    assert "GRANNY_SECRET" not in service.get("ExecStart", "")  # never on a command line (ps shows those)
    args = parsed("granny-worker.service", WORKER_ARGS="--slots 15 --host-id vm-7")
    assert (args.slots, args.host_id) == (15, "vm-7")
