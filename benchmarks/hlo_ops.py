"""What each operation of a compiled XLA module does: matrix product or not, and its FLOPs.

    ops = op_kinds(compiled.as_text())      # {instruction name: HloOp(kind, flops, opcode)}

A profiler trace names XLA's operations by their instruction names ('ynn_fusion.3', 'dot.5',
'multiply_tanh_fusion'), so this maps a trace's events to what they compute. Every instruction of
every computation is read from the optimized HLO text; an instruction's kind is that of the work
it does, looking through fusions into the computations they call:

    matmul          a dot or convolution, or a fusion containing one (XLA:CPU's YNNPACK, oneDNN
                    and plain fusions alike), FLOPs = 2 * prod(output dims) * prod(contracted dims)
    scatter, gather, sort, reduce, rng
                    a fusion or instruction containing one (in that order of precedence)
    copy/transpose  only copies, transposes, bitcasts, broadcasts, slices and concatenations
    elementwise     any other fusion or instruction
    control         while, conditional, call: their events span the operations of the
                    computations they run, which the trace also shows, so time is not summed
                    over them

`flops` counts the dots of one execution; an operation inside a loop body runs once per
iteration, which the trace's call count gives.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_MOVES = frozenset({"copy", "transpose", "bitcast", "broadcast", "slice", "concatenate",
                    "dynamic-slice", "dynamic-update-slice", "reshape", "pad", "parameter",
                    "constant", "tuple", "get-tuple-element", "iota", "copy-start", "copy-done",
                    "bitcast-convert"})
_CONTROL = frozenset({"while", "conditional", "call", "async-start", "async-done"})
_PRECEDENCE = ("matmul", "scatter", "gather", "sort", "reduce", "rng", "elementwise",
               "copy/transpose")
_HEADER = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s*\(.*\{\s*$")
_NAME = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*")
_DIMS = re.compile(r"^\w+\[([\d,]*)\]")
_REF = re.compile(r"%([\w.\-]+)")
_SOURCE = re.compile(r'op_name="([^"]*)"')
_CALLED = re.compile(r"\b(?:calls|to_apply|body|condition|branch_computations)="
                     r"\{?([^}\s]+(?:,\s*%[\w.\-]+)*)")


@dataclass(frozen=True)
class HloOp:
    """One instruction: its kind (module doc), the FLOPs of its dots, its HLO opcode and the
    JAX operation it came from (the metadata's op_name, '' where it has none)."""

    kind: str
    flops: float
    opcode: str
    source: str = ""


@dataclass(frozen=True)
class _Instr:
    name: str
    opcode: str
    dims: tuple[int, ...] | None
    operands: tuple[str, ...]
    attrs: str
    called: tuple[str, ...]


def _matching(text: str, start: int) -> int:
    """Index just past the parenthesis that closes the one at text[start]."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] in "([{":
            depth += 1
        elif text[i] in ")]}":
            depth -= 1
            if depth == 0:
                return i + 1
    raise ValueError(f"unbalanced HLO text: {text[start:start + 80]!r}")


def _instruction(line: str) -> _Instr | None:
    """Parse `[ROOT] %name = shape opcode(operands), attrs` (None for other lines)."""
    head = _NAME.match(line)
    if not head:
        return None
    rest = line[head.end():]
    if rest.startswith("("):  # a tuple shape
        end = _matching(rest, 0)
        shape, rest = rest[:end], rest[end:].lstrip()
        dims = None
    else:
        shape, _, rest = rest.partition(" ")
        found = _DIMS.match(shape)
        dims = tuple(int(d) for d in found.group(1).split(",") if d) if found else None
    paren = rest.find("(")
    if paren < 0:
        return None
    opcode = rest[:paren].strip()
    end = _matching(rest, paren)
    operands = tuple(_REF.findall(rest[paren:end]))
    attrs = rest[end:]
    called = tuple(_REF.findall(" ".join(m.group(1) for m in _CALLED.finditer(attrs))))
    return _Instr(head.group(1), opcode, dims, operands, attrs, called)


def parse_computations(hlo_text: str) -> dict[str, list[_Instr]]:
    """{computation name: its instructions in order} of an HLO module's text."""
    comps: dict[str, list[_Instr]] = {}
    current = None
    for line in hlo_text.splitlines():
        header = _HEADER.match(line)
        if header and not line.startswith(" "):
            current = comps.setdefault(header.group(1), [])
            continue
        if line.startswith("}"):
            current = None
            continue
        if current is not None:
            instr = _instruction(line)
            if instr is not None:
                current.append(instr)
    return comps


def _contracting(attrs: str, side: str) -> tuple[int, ...]:
    found = re.search(side + r"_contracting_dims=\{([\d,]*)\}", attrs)
    return tuple(int(d) for d in found.group(1).split(",") if d) if found else ()


def dot_flops(instr: _Instr, shapes: dict[str, tuple[int, ...] | None]) -> float:
    """2 * prod(output dims) * prod(lhs contracted dims) of a dot instruction."""
    lhs = shapes.get(instr.operands[0]) if instr.operands else None
    if instr.dims is None or lhs is None:
        return 0.0
    contracted = math.prod(lhs[d] for d in _contracting(instr.attrs, "lhs"))
    return 2.0 * math.prod(instr.dims) * contracted


def _own_kind(opcode: str) -> str:
    if opcode in ("dot", "convolution"):
        return "matmul"
    if opcode in ("scatter", "gather", "sort"):
        return opcode
    if opcode in ("reduce", "reduce-window", "all-reduce", "reduce-scatter"):
        return "reduce"
    if opcode in ("rng", "rng-bit-generator", "rng-get-and-update-state"):
        return "rng"
    return "copy/transpose" if opcode in _MOVES else "elementwise"


def op_kinds(hlo_text: str) -> dict[str, HloOp]:
    """{instruction name: HloOp} for every instruction of the module (module doc)."""
    comps = parse_computations(hlo_text)
    memo: dict[str, tuple[str, float]] = {}
    shape_tables: dict[int, dict[str, tuple[int, ...] | None]] = {}

    def first(kinds: list[str]) -> str:
        return min(kinds, key=_PRECEDENCE.index) if kinds else "copy/transpose"

    def of_computation(name: str) -> tuple[str, float]:
        if name not in memo:
            memo[name] = ("copy/transpose", 0.0)  # guards against recursion
            kinds, flops = [], 0.0
            for instr in comps.get(name, []):
                kind, f = of_instruction(instr, comps[name])
                if kind != "control":
                    kinds.append(kind)
                    flops += f
            memo[name] = (first(kinds), flops)
        return memo[name]

    def of_instruction(instr: _Instr, siblings: list[_Instr]) -> tuple[str, float]:
        if instr.opcode in _CONTROL:
            return "control", 0.0
        if instr.opcode == "dot":
            if id(siblings) not in shape_tables:
                shape_tables[id(siblings)] = {s.name: s.dims for s in siblings}
            return "matmul", dot_flops(instr, shape_tables[id(siblings)])
        if instr.opcode == "fusion" and instr.called:
            return of_computation(instr.called[0])
        return _own_kind(instr.opcode), 0.0

    out = {}
    for instrs in comps.values():
        for instr in instrs:
            kind, flops = of_instruction(instr, instrs)
            source = _SOURCE.search(instr.attrs)
            out[instr.name] = HloOp(kind, flops, instr.opcode, source.group(1) if source else "")
    return out
