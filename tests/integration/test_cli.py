"""The command line as a user meets it: a user's mistake or an unusable AWS is one `error:` line on
stderr and a documented exit code (tools/cli.py), never a traceback; every command says how to use
it, with an example."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from moto import mock_aws

from tools import cli
from tools.__main__ import main, parser
from tools.template import ROOT

COMMANDS = ["run", "demo", "send", "show", "invoke", "redrive", "erase", "export", "find"]


@pytest.fixture
def no_aws_setup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A machine with no AWS configuration at all: no region, no credentials, no config files, and
    botocore kept off the instance-metadata address (it would otherwise look there for credentials)."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("EBBOT_LOCAL_DIR", str(tmp_path / "no-stack"))
    return tmp_path


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ")
    return line


def test_redrive_local_without_a_running_stack(
    no_aws_setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["redrive", "--local"]) == cli.USER_ERROR
    assert "the local stack is not running" in _error_line(capsys)


def test_redrive_a_deployed_stack_with_no_region(
    no_aws_setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["redrive", "--stack", "ebbot-webhooks-prod"]) == cli.AWS_ERROR
    assert "no AWS region: pass --region" in _error_line(capsys)


def test_redrive_a_deployed_stack_with_no_credentials(
    no_aws_setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["redrive", "--stack", "ebbot-webhooks-prod", "--region", "eu-north-1"]) == cli.AWS_ERROR
    assert "no AWS credentials" in _error_line(capsys)


def test_redrive_when_the_endpoint_does_not_answer(
    no_aws_setup: Path, closed_port: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    assert main(["redrive", "--stack", "ebbot-webhooks-prod", "--region", "eu-north-1"]) == cli.AWS_ERROR
    assert f"cannot reach http://127.0.0.1:{closed_port}" in _error_line(capsys)


def test_redrive_a_stack_that_does_not_exist(no_aws_setup: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # moto answers DescribeStacks for an unknown name as CloudFormation does: ValidationError.
    with mock_aws():
        code = main(["redrive", "--stack", "no-such-stack", "--region", "eu-north-1"])
    assert code == cli.AWS_ERROR
    line = _error_line(capsys)
    assert "AWS refused DescribeStacks: ValidationError" in line
    assert "no-such-stack" in line


def test_redrive_needs_to_know_where(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["redrive"])
    assert exited.value.code == cli.USER_ERROR
    assert "one of the arguments --local --stack is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["redrive", "--local", "--stack", "x"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_load_without_a_running_stack(no_aws_setup: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tools.load import main as load_main

    assert load_main(["--chats", "1"]) == cli.USER_ERROR
    assert "the local stack is not running" in _error_line(capsys)
    with pytest.raises(SystemExit) as exited:
        load_main(["--chats", "0"])
    assert exited.value.code == cli.USER_ERROR
    assert "must be 1 or more" in capsys.readouterr().err


def test_interrupt_is_one_line_and_130(capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted() -> int:
        raise KeyboardInterrupt

    assert cli.run(interrupted) == cli.INTERRUPTED
    assert _error_line(capsys) == "error: interrupted"


def test_a_programming_error_is_not_hidden() -> None:
    # Only a user's or AWS's error becomes a line; a bug still shows its traceback.
    def broken() -> int:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        cli.run(broken)


def test_every_command_explains_itself_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    top = parser().format_help()
    for command in COMMANDS:
        assert f"ebbot-webhooks {command}" in top
        with pytest.raises(SystemExit) as exited:
            main([command, "--help"])
        assert exited.value.code == 0
        help_text = capsys.readouterr().out
        assert f"usage: ebbot-webhooks {command}" in help_text
        example = help_text.split("example:\n", 1)[1].splitlines()[0]
        assert f"ebbot-webhooks {command}" in example


def test_the_installed_command_is_the_module() -> None:
    # `make setup` installs the project's one console script into .venv/bin.
    (script,) = entry_points(group="console_scripts", name="ebbot-webhooks")
    assert script.load() is main
    installed = Path(sys.executable).parent / "ebbot-webhooks"
    result = subprocess.run(
        [str(installed), "show"],
        cwd=ROOT,
        env={**os.environ, "EBBOT_LOCAL_DIR": str(ROOT / ".local" / "no-such-dir")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == cli.USER_ERROR
    assert result.stderr.startswith("error: the local stack is not running")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["erase", "--chat", "c-1", "--local"],
        ["export", "--chat", "c-1", "--local"],
        ["find", "--user", "u-1", "--local"],
    ],
)
def test_the_personal_data_commands_without_a_running_stack(
    args: list[str], no_aws_setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == cli.USER_ERROR
    line = _error_line(capsys)
    assert "the local stack is not running" in line
    assert "c-1" not in line  # nor does an error repeat the chat or user asked about


@pytest.mark.parametrize("command", ["erase", "export", "find"])
def test_the_personal_data_commands_need_a_target_and_an_id(command: str) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--local"])  # no --chat / --user
    assert exited.value.code == 2
