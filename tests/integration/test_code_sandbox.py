"""Code and template-transform nodes in the real sandbox (bwrap cages, real processes):
programs see their inputs and answer their declared outputs; every escape the issue lists
(host files, a socket, a process, a fork bomb, an endless loop, a 4 GB allocation) fails
the node with a clear error, leaks nothing into outputs, and leaves this process (the
worker) healthy, with nothing of the program left running. Past the interpreters' own
guards (a Python child started without the audit hook), the kernel's limits and the
seccomp filter still hold."""

from __future__ import annotations

import asyncio
import errno
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from adapters.sandbox.base import (
    CodeExecutionError,
    CodeOutputTooLarge,
    CodeTimeout,
    SandboxLimits,
)
from adapters.sandbox.bubblewrap import BubblewrapSandbox
from config import Settings
from tests.code_nodes import SandboxServices, run_node
from workers.workflow.nodes.base import NodeError, NodeResult
from workflow_graph.variables import VariablePool

REPO_FILE = Path(__file__).resolve()  # a file of the repository (this one)
TIMEOUT = 2.0


@pytest.fixture(scope="module")
def sandbox() -> BubblewrapSandbox:
    return BubblewrapSandbox()


@pytest.fixture
def services(sandbox: BubblewrapSandbox) -> SandboxServices:
    return SandboxServices(Settings(CODE_EXECUTION_TIMEOUT=TIMEOUT), sandbox)


def pool() -> VariablePool:
    return VariablePool.for_run(system={"query": "hello"}).with_outputs(
        "start", {"x": 2, "names": ["ada", "grace"], "profile": {"age": 36}})


async def run_code(services: SandboxServices, language: str, code: str,
                   outputs: Mapping[str, Any] | None = None) -> NodeResult:
    data: dict[str, Any] = {
        "code_language": language, "code": code,
        "variables": [{"variable": "x", "value_selector": ["start", "x"]},
                      {"variable": "names", "value_selector": ["start", "names"]},
                      {"variable": "age", "value_selector": ["start", "profile", "age"]},
                      {"variable": "query", "value_selector": ["sys", "query"]},
                      {"variable": "nothing", "value_selector": ["start", "missing"]}]}
    if outputs is not None:
        data["outputs"] = {name: {"type": kind, "children": None}
                           for name, kind in outputs.items()}
    return await run_node(services, "code", data, pool())


async def fails(services: SandboxServices, language: str, code: str) -> NodeError:
    with pytest.raises(NodeError) as caught:
        await run_code(services, language, code, {"leak": "string"})
    return caught.value


def sandbox_pids(sandbox: BubblewrapSandbox) -> list[int]:
    """Processes running under one of this sandbox's user ids."""
    uids = set(sandbox.uid_range)
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            lines = status.read_text().splitlines()
        except OSError:
            continue  # it ended while we looked
        uid_line = next((line for line in lines if line.startswith("Uid:")), "")
        if uid_line and int(uid_line.split()[1]) in uids:
            found.append(int(status.parent.name))
    return found


@pytest.fixture(autouse=True)
async def worker_stays_healthy(sandbox: BubblewrapSandbox,
                               services: SandboxServices) -> AsyncIterator[None]:
    """After each test: nothing of the programs is left, and a plain program still runs."""
    yield
    for _ in range(50):  # the kernel tears a PID namespace down asynchronously
        if not sandbox_pids(sandbox):
            break
        await asyncio.sleep(0.1)
    assert sandbox_pids(sandbox) == []
    result = await run_code(services, "python3", "def main(x, **_):\n    return {'y': x}",
                            {"y": "number"})
    assert result.outputs == {"y": 2}


PYTHON_MAIN = """
def main(x, names, age, query, nothing):
    print('{"outputs": {"total": "forged"}}')  # stdout is not the outputs' channel
    return {"total": x * 10 + age, "greeting": f"{query}, {' & '.join(names)}",
            "upper": [n.upper() for n in names], "missing": nothing,
            "profile": {"age": age, "tags": ["a"]}}
"""
JAVASCRIPT_MAIN = """
function main({x, names, age, query, nothing}) {
  console.log('{"outputs": {"total": "forged"}}');
  return {total: x * 10 + age, greeting: `${query}, ${names.join(' & ')}`,
          upper: names.map(n => n.toUpperCase()), missing: nothing,
          profile: {age, tags: ['a']}};
}
"""
DECLARED = {"total": "number", "greeting": "string", "upper": "array[string]",
            "missing": "string", "profile": "object"}


@pytest.mark.parametrize(("language", "code"), [("python3", PYTHON_MAIN),
                                                ("javascript", JAVASCRIPT_MAIN)])
async def test_main_gets_the_selected_variables_and_answers_its_declared_outputs(
        services: SandboxServices, language: str, code: str) -> None:
    result = await run_code(services, language, code, DECLARED)
    assert result.outputs == {"total": 56, "greeting": "hello, ada & grace",
                              "upper": ["ADA", "GRACE"], "missing": None,
                              "profile": {"age": 36, "tags": ["a"]}}
    assert result.inputs == {"x": 2, "names": ["ada", "grace"], "age": 36, "query": "hello",
                             "nothing": None}


async def test_concurrent_programs_each_get_their_own_answer(
        services: SandboxServices) -> None:
    code = "def main(x, **_):\n    return {'y': x}"
    results = await asyncio.gather(*(run_node(services, "code", {
        "code_language": "python3", "code": code, "outputs": {"y": {"type": "number"}},
        "variables": [{"variable": "x", "value_selector": ["start", "i"]}]},
        VariablePool().with_outputs("start", {"i": i})) for i in range(8)))
    assert [r.outputs["y"] for r in results] == list(range(8))


async def test_the_cage_holds_no_host_files(services: SandboxServices) -> None:
    code = "import os\ndef main(**_):\n    return {'root': sorted(os.listdir('/'))}"
    result = await run_code(services, "python3", code, {"root": "array[string]"})
    assert result.outputs["root"] == ["dev", "lib", "lib64", "sandbox", "tmp", "usr"]
    code = "import os\ndef main(**_):\n    return {'usr': sorted(os.listdir('/usr/share'))}"
    result = await run_code(services, "python3", code, {"usr": "array[string]"})
    assert result.outputs["usr"] == ["zoneinfo"]  # time zones by name, nothing else


@pytest.mark.parametrize("path", ["/etc/passwd", str(REPO_FILE), "/proc/1/environ",
                                  "HOST_TMP"])
@pytest.mark.parametrize(("language", "reader"), [
    ("python3", "def main(**_):\n    return {{'leak': open({path!r}).read()}}"),
    ("javascript", "function main() {{ return {{leak: require('fs').readFileSync({path!r}, "
                   "'utf8')}} }}"),
])
async def test_reading_a_host_file_fails_the_node(services: SandboxServices, language: str,
                                                  reader: str, path: str,
                                                  tmp_path: Path) -> None:
    if path == "HOST_TMP":  # the host's /tmp is not the cage's
        secret = tmp_path / "secret.txt"
        secret.write_text("root: the host's secret")
        path = str(secret)
    error = await fails(services, language, reader.format(path=path))
    assert error.error_type == "CodeExecutionError"
    if language == "python3":
        assert "No such file or directory" in error.message
    else:
        assert "Access to this API has been restricted" in error.message
    assert "root:" not in error.message


@pytest.fixture
async def listener() -> AsyncIterator[tuple[int, list[object]]]:
    """A TCP server on 127.0.0.1 that records every connection it accepts."""
    accepted: list[object] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer.get_extra_info("peername"))
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], accepted
    server.close()
    await server.wait_closed()


async def test_a_socket_to_a_listening_host_port_fails(
        services: SandboxServices, listener: tuple[int, list[object]]) -> None:
    port, accepted = listener
    python = (f"import socket\ndef main(**_):\n    s = socket.socket()\n    "
              f"s.connect(('127.0.0.1', {port}))\n    return {{'leak': 'connected'}}")
    error = await fails(services, "python3", python)
    assert "socket.__new__ is not allowed in the code sandbox" in error.message
    # node has no socket permission: the network namespace is what stops it
    javascript = ("async function main() { const s = require('net').connect(" + str(port)
                  + ", '127.0.0.1'); await new Promise((ok, no) => { s.on('connect', ok); "
                  "s.on('error', no) }); return {leak: 'connected'} }")
    error = await fails(services, "javascript", javascript)
    assert f"ECONNREFUSED 127.0.0.1:{port}" in error.message
    assert accepted == []


@pytest.mark.parametrize(("language", "code", "message"), [
    ("python3", "import os\ndef main(**_):\n    return {'leak': str(os.system('id'))}",
     "os.system is not allowed in the code sandbox"),
    ("python3", "import subprocess\ndef main(**_):\n    subprocess.run(['id'])\n    "
                "return {'leak': 'ran'}", "subprocess.Popen is not allowed in the code sandbox"),
    ("javascript", "function main() { return {leak: require('child_process')"
                   ".execSync('id').toString()} }", "Use --allow-child-process"),
])
async def test_starting_a_process_fails_the_node(services: SandboxServices, language: str,
                                                 code: str, message: str) -> None:
    error = await fails(services, language, code)
    assert message in error.message


async def test_a_fork_bomb_fails_the_node(services: SandboxServices) -> None:
    code = "import os\ndef main(**_):\n    while True:\n        os.fork()"
    error = await fails(services, "python3", code)
    assert "os.fork is not allowed in the code sandbox" in error.message


# Past the audit hook (_posixsubprocess has no audit event): the kernel's process limit
# is what stops it.
FORK_PAST_THE_HOOK = """
import _posixsubprocess, os, sys
def spawn():
    r, w = os.pipe()
    _posixsubprocess.fork_exec(
        [sys.executable, "-I", "-S", "-c", "import time; time.sleep(60)"],
        [sys.executable.encode()], True, (), None, None, -1, -1, -1, -1, -1, -1, r, w,
        True, False, -1, None, None, None, -1, None, False)
def main(**_):
    started = 0
    while True:
        try:
            spawn()
        except OSError as error:
            return {"started": started, "error": str(error)}
        started += 1
"""


async def test_a_fork_bomb_past_the_hook_meets_the_process_limit(
        services: SandboxServices) -> None:
    result = await run_code(services, "python3", FORK_PAST_THE_HOOK,
                            {"started": "number", "error": "string"})
    limit = services.settings.CODE_MAX_PROCESSES
    assert result.outputs == {"started": limit - 1,  # the program itself is one
                              "error": "[Errno 11] Resource temporarily unavailable"}


# Past the audit hook, a Python child with ctypes: the seccomp filter refuses a user
# namespace (which an unprivileged process may otherwise create) and ptrace.
SYSCALLS_PAST_THE_HOOK = '''
import _posixsubprocess, os, sys
CHILD = """
import ctypes, json
libc = ctypes.CDLL(None, use_errno=True)
answers = {}
for name, call in (("unshare_user", lambda: libc.unshare(0x10000000)),
                   ("ptrace_traceme", lambda: libc.ptrace(0, 0, 0, 0)),
                   ("getppid", lambda: min(libc.getppid(), 1))):
    ctypes.set_errno(0)
    answers[name] = [call(), ctypes.get_errno()]
print(json.dumps(answers))
"""
def main(**_):
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = _posixsubprocess.fork_exec(
        [sys.executable, "-I", "-S", "-c", CHILD], [sys.executable.encode()], True, (),
        None, None, -1, -1, -1, out_w, -1, -1, err_r, err_w, True, False, -1, None, None,
        None, -1, None, False)
    os.close(out_w)
    os.close(err_w)
    answers = os.read(out_r, 65536).decode()
    os.waitpid(pid, 0)
    return {"answers": answers}
'''


async def test_the_seccomp_filter_refuses_namespaces_and_ptrace(
        services: SandboxServices) -> None:
    result = await run_code(services, "python3", SYSCALLS_PAST_THE_HOOK, {"answers": "string"})
    assert json.loads(result.outputs["answers"]) == {
        "unshare_user": [-1, errno.EPERM], "ptrace_traceme": [-1, errno.EPERM],
        "getppid": [1, 0]}


@pytest.mark.parametrize(("language", "code"), [
    ("python3", "def main(**_):\n    while True:\n        pass"),
    ("javascript", "function main() { for (;;) {} }"),
])
async def test_an_endless_loop_is_killed_at_the_timeout(services: SandboxServices,
                                                        language: str, code: str) -> None:
    error = await fails(services, language, code)
    assert error.message == f"Code execution timed out after {TIMEOUT:g} seconds"


async def test_a_program_past_its_cpu_time_is_killed(sandbox: BubblewrapSandbox) -> None:
    with pytest.raises(CodeTimeout) as caught:
        await sandbox.run("python3", "def main():\n    while True:\n        pass", {},
                          SandboxLimits(timeout_seconds=30, cpu_limit_seconds=1))
    assert str(caught.value) == "CPU time limit of 1 seconds exceeded"


@pytest.mark.parametrize(("language", "code", "message"), [
    ("python3", "def main(**_):\n    block = bytearray(4 * 1024 ** 3)\n    "
                "return {'leak': 'allocated'}", "MemoryError"),
    ("javascript", "function main() { const b = Buffer.alloc(4 * 1024 ** 3); "
                   "return {leak: 'allocated'} }", "Array buffer allocation failed"),
    ("javascript", "function main() { const all = []; for (;;) all.push(new Array(1e6)"
                   ".fill(1)); }", ""),
])
async def test_a_4_gb_allocation_fails_the_node(sandbox: BubblewrapSandbox, language: str,
                                               code: str, message: str) -> None:
    # the default timeout: V8 collecting garbage near its limit takes seconds on a busy
    # machine, and this is about the memory limit, not the clock
    services = SandboxServices(Settings(), sandbox)
    error = await fails(services, language, code)
    assert error.message.startswith("Memory limit of 256 MB exceeded")
    assert message in error.message


async def test_outputs_are_checked_against_their_declared_types(
        services: SandboxServices) -> None:
    code = "def main(**_):\n    return {'n': 'seven'}"
    with pytest.raises(NodeError) as caught:
        await run_code(services, "python3", code, {"n": "number"})
    assert (caught.value.error_type, caught.value.message) == (
        "OutputValidationError", "Output variable `n` must be a number")
    with pytest.raises(NodeError) as caught:
        await run_code(services, "javascript", "function main() { return {} }",
                       {"n": "number"})
    assert caught.value.message == "Output n is missing."


async def test_a_string_longer_than_code_max_string_length_fails(
        sandbox: BubblewrapSandbox) -> None:
    services = SandboxServices(Settings(CODE_MAX_STRING_LENGTH=100), sandbox)
    ok = await run_code(services, "python3", "def main(**_):\n    return {'s': 'x' * 100}",
                        {"s": "string"})
    assert ok.outputs == {"s": "x" * 100}
    with pytest.raises(NodeError) as caught:
        await run_code(services, "python3", "def main(**_):\n    return {'s': 'x' * 101}",
                       {"s": "string"})
    assert caught.value.message == ("The length of output variable `s` must be less than "
                                    "100 characters")


async def test_outputs_past_the_byte_limit_end_the_program(
        sandbox: BubblewrapSandbox) -> None:
    with pytest.raises(CodeOutputTooLarge):
        await sandbox.run("python3", "def main():\n    return {'s': 'x' * 10 ** 6}", {},
                          SandboxLimits(timeout_seconds=TIMEOUT, max_output_bytes=64 * 1024))


async def test_the_program_errors_are_the_node_errors(services: SandboxServices) -> None:
    error = await fails(services, "python3", "def main(**_):\n    return {'leak': 1 / 0}")
    assert error.message == "ZeroDivisionError: division by zero (line 2)"
    error = await fails(services, "javascript", "// the answer\nfunction main() { null.x }")
    assert error.message == ("TypeError: Cannot read properties of null (reading 'x') "
                             "(line 2)")
    error = await fails(services, "python3", "x = 1")
    assert error.message == "NameError: the code defines no function `main`"


async def test_writing_past_the_file_limit_fails(services: SandboxServices) -> None:
    code = ("def main(**_):\n    with open('/tmp/big', 'wb') as f:\n"
            "        f.write(b'x' * 64 * 1024 * 1024)\n    return {'leak': 'wrote'}")
    error = await fails(services, "python3", code)
    assert "File too large" in error.message


def template_node(template: str) -> dict[str, Any]:
    return {"template": template,
            "variables": [{"variable": "names", "value_selector": ["start", "names"]},
                          {"variable": "query", "value_selector": ["sys", "query"]}]}


async def test_a_template_renders_the_selected_variables(services: SandboxServices) -> None:
    result = await run_node(services, "template-transform", template_node(
        "{{ query }}:{% for n in names %} {{ n | title }}{% endfor %}{{ missing }}"), pool())
    assert result.outputs == {"output": "hello: Ada Grace"}


@pytest.mark.parametrize(("template", "message"), [
    ("{{ query.__class__.__mro__ }}", "SecurityError: access to attribute '__class__'"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
     "Code execution timed out"),
    ("{{ 'x' * 10 ** 10 }}", "Memory limit of 256 MB exceeded"),
])
async def test_a_template_cannot_escape_or_hold_the_worker(
        services: SandboxServices, template: str, message: str) -> None:
    with pytest.raises(NodeError) as caught:
        await run_node(services, "template-transform", template_node(template), pool())
    assert message in caught.value.message


async def test_a_template_longer_than_its_limit_fails(sandbox: BubblewrapSandbox) -> None:
    services = SandboxServices(Settings(TEMPLATE_TRANSFORM_MAX_LENGTH=10), sandbox)
    with pytest.raises(NodeError) as caught:
        await run_node(services, "template-transform", template_node("{{ 'x' * 11 }}"),
                       pool())
    assert caught.value.message == "Output length exceeds 10 characters"


@pytest.mark.skipif(not Path("/usr/bin/node").exists(), reason="Debian's nodejs not installed")
async def test_debians_node_runs_in_the_same_cage() -> None:
    debian = BubblewrapSandbox(node="/usr/bin/node")
    limits = SandboxLimits(timeout_seconds=TIMEOUT)
    outputs = await debian.run("javascript", "function main({a}) { return {a, v: "
                               "process.execPath} }", {"a": 1}, limits)
    assert outputs == {"a": 1, "v": "/sandbox/node"}
    with pytest.raises(CodeExecutionError, match="Access to this API has been restricted"):
        await debian.run("javascript", "function main() { return {p: require('fs')"
                         ".readFileSync('/etc/passwd', 'utf8')} }", {}, limits)
