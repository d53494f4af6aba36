"""Run a SAM template on this machine: moto's server, the stack from the template, each function
in a worker of its own, and the HTTP API in front.

Nothing here lists a table, bucket, rule or function: they come from the template through SAM's
translator and moto's CloudFormation (motostack.deploy). Everything about the project that runs it
comes in `Settings`; the state directory receives outputs.json (the stack's outputs, its AWS
endpoint and region, its HTTP API's URL), state.json and routes.json (for the workers), env.json
files for `sam local invoke`, and logs/.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from motostack.deploy import Clients, Deployment, StackError, deploy, http_routes, translate

REGION = "us-east-1"
STACK_NAME = "local"


class LocalStackError(Exception):
    """Something a user can fix; the message says what."""


@dataclass
class Settings:
    """Everything the engine needs to know, from the project that runs it."""

    template: Path
    state_dir: Path
    # An interpreter with aws-sam-translator (motostack.deploy.translate).
    sam_python: Path
    http_port: int = 3000
    aws_port: int = 4566
    # Logical id -> the generated string of a secret with GenerateSecretString (else random).
    secret_values: dict[str, str] = field(default_factory=dict)
    retry_delay_s: float = 0.2
    concurrency: int = 8
    # Modules each worker imports before its function's environment is set (heavy libraries).
    preload: tuple[str, ...] = ()
    # Where on the path each worker imports handlers from (a CodeUri's directory).
    python_path: tuple[Path, ...] = ()
    # The path in an event to the ISO-8601 instant its latency is measured from (GET /status).
    latency_since: tuple[str, ...] = ()
    # Names of the environment variables that set the ports, for the messages that name them.
    port_variables: tuple[str, str] = ("http_port", "aws_port")
    # Set in every worker, over the function's own environment (as a runtime's own settings).
    worker_environment: dict[str, str] = field(default_factory=dict)
    # moto's speed patches for its server (motostack.speedups.choose): "none", moto as it ships,
    # unless the caller opts in ("all", or "all,-name" to measure one patch's worth).
    speedups: str = "none"
    verbose: bool = True

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.aws_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _aws_environment(settings: Settings) -> dict[str, str]:
    """What every process needs to talk to moto, and only to moto."""
    return {
        "AWS_ENDPOINT_URL": settings.endpoint,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }


@dataclass
class LocalStack:
    settings: Settings
    deployment: Deployment | None
    moto: subprocess.Popen[bytes]
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list)

    def check_alive(self) -> str | None:
        """The name of a process that has exited, if any."""
        if self.moto.poll() is not None:
            return "moto server"
        return next((name for name, proc in self.workers.items() if proc.poll() is not None), None)

    def stop(self) -> None:
        # The functions first, while moto still answers their last calls; then moto.
        for group in (list(self.workers.values()), [self.moto]):
            for proc in group:
                if proc.poll() is None:
                    proc.terminate()
            for proc in group:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        for log in self._logs:
            log.close()


def _die_with_parent(launcher: int) -> None:
    """Runs in each child before exec: on Linux, SIGTERM the child when the launcher (process id
    `launcher`) dies, however it dies (a kill -9 or a test's timeout included), so no orphan keeps
    a port or a core. A launcher that died between the fork and this call sends no signal: the
    child sees it has another parent already, and leaves."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the workers also watch their parent themselves (PARENT_VARIABLE)
    if os.getppid() != launcher:
        os._exit(1)


# The launcher's process id, in each worker's environment: a worker leaves when its parent is
# another process (motostack.worker).
PARENT_VARIABLE = "MOTOSTACK_PARENT_PID"


def _spawn_moto(settings: Settings, log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "motostack.moto_server", str(settings.aws_port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={
            **os.environ,
            **_aws_environment(settings),
            "PYTHONPATH": _python_path(settings),
            "MOTOSTACK_ROUTES": str(settings.state_dir / "routes.json"),
            "MOTOSTACK_RETRY_DELAY": str(settings.retry_delay_s),
            "MOTOSTACK_SPEEDUPS": settings.speedups,
        },
        preexec_fn=functools.partial(_die_with_parent, os.getpid()),
    )


def _wait_for_moto(settings: Settings, proc: subprocess.Popen[bytes], log: IO[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LocalStackError(f"moto's server exited at start; see {log.name}")
        try:
            with socket.create_connection(("127.0.0.1", settings.aws_port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise LocalStackError("moto's server did not start within 60 s")


def _translate_cached(settings: Settings) -> dict[str, Any]:
    """SAM's translation of the template, cached by the template's content (translation takes seconds)."""
    # The template and the translator's interpreter (its installed version) decide the output.
    version = subprocess.run(
        [str(settings.sam_python), "-c", "import samtranslator; print(samtranslator.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    digest = hashlib.sha256(settings.template.read_bytes() + version.encode()).hexdigest()[:24]
    cache = settings.state_dir / "cache" / f"translated-{digest}.json"
    if cache.exists():
        cached: dict[str, Any] = json.loads(cache.read_text())
        return cached
    cfn = translate(
        settings.template, sam_python=settings.sam_python, parameters={"AWS::StackName": STACK_NAME}
    )
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(cfn))
    return cfn


def _python_path(settings: Settings) -> str:
    return os.pathsep.join([*(str(p) for p in settings.python_path), os.environ.get("PYTHONPATH", "")]).strip(
        os.pathsep
    )


def _state(
    settings: Settings,
    deployment: Deployment,
    clients: Clients,
    http_function: str | None,
    routes: list[tuple[str, str, str]],
) -> dict[str, Any]:
    def url_of(arn: str | None) -> str | None:
        if not arn:
            return None
        return str(clients.sqs.get_queue_url(QueueName=arn.split(":")[-1])["QueueUrl"])

    functions = {}
    for logical, fn in deployment.functions.items():
        resource = deployment.template["Resources"][logical]["Properties"]
        functions[logical] = {
            "logical_id": logical,
            "name": fn.name,
            "arn": fn.arn,
            "handler": fn.handler,
            "environment": fn.environment,
            "timeout_s": fn.timeout_s,
            "memory": resource.get("MemorySize", 128),
            "max_retry_attempts": fn.max_retry_attempts,
            "max_event_age_s": fn.max_event_age_s,
            "on_failure_url": url_of(fn.on_failure_arn),
        }
    return {
        "endpoint": settings.endpoint,
        "http_port": settings.http_port,
        "http_function": http_function,
        "http_routes": [[method, path] for method, path, function in routes if function == http_function],
        "functions": functions,
        "worker_environment": {
            **_aws_environment(settings),
            "PYTHONPATH": _python_path(settings),
            **settings.worker_environment,
        },
        "ready_dir": str(settings.state_dir / "ready"),
        "retry_delay_s": settings.retry_delay_s,
        "concurrency": settings.concurrency,
        "latency_since": list(settings.latency_since),
        "verbose": settings.verbose,
    }


def start(settings: Settings) -> LocalStack:
    """Start everything, or raise LocalStackError with what to fix. The caller must `stop()` it.

    Most of the start is imports (moto's backends, each function's libraries) and SAM's translator,
    so they overlap: moto and one process per function start at once, the functions preload their
    libraries and wait for the deployment's details in state.json.
    """
    for name, port, variable in (
        ("HTTP API", settings.http_port, settings.port_variables[0]),
        ("AWS endpoint", settings.aws_port, settings.port_variables[1]),
    ):
        if not _port_free(port):
            raise LocalStackError(
                f"port {port} ({name}) is in use on 127.0.0.1: stop what uses it (is the stack already "
                f"running?) or choose another port with {variable}=<port>"
            )
    if not settings.template.exists():
        raise LocalStackError(f"no template at {settings.template}")
    state_dir = settings.state_dir
    for stale in ("ready", "state.json", "outputs.json", "routes.json", *SAM_ENV_FILES):
        path = state_dir / stale
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    (state_dir / "ready").mkdir(parents=True, exist_ok=True)
    (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    moto_log = (state_dir / "logs" / "moto.log").open("wb")
    os.environ.update(_aws_environment(settings))
    moto = _spawn_moto(settings, moto_log)
    stack = LocalStack(settings, None, moto, _logs=[moto_log])
    try:
        try:
            cfn = _translate_cached(settings)
        except StackError as exc:
            raise LocalStackError(f"template error: {exc}") from None
        functions = sorted(n for n, r in cfn["Resources"].items() if r["Type"] == "AWS::Lambda::Function")
        routes = http_routes(cfn)
        behind_api = sorted({function for _, _, function in routes})
        if len(behind_api) > 1:
            raise LocalStackError(f"the HTTP API routes to more than one function ({', '.join(behind_api)})")
        http_function = behind_api[0] if behind_api else None
        _spawn_workers(stack, functions, http_function)
        _wait_for_moto(settings, moto, moto_log)
        clients = Clients(endpoint_url=settings.endpoint, region=REGION)
        try:
            deployment = deploy(clients, cfn=cfn, stack_name=STACK_NAME, secret_values=settings.secret_values)
        except StackError as exc:
            raise LocalStackError(f"template error: {exc}") from None
        stack.deployment = deployment
        state = _state(settings, deployment, clients, http_function, routes)
        partial = state_dir / "state.json.partial"
        partial.write_text(json.dumps(state, indent=1))
        partial.rename(state_dir / "state.json")  # workers see it whole or not at all
        _wait_for_workers(stack, state)
    except BaseException:
        stack.stop()
        raise
    stack.outputs = _write_outputs(settings, deployment)
    return stack


def _asynchronous_worker(launcher: int) -> None:
    """Runs in each worker that EventBridge invokes (not the one behind the HTTP API): a lower CPU
    priority, so on a small machine the sender's requests and moto are served first. On AWS these
    run on capacity of their own; here they share two cores. The figures are in
    docs/decisions.md, "Local delivery without SQS"."""
    _die_with_parent(launcher)
    with contextlib.suppress(OSError):
        os.nice(5)


def _spawn_workers(stack: LocalStack, functions: list[str], http_function: str | None) -> None:
    settings = stack.settings
    launcher = os.getpid()
    env = {
        **os.environ,
        **_aws_environment(settings),
        "PYTHONPATH": _python_path(settings),
        PARENT_VARIABLE: str(launcher),
    }
    state_file = str(settings.state_dir / "state.json")
    for logical in functions:
        log = (settings.state_dir / "logs" / f"{logical}.log").open("wb")
        stack._logs.append(log)
        stack.workers[logical] = subprocess.Popen(
            [sys.executable, "-m", "motostack.worker", state_file, logical, *settings.preload],
            stdout=log,  # the functions' JSON logs
            stderr=None,  # one line per invocation, and errors, on the console
            env=env,
            preexec_fn=functools.partial(
                _die_with_parent if logical == http_function else _asynchronous_worker, launcher
            ),
        )


def _wait_for_workers(stack: LocalStack, state: dict[str, Any]) -> None:
    deadline = time.monotonic() + 60
    ready_dir = Path(state["ready_dir"])
    while time.monotonic() < deadline:
        dead = [name for name, proc in stack.workers.items() if proc.poll() is not None]
        if dead:
            raise LocalStackError(
                f"{', '.join(dead)} did not start (see the error above, and "
                f"{stack.settings.state_dir / 'logs' / dead[0]}.log)"
            )
        if all((ready_dir / name).exists() for name in stack.workers):
            _write_routes(stack.settings, state)
            return
        time.sleep(0.05)
    raise LocalStackError("the functions did not start within 60 s")


def _write_routes(settings: Settings, state: dict[str, Any]) -> None:
    """Function ARN -> its worker's Invoke API, for moto's Lambda-target delivery (and redrive)."""
    routes = {
        function["arn"]: json.loads((Path(state["ready_dir"]) / logical).read_text())["invoke_url"]
        for logical, function in state["functions"].items()
    }
    partial = settings.state_dir / "routes.json.partial"
    partial.write_text(json.dumps(routes, indent=1))
    partial.rename(settings.state_dir / "routes.json")


def _write_outputs(settings: Settings, deployment: Deployment) -> dict[str, Any]:
    """outputs.json: the stack's outputs (moto's stand-ins for what it skipped left out), its AWS
    endpoint and region, and its HTTP API's URL."""
    outputs: dict[str, Any] = {
        key: value for key, value in deployment.outputs.items() if not str(value).startswith("<")
    }
    outputs.update({"HttpApiUrl": settings.http_url, "AwsEndpointUrl": settings.endpoint, "Region": REGION})
    (settings.state_dir / "outputs.json").write_text(json.dumps(outputs, indent=2) + "\n")
    _write_sam_env_files(settings, deployment)
    return outputs


# Where a Lambda container run by `sam local invoke` finds this machine's loopback: itself, with
# `--docker-network host` on Linux; Docker Desktop's name for the host elsewhere.
SAM_ENV_FILES = {"env.json": "127.0.0.1", "env.docker-desktop.json": "host.docker.internal"}


def sam_env(deployment: Deployment, endpoint: str, extra: dict[str, str]) -> dict[str, dict[str, str]]:
    """`sam local invoke --env-vars` for this stack: each function's environment as deployed here
    (the real resource names, where SAM alone would give logical ids), the AWS endpoint, and
    `extra` (the worker environment's own settings). SAM passes on only the variables the template
    declares for the function, so a template that means to be run this way declares
    AWS_ENDPOINT_URL (empty: botocore then uses each service's own endpoint)."""
    return {
        logical: {
            **{k: str(v) for k, v in function.environment.items()},
            **extra,
            "AWS_ENDPOINT_URL": endpoint,
        }
        for logical, function in sorted(deployment.functions.items())
    }


def _write_sam_env_files(settings: Settings, deployment: Deployment) -> None:
    declared = {name for function in deployment.functions.values() for name in function.environment}
    extra = {k: v for k, v in settings.worker_environment.items() if k in declared}
    for name, host in SAM_ENV_FILES.items():
        environment = sam_env(deployment, f"http://{host}:{settings.aws_port}", extra)
        (settings.state_dir / name).write_text(json.dumps(environment, indent=2) + "\n")
