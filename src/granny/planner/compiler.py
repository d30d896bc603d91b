"""Check that a registered function's source compiles, in a child process, off the event loop.

Theory of operation: ``compile()`` is C code that holds the GIL from start to end, so a thread would
not help: a 5 MiB source would still freeze the planner's loop for seconds. It also allocates up to
~600x the source's size, and CPython keeps much of that memory after it is freed. So sources are
compiled by one child interpreter (``python -I -S``, no granny import) that the planner talks to over
pipes, one source at a time. The child runs under an address-space limit, is killed after a
timeout, and is replaced after any large source so its memory goes back to the OS. A child that
dies (out of memory, say) costs that one registration a 400, never the planner.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import sys
from dataclasses import dataclass

from ..tunables import COMPILE_MEMORY, COMPILE_TIMEOUT, RECYCLE_ABOVE

# The child: read (name, source) frames from stdin, answer one JSON line per frame on stdout.
_CHILD = r"""
import json, resource, struct, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
inp, out = sys.stdin.buffer, sys.stdout
while True:
    head = inp.read(12)
    if len(head) < 12:
        break
    nlen, slen = struct.unpack("!IQ", head)
    name = inp.read(nlen).decode()
    source = inp.read(slen)
    try:
        # From str, as the granule does: a coding cookie in the text must not change its meaning.
        compile(source.decode("utf-8", "surrogatepass"), name, "exec", dont_inherit=True)
        reply = {}
    except SyntaxError as exc:
        reply = {"kind": type(exc).__name__, "message": str(exc.msg), "lineno": exc.lineno or 0,
                 "offset": exc.offset or 0}
    except MemoryError:
        reply = {"kind": "MemoryError", "message": "compiling it needs more memory than the planner allows"}
    except BaseException as exc:
        reply = {"kind": type(exc).__name__, "message": str(exc)}
    del source
    out.write(json.dumps(reply) + "\n")
    out.flush()
"""


@dataclass(frozen=True)
class CompileProblem:
    kind: str  # SyntaxError, IndentationError, ValueError, RecursionError, MemoryError, TimeoutError...
    message: str
    lineno: int = 0
    offset: int = 0

    def __str__(self) -> str:
        where = f" (line {self.lineno}, column {self.offset})" if self.lineno else ""
        return f"{self.kind}: {self.message}{where}"


class SourceChecker:
    """Compiles sources one at a time in a child process. Use from one event loop."""

    def __init__(self, timeout: float = COMPILE_TIMEOUT, memory: int = COMPILE_MEMORY) -> None:
        self.timeout = timeout
        self.memory = memory
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self.compiled = 0  # statistics: sources checked, children started
        self.children = 0

    async def check(self, name: str, source: str) -> CompileProblem | None:
        """None if ``source`` compiles; otherwise what is wrong with it. Waits for earlier checks."""
        data = source.encode("utf-8", "surrogatepass")
        label = name.encode()
        async with self._lock:
            try:
                proc = await self._child()
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(struct.pack("!IQ", len(label), len(data)) + label)
                proc.stdin.write(data)
                del data
                await asyncio.wait_for(proc.stdin.drain(), self.timeout)
                line = await asyncio.wait_for(proc.stdout.readline(), self.timeout)
            except TimeoutError:
                await self._stop()
                return CompileProblem("TimeoutError", f"compiling took longer than {self.timeout:g} s")
            except (ConnectionError, OSError):
                line = b""
            self.compiled += 1
            if not line:
                await self._stop()
                return CompileProblem("MemoryError", "the compiler process died (out of memory?) on this source")
            if len(source) > RECYCLE_ABOVE:
                await self._stop()
        reply = json.loads(line)
        return CompileProblem(**reply) if reply else None

    async def _child(self) -> asyncio.subprocess.Process:
        if self._proc is None or self._proc.returncode is not None:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-S", "-c", _CHILD, str(self.memory), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, limit=1 << 20)
            self.children += 1
        return self._proc

    async def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def close(self) -> None:
        async with self._lock:
            await self._stop()
