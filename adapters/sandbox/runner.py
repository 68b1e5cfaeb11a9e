"""Runs inside the cage, as `python3 -I -S runner.py RESULT_FD` under an unprivileged user:
reads `{"language", "code", "inputs"}` as JSON on stdin; for python3 defines the code and
calls `main(**inputs)`, for jinja2 renders the code as a template of the inputs (Jinja2's
sandboxed environment, bound read-only at /sandbox/site) answering `{"result": text}`;
writes `{"outputs": ...}` or `{"error", "kind"}` as JSON to RESULT_FD (what the program
prints goes to stdout and stays there).

The cage (no network, no host files, rlimits) is the boundary; the audit hook only turns
the attempts it sees into clear errors before they reach the kernel. Standard library only:
nothing else exists in the cage."""

import json
import os
import sys

_DENIED_EVENTS = ("os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                  "os.forkpty", "subprocess.Popen", "socket.__new__", "socket.connect",
                  "socket.bind", "socket.getaddrinfo", "socket.gethostbyname", "ctypes.dlopen")


def _deny(event: str, args: tuple) -> None:
    if event.startswith(_DENIED_EVENTS):
        raise PermissionError(f"{event} is not allowed in the code sandbox")


def _render(request: dict) -> dict:
    from jinja2.sandbox import SandboxedEnvironment

    template = SandboxedEnvironment().from_string(request["code"])
    return {"outputs": {"result": template.render(**request["inputs"])}}


def _run(request: dict) -> dict:
    if request["language"] == "jinja2":
        return _render(request)
    namespace: dict = {"__name__": "__main__", "__builtins__": __builtins__}
    exec(compile(request["code"], "<code>", "exec"), namespace)
    entry = namespace.get("main")
    if not callable(entry):
        raise NameError("the code defines no function `main`")
    outputs = entry(**request["inputs"])
    if not isinstance(outputs, dict):
        raise TypeError(f"main must return a dict, got {type(outputs).__name__}")
    return {"outputs": outputs}


def _describe(error: BaseException) -> str:
    """`Type: message`, with the line of the program where it was raised."""
    line = None
    frame = error.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code.co_filename == "<code>":
            line = frame.tb_lineno
        frame = frame.tb_next
    text = f"{type(error).__name__}: {error}"
    return text if line is None else f"{text} (line {line})"


def main() -> None:
    result = os.fdopen(int(sys.argv[1]), "w", encoding="utf-8")
    request = json.loads(sys.stdin.buffer.read())
    sys.stdin.close()
    runner = os.getpid()
    if request["language"] == "jinja2":
        sys.path.insert(0, "/sandbox/site")
        import jinja2.sandbox  # noqa: F401  (imported before the hook: it loads freely)
    sys.addaudithook(_deny)
    try:
        payload = json.dumps(_run(request), ensure_ascii=False, allow_nan=False)
    except BaseException as error:  # the program's own error is the node's answer
        if os.getpid() != runner:  # a child that escaped the hook: never a second answer
            os._exit(1)
        kind = "memory" if isinstance(error, MemoryError) else "error"
        payload = json.dumps({"error": _describe(error), "kind": kind})
    result.write(payload)
    result.close()


main()
