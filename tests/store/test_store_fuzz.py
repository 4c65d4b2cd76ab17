"""Mutated real files either read or fail with a one-line FormatError naming the file: never
another exception, never a hang, never a large allocation (hypothesis, >= 2,000 examples per
format, all in memory).

Mutations: truncation (anywhere, and just around the header's end), byte flips (mostly in the
header), header lines replaced by hostile values (huge, negative, NaN, non-UTF-8, separators),
inserted and deleted runs. The ``.3ds`` seeds are the real grid cut to its first rows (header
edited to match) so that 2,000 examples stay fast; the other formats use whole real files.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_helpers import GRID_FILE, MATRIX_FILE, MATRIX_PARAMETERS, real

from probepilot.errors import FormatError
from probepilot.store import decode_3ds, decode_dat, decode_sxm, read_matrix

EXAMPLES = 2000
#: Seconds one read may take before it counts as a hang (normal reads take milliseconds).
SLOW = 2.0
LABEL = "fuzzed.file"

HOSTILE = [
    b"",
    b"0",
    b"-1",
    b"1",
    b"NaN",
    b"-inf",
    b"1e308",
    b"2147483648",
    b"4294967295 4294967295",
    b"99999999999999999999999",
    b"256 256 256",
    b"100000 100000",
    b"30 x 99999",
    b'Grid dim="99999 x 99999"',
    b"abc",
    b"\xff\xfe\xfd",
    b"\xc3\x28",
    b"\x00\x00\x00\x00",
    b"\t",
    b";;;;",
    b"=",
    b'"',
    b":SCANIT_END:",
    b":HEADER_END:",
    b"[DATA]",
    b"\r\n",
    b"both",
    b"sideways",
    b"FLOAT LSBFIRST",
    b"INT MSBFIRST",
]


@dataclass(frozen=True)
class Seed:
    name: str
    data: bytes
    header_end: int


@st.composite
def mutated(draw: st.DrawFn, seeds: list[Seed]) -> tuple[str, bytes]:
    """A seed's name and its bytes after one to three mutations."""
    seed = draw(st.sampled_from(seeds))
    data = bytearray(seed.data)
    header = max(seed.header_end, 16)
    for _ in range(draw(st.integers(1, 3))):
        if not data:
            break
        anywhere = st.integers(0, len(data) - 1)
        in_header = st.integers(0, min(header, len(data) - 1))
        kind = draw(st.sampled_from(["truncate", "flip", "edit", "insert", "delete"]))
        if kind == "truncate":
            del data[draw(st.one_of(anywhere, st.integers(max(header - 64, 0), header + 64))) :]
        elif kind == "flip":
            data[draw(st.one_of(in_header, in_header, anywhere))] = draw(st.integers(0, 255))
        elif kind == "edit":  # a header line, or just its value, made hostile
            lines = bytes(data[:header]).split(b"\n")
            index = draw(st.integers(0, len(lines) - 1))
            hostile = draw(st.sampled_from(HOSTILE))
            key, sep, _ = lines[index].partition(b"=" if b"=" in lines[index] else b"\t")
            value_only = sep and draw(st.booleans())
            lines[index] = key + sep + hostile if value_only else hostile
            data[:header] = b"\n".join(lines)
        elif kind == "insert":
            at = draw(st.one_of(in_header, anywhere))
            data[at:at] = draw(st.one_of(st.sampled_from(HOSTILE), st.binary(max_size=8)))
        else:
            at = draw(st.one_of(in_header, anywhere))
            del data[at : at + draw(st.integers(1, 64))]
    return seed.name, bytes(data)


def _check(
    read: Callable[[str, bytes], Any],
    example: tuple[str, bytes],
    labels: tuple[str, ...],
    trace: bool,
) -> str:
    """Read a mutated file; "ok" or "error"; fail the test on anything else. With ``trace`` the
    read's peak memory is measured too (tracemalloc slows allocation-heavy parsing ~8x)."""
    seed, data = example
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    try:
        read(seed, data)
        outcome = "ok"
    except FormatError as error:
        text = str(error)
        assert text.startswith(tuple(f"{label}: " for label in labels)), text
        assert "\n" not in text and len(text) < 400, text
        outcome = "error"
    finally:
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] if trace else 0
        tracemalloc.stop()
    assert elapsed < SLOW, f"read took {elapsed:.1f} s"
    # arrays are float64 copies of float32 data: a few times the input, never more
    assert peak < 6 * len(data) + (4 << 20), f"peak {peak} bytes for {len(data)} of input"
    return outcome


def _run(
    read: Callable[[str, bytes], Any],
    seeds: list[Seed],
    labels: tuple[str, ...] = (LABEL,),
    trace_every: int = 1,
) -> dict[str, int]:
    """Fuzz ``read`` with mutations of ``seeds``, tracing memory on every ``trace_every``-th
    example; returns how many examples read and how many failed cleanly."""
    outcomes = {"ok": 0, "error": 0}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(mutated(seeds))
    def fuzz(example: tuple[str, bytes]) -> None:
        trace = sum(outcomes.values()) % trace_every == 0
        outcomes[_check(read, example, labels, trace)] += 1

    fuzz()
    assert sum(outcomes.values()) >= EXAMPLES
    assert outcomes["error"] > EXAMPLES // 4 and outcomes["ok"] > 0  # both paths exercised
    return outcomes


def _seed(name: str, data: bytes, end_marker: bytes) -> Seed:
    return Seed(name, data, data.find(end_marker) + len(end_marker))


def test_sxm_mutations() -> None:
    names = [
        "pySPM/test.sxm",
        "pynxtools-spm/STM_nanonis_generic_4_5.sxm",
        "pynxtools-spm/A151216.123306-02602.sxm",
        "pynxtools-spm/Au_mica_2023_Y_A_diPAMY_195.sxm",
    ]
    seeds = [_seed(n, real(n).read_bytes(), b":SCANIT_END:") for n in names]
    _run(lambda _, data: decode_sxm(data, LABEL), seeds)


def test_dat_mutations() -> None:
    names = [
        "SciFiReaders/Bias-Spectroscopy041.dat",
        "pynxtools-spm/STS_nanonis_generic_4_5.dat",
        "nanonis-xarray/df_v.dat",
        "nanonispy/Bias-Spectroscopy002.dat",
    ]
    seeds = []
    for name in names:
        data = real(name).read_bytes()
        titles = data.find(b"\n", data.find(b"[DATA]")) + 1
        seeds.append(Seed(name, data, data.find(b"\n", titles) + 1))  # through the titles
    _run(lambda _, data: decode_dat(data, LABEL), seeds)


def _grid_rows(data: bytes, rows: int) -> bytes:
    """The real grid cut to its first ``rows`` rows, header edited to say so."""
    end = data.find(b":HEADER_END:\r\n") + len(b":HEADER_END:\r\n")
    per_point = 4 * (10 + 4 * 200)
    header = data[:end].replace(b'Grid dim="30 x 30"', f'Grid dim="30 x {rows}"'.encode())
    return header + data[end : end + 30 * rows * per_point]


def test_3ds_mutations() -> None:
    crlf = _grid_rows(real(GRID_FILE).read_bytes(), 2)
    end = crlf.find(b":HEADER_END:")
    lf = crlf[:end].replace(b"\r\n", b"\n") + b":HEADER_END:\n" + crlf[end + 14 :]
    assert decode_3ds(crlf).shape == decode_3ds(lf).shape == (2, 30)
    seeds = [_seed("grid CRLF", crlf, b":HEADER_END:"), _seed("grid LF", lf, b":HEADER_END:")]
    _run(lambda _, data: decode_3ds(data, LABEL), seeds)


def test_matrix_mutations() -> None:
    """Half the examples mutate the result file (read with the real log), half the log."""
    result = real(MATRIX_FILE).read_bytes()
    log = real(MATRIX_PARAMETERS).read_bytes()
    name = "20201111--4_1.Z_mtrx"
    log = log[: log.find(name.encode("utf-16-le")) + 2 * len(name)]  # up to this file's record
    descriptions = 12 + 8 + 8 + 4 + 8 + 56 + 8  # magic, bricklet header and time, CSED, ATAD head
    seeds = [Seed("result", result, descriptions), Seed("log", log, 4096)]

    def read(seed: str, data: bytes) -> Any:
        if seed == "result":
            return read_matrix(data, parameters=log, name=name)
        return read_matrix(result, parameters=data, name=name)

    _run(read, seeds, labels=(name, "20201111_0001.mtrx"), trace_every=8)
