"""The loop's own code from the model's call to ``optimizer.step()``, read from its bytecode.

The step cache has to show that the calls a step makes outside the model are those of a counted
step. :class:`~.verify.Tracer` shows it by seeing every ``torch`` call as it is made. Where the
loop's code is simple enough, this module shows it from the code itself, when the model returns::

    out = model(x)              # the call the model's forward hook returns into
    loss = loss_fn(out, y)
    loss.backward()
    opt.step()                  # the next event of the step

:func:`read_stretch` simulates the frame's bytecode on symbolic values (which local, global,
constant or attribute each value on the stack is, or which call made it) and accepts the code from
the model's call to the first call of a method named ``step`` (:class:`Stretch`) only when it runs
straight and runs no code but its calls: every instruction between is one that loads or stores a
local or global variable, a constant or an attribute, or builds and makes a call (no jump, loop,
``with``, ``yield``, ``return``, operator, subscript or comparison — each of which may run code of
its own or skip code). Which functions the calls reach, and with what, is read later from the frame
(:mod:`.stretch`); here the stretch is only the symbolic form of its calls.

:func:`exception_outcomes` tells, for an exception raised at an instruction, what the frame's own
exception handlers do with it: ``"out"`` (no handler: it leaves the frame), ``"stopped"`` (it
reaches the handler given as ``stop``: the counter's own ``with`` block), ``"caught"`` (a handler
may swallow it: an ``except`` clause, a ``with`` block whose ``__exit__`` may return true, a
``finally`` that returns). A handler whose every path re-raises (``finally``, ``except: ...;
raise``) passes the exception on.

Python 3.11's instruction set only (:data:`SUPPORTED`); elsewhere nothing is read and the tracer
watches the loop as before.
"""

from __future__ import annotations

import bisect
import dis
import sys

__all__ = ["SUPPORTED", "Stretch", "read_stretch", "instruction_index", "instruction_offset",
           "exception_outcomes",
           "with_handler", "NULL", "OUTPUT", "UNKNOWN"]

SUPPORTED = sys.version_info[:2] == (3, 11)

# symbolic values: ("local", name), ("name", name) (a module-level variable), ("global", name),
# ("const", value), ("attr", base, name), ("method", base, name), ("result", k): call k of the
# stretch, and these three
NULL = ("null",)
OUTPUT = ("output",)   # what the model's call returned
UNKNOWN = ("unknown",)

_NO_EFFECT = frozenset(("NOP", "RESUME", "PRECALL", "EXTENDED_ARG", "CACHE"))
_LOAD_LOCAL = frozenset(("LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_DEREF"))
_MAX_CALLS = 8          # calls in a stretch (the loss, its backward, ...)
_MAX_INSTRUCTIONS = 96


class Stretch:
    """The straight code of one call site of the model, up to the call of ``<optimizer>.step()``.

    ``model``: the symbolic callee of the model's call; ``calls``: the calls in between, each
    ``(callee, args, kwnames)`` (the last ``len(kwnames)`` of ``args`` are passed by keyword),
    each pushing ``("result", k)``; ``optimizer``: the symbolic object whose ``step()`` ends the
    stretch, called without arguments; ``end`` and ``end_last``: the first and last byte of that
    call instruction (a frame suspended in it has ``f_lasti`` between them); ``offsets``: every
    instruction from the model's call to the end call, where an exception may be raised;
    ``optimized``: the code is a function's (its variables are fast locals, not a namespace)."""

    __slots__ = ("code", "model", "calls", "optimizer", "end", "end_last", "offsets", "optimized",
                 "__weakref__")

    def __init__(self, code, model, calls, optimizer, end, end_last, offsets):
        self.code = code
        self.model, self.calls, self.optimizer = model, calls, optimizer
        self.end, self.end_last, self.offsets = end, end_last, offsets
        self.optimized = bool(code.co_flags & _CO_OPTIMIZED)

    def __repr__(self) -> str:
        return (f"Stretch({self.code.co_name}:{self.offsets[0]}..{self.end}, "
                f"{len(self.calls)} call(s))")


_CO_OPTIMIZED = getattr(__import__("inspect"), "CO_OPTIMIZED", 1)

_INSTRUCTIONS: dict = {}   # code -> (instructions, their offsets)
_STRETCHES: dict = {}      # (code, offset) -> Stretch | None
_OUTCOMES: dict = {}       # (code, offset, stop) -> frozenset


_MAX_CACHED = 4096  # entries per cache above, which are emptied when full (code made on the fly)


def _bounded(cache: dict) -> dict:
    if len(cache) >= _MAX_CACHED:
        cache.clear()
    return cache


def _instructions(code) -> tuple:
    hit = _INSTRUCTIONS.get(code)
    if hit is None:
        _bounded(_INSTRUCTIONS)
        ins = list(dis.get_instructions(code))
        hit = _INSTRUCTIONS[code] = (ins, [i.offset for i in ins])
    return hit


def instruction_index(code, lasti: int) -> int:
    """The index of the instruction whose bytes (with its inline caches) hold ``lasti``."""
    return bisect.bisect_right(_instructions(code)[1], lasti) - 1


def instruction_offset(code, lasti: int) -> int:
    """The offset of the instruction whose bytes hold ``lasti`` (a suspended call's ``f_lasti``
    may point into its inline caches)."""
    offsets = _instructions(code)[1]
    return offsets[max(bisect.bisect_right(offsets, lasti) - 1, 0)]


class _State:
    __slots__ = ("stack", "env", "kwnames")

    def __init__(self):
        self.stack: list = []
        self.env: dict = {}
        self.kwnames: tuple = ()

    def pop(self):
        return self.stack.pop() if self.stack else UNKNOWN


def _mentions(value, var) -> bool:
    return value == var or (len(value) > 1 and any(type(v) is tuple and _mentions(v, var)
                                                  for v in value[1:]))


def _step(x, state: _State, stretch: bool, consts: tuple = ()):
    """Simulate instruction ``x``. Returns None (done), a call ``(callee, args, kwnames)`` (the
    caller pushes its result) or False (an instruction this reader does not simulate)."""
    op = x.opname
    stack = state.stack
    if op in _NO_EFFECT:
        return None
    if op == "PUSH_NULL":
        stack.append(NULL)
    elif op in _LOAD_LOCAL:
        stack.append(state.env.get(("local", x.argval), ("local", x.argval)))
    elif op == "LOAD_NAME":
        stack.append(state.env.get(("name", x.argval), ("name", x.argval)))
    elif op == "LOAD_CONST":
        stack.append(("const", x.argval))
    elif op == "LOAD_GLOBAL":
        if stretch and ("name", x.argval) in state.env:
            return False  # a module-level variable assigned in the stretch, read as a global
        if x.arg & 1:
            stack.append(NULL)
        stack.append(("global", x.argval))
    elif op == "LOAD_ATTR":
        stack.append(("attr", state.pop(), x.argval))
    elif op == "LOAD_METHOD":
        base = state.pop()
        stack += [("method", base, x.argval), base]
    elif op in ("STORE_FAST", "STORE_NAME"):
        var = ("local" if op == "STORE_FAST" else "name", x.argval)
        value = state.pop()
        if not stretch:  # a value loaded earlier from this variable is no longer its value
            alias = ("global", x.argval) if op == "STORE_NAME" else var
            stack[:] = [UNKNOWN if _mentions(v, var) or _mentions(v, alias) else v for v in stack]
        else:
            state.env[var] = value
    elif op == "POP_TOP":
        state.pop()
    elif op == "COPY":
        if len(stack) < x.arg:
            return False
        stack.append(stack[-x.arg])
    elif op == "SWAP":
        if len(stack) < x.arg:
            return False
        stack[-1], stack[-x.arg] = stack[-x.arg], stack[-1]
    elif op == "KW_NAMES":
        state.kwnames = tuple(consts[x.arg])  # (dis cannot name it on 3.11)
    elif op == "CALL":
        args = [state.pop() for _ in range(x.arg)][::-1]
        b, a = state.pop(), state.pop()
        kwnames, state.kwnames = state.kwnames, ()
        if a == NULL:
            return b, tuple(args), kwnames
        if a[0] == "method":  # LOAD_METHOD's (method, self): a bound method call
            return a, tuple(args), kwnames
        return False
    else:
        return False
    return None


def read_stretch(code, lasti: int) -> Stretch | None:
    """The :class:`Stretch` from the call instruction at ``lasti`` (the model's call, suspended)
    of ``code``, or None when the code after it is not a straight stretch ending in a call of
    ``<x>.step()`` (see the module doc). Cached per call site."""
    key = (code, lasti)
    if key in _STRETCHES:
        return _STRETCHES[key]
    out = _bounded(_STRETCHES)[key] = _read(code, lasti) if SUPPORTED else None
    return out


def _read(code, lasti: int) -> Stretch | None:
    ins, _ = _instructions(code)
    i0 = instruction_index(code, lasti)
    if i0 < 0 or ins[i0].opname != "CALL":
        return None
    # the stack at the model's call: simulated from where straight code leads to it
    start = i0
    while start > 0 and not ins[start].is_jump_target:
        start -= 1
    state = _State()
    for x in ins[start:i0]:
        call = _step(x, state, False, code.co_consts)
        if call is False:  # not simulated: what it left on the stack is unknown
            state = _State()
        elif call is not None:
            state.stack.append(UNKNOWN)
    model = _step(ins[i0], state, False, code.co_consts)
    if not model:
        return None
    state.env = {}
    state.stack.append(OUTPUT)
    calls = []
    for i in range(i0 + 1, min(len(ins), i0 + _MAX_INSTRUCTIONS)):
        x = ins[i]
        call = _step(x, state, True, code.co_consts)
        if call is False:
            return None
        if call is None:
            continue
        callee, args, kwnames = call
        if callee[0] == "method" and callee[2] == "step":
            if args or kwnames:
                return None
            end_last = ins[i + 1].offset - 1 if i + 1 < len(ins) else x.offset
            return Stretch(code, model[0], tuple(calls), callee[1], x.offset, end_last,
                           tuple(y.offset for y in ins[i0:i + 1]))
        if len(calls) == _MAX_CALLS:
            return None
        state.stack.append(("result", len(calls)))
        calls.append(call)
    return None


# -- exceptions ------------------------------------------------------------------------------------
_TABLES: dict = {}
_RAISES = frozenset(("RERAISE", "RAISE_VARARGS"))
_JUMPS = frozenset(dis.hasjrel) | frozenset(dis.hasjabs)
_ALWAYS_JUMPS = frozenset(("JUMP_FORWARD", "JUMP_BACKWARD", "JUMP_BACKWARD_NO_INTERRUPT",
                           "JUMP_ABSOLUTE", "JUMP", "JUMP_NO_INTERRUPT"))
_LEAVES = frozenset(("RETURN_VALUE", "RETURN_CONST", "YIELD_VALUE", "RETURN_GENERATOR", "SEND"))


def _handler(code, offset: int):
    """The handler target of the exception-table entry covering ``offset`` (None: none)."""
    table = _TABLES.get(code)
    if table is None:
        table = _bounded(_TABLES)[code] = [(e.start, e.end, e.target)
                                 for e in dis.Bytecode(code).exception_entries]
    for start, end, target in table:
        if start <= offset < end:
            return target
    return None


def with_handler(code, lasti: int):
    """When the instruction at ``lasti`` is a ``with`` statement's ``BEFORE_WITH`` (the frame is
    entering a context manager), the target of the handler that calls its ``__exit__`` on an
    exception; else None."""
    if not SUPPORTED:
        return None
    ins, offsets = _instructions(code)
    i = instruction_index(code, lasti)
    if i < 0 or i + 1 >= len(ins) or ins[i].opname != "BEFORE_WITH":
        return None
    target = _handler(code, ins[i + 1].offset)
    if target is None:
        return None
    j = bisect.bisect_left(offsets, target)
    ok = j + 1 < len(ins) and [ins[j].opname, ins[j + 1].opname] == ["PUSH_EXC_INFO", "WITH_EXCEPT_START"]
    return target if ok else None


def exception_outcomes(code, offset: int, stop=None) -> frozenset:
    """What becomes of an exception raised at instruction ``offset`` of ``code``: a set of
    ``"out"``, ``"stopped"`` (it reaches the handler ``stop``), ``"caught"`` (see the module doc).
    Conservative: a handler that may swallow it on some path counts as ``"caught"``."""
    key = (code, offset, stop)
    hit = _OUTCOMES.get(key)
    if hit is None:
        _bounded(_OUTCOMES)[key] = frozenset(("caught",))  # a cycle through handlers: the worst
        target = _handler(code, offset)
        if target is None:
            hit = frozenset(("out",))
        elif target == stop:
            hit = frozenset(("stopped",))
        else:
            hit = _through_handler(code, target, stop)
        _OUTCOMES[key] = hit
    return hit


def _through_handler(code, target: int, stop) -> frozenset:
    """Follow every path of the handler at ``target``: an instruction may raise (its own
    handler decides), a re-raise passes the exception on, a return, a yield or dropping the
    exception (``POP_EXCEPT`` not followed by a re-raise) swallows it."""
    ins, offsets = _instructions(code)
    todo = [bisect.bisect_left(offsets, target)]
    seen: set = set()
    out: set = set()
    while todo:
        i = todo.pop()
        if i in seen:
            continue
        seen.add(i)
        if i >= len(ins):
            out.add("caught")
            continue
        x = ins[i]
        op = x.opname
        if op != "PUSH_EXC_INFO":  # any instruction may raise: its own handler takes over
            out |= exception_outcomes(code, x.offset, stop)
        if op in _RAISES:
            continue
        if op in _LEAVES or (op == "POP_EXCEPT" and (i + 1 >= len(ins) or ins[i + 1].opname not in _RAISES)):
            out.add("caught")
            continue
        if x.opcode in _JUMPS:
            todo.append(bisect.bisect_left(offsets, x.argval))
            if op in _ALWAYS_JUMPS:
                continue
        todo.append(i + 1)
    return frozenset(out)
