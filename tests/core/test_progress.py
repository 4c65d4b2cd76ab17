"""The progress renderer of long work (``probepilot train``): plain lines off a terminal, a
live line on one."""

from __future__ import annotations

import io
import re

from probepilot.progress import ProgressPrinter, Stage, Update, clock, figure


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Utf8(io.StringIO):
    encoding = "utf-8"


def test_log_mode_prints_one_line_per_completed_step() -> None:
    t = Clock()
    out = io.StringIO()
    printer = ProgressPrinter(out, clock=t)
    assert not printer.tty  # a StringIO is not a terminal
    printer(Update("epoch", 0, 3))  # the start: no line
    for epoch in range(3):
        t.now += 1.0
        printer(Update("epoch", epoch, 3, {"loss": "0.5"}, partial=0.5))  # in progress: none
        t.now += 1.0
        printer(Update("epoch", epoch + 1, 3, {"loss": 0.25, "val acc": "90.0%"}))
    printer.close()
    assert out.getvalue().splitlines() == [
        "epoch 1/3: loss 0.2500, val acc 90.0% [0:00:02, ETA 0:00:04]",
        "epoch 2/3: loss 0.2500, val acc 90.0% [0:00:04, ETA 0:00:02]",
        "epoch 3/3: loss 0.2500, val acc 90.0% [0:00:06, done]",
    ]
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_log_mode_thins_long_stages_to_about_twenty_lines() -> None:
    t = Clock()
    out = io.StringIO()
    printer = ProgressPrinter(out, clock=t)
    printer(Update("simulating frames", 0, 1000))
    for i in range(1, 1001):
        t.now += 0.01
        printer(Update("simulating frames", i, 1000))
    lines = out.getvalue().splitlines()
    assert len(lines) == 20
    counts = [int(x.split()[2].split("/")[0]) for x in lines]
    assert counts == list(range(50, 1001, 50))
    assert lines[-1] == "simulating frames 1000/1000 [0:00:10, done]"


def test_each_stage_has_its_own_clock_and_messages_are_plain_lines() -> None:
    t = Clock()
    out = io.StringIO()
    printer = ProgressPrinter(out, clock=t)
    printer.message("starting")
    printer(Update("generation", 0, 1))
    t.now += 30
    printer(Update("generation", 1, 1, {"best": "3.00"}))
    printer(Update("validating candidate", 0, 2))
    t.now += 5
    printer(Update("validating candidate", 1, 2))
    printer.message("done")
    assert out.getvalue().splitlines() == [
        "starting",
        "generation 1/1: best 3.00 [0:00:30, done]",
        "validating candidate 1/2 [0:00:05, ETA 0:00:05]",
        "done",
    ]


def test_terminal_mode_redraws_one_line_per_stage() -> None:
    t = Clock()
    out = Utf8()
    printer = ProgressPrinter(out, tty=True, width=120, clock=t)
    printer(Update("epoch", 0, 2))
    t.now += 1
    printer(Update("epoch", 0, 2, {"loss": "0.700"}, partial=0.5))
    t.now += 0.01  # within the redraw interval, a step in progress: not drawn
    printer(Update("epoch", 0, 2, {"loss": "0.690"}, partial=0.6))
    t.now += 1
    printer(Update("epoch", 1, 2, {"loss": "0.600"}))
    printer.message("a note")
    t.now += 2
    printer(Update("epoch", 2, 2, {"loss": "0.500"}))
    printer(Update("step", 0, 10))
    printer.close()
    text = out.getvalue()
    assert "0.690" not in text
    draws = [d for d in re.split(r"\r\x1b\[2K", text) if d]
    assert draws[0] == "epoch 0/2 " + "░" * 20 + "   0%  [0:00:00, ETA -:--:--]"
    assert (
        draws[1] == "epoch 0/2 " + "█" * 5 + "░" * 15 + "  25%  loss 0.700  [0:00:01, ETA 0:00:03]"
    )
    assert draws[2].startswith("epoch 1/2 " + "█" * 10 + "░" * 10 + "  50%  loss 0.600")
    # A message goes above the live line, which is drawn again under it.
    assert draws[3] == "a note\n" + draws[2]
    # The stage's last state stays on screen: the next stage begins on a new line.
    assert draws[4] == "epoch 2/2 " + "█" * 20 + " 100%  loss 0.500  [0:00:04, done]\n"
    assert draws[5].startswith("step 0/10") and text.endswith("\n")


def test_terminal_messages_after_a_finished_stage_go_below_it() -> None:
    out = Utf8()
    printer = ProgressPrinter(out, tty=True, width=100, clock=Clock())
    printer(Update("candidate", 2, 2))
    printer.message("the winner")
    printer.close()
    assert out.getvalue().endswith("[0:00:00, done]\nthe winner\n")


def test_terminal_line_fits_the_width() -> None:
    out = Utf8()
    printer = ProgressPrinter(out, tty=True, width=70, clock=Clock())
    figures = {f"figure {i}": f"{i}.000" for i in range(10)}
    printer(Update("generation", 3, 20, figures))
    line = out.getvalue().removeprefix("\r\x1b[2K")
    assert len(line) < 70
    assert line.endswith("[0:00:00, ETA -:--:--]")
    assert "…" in line


def test_terminal_without_unicode_draws_ascii() -> None:
    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    printer = ProgressPrinter(out, tty=True, width=80, clock=Clock())
    printer(Update("epoch", 1, 2))  # would raise UnicodeEncodeError with block characters
    out.seek(0)
    assert "#" * 10 + "-" * 10 in out.read()


def test_stage_reports_start_parts_and_steps() -> None:
    seen: list[Update] = []
    stage = Stage(seen.append, "generation", 2, parts=4)
    stage.part()
    stage.part()
    stage.step({"best": 1})
    stage.part()
    assert [(u.done, u.partial, dict(u.figures)) for u in seen] == [
        (0, 0.0, {}),
        (0, 0.25, {}),
        (0, 0.5, {}),
        (1, 0.0, {"best": 1}),
        (1, 0.25, {"best": 1}),
    ]
    assert [u.complete for u in seen] == [False, False, False, True, False]
    Stage(None, "quiet", 3).step()  # no callable: nothing to do, nothing fails


def test_formatting() -> None:
    assert clock(3725.4) == "1:02:05"
    assert clock(float("nan")) == "-:--:--"
    assert figure(3) == "3"
    assert figure(0.123456) == "0.1235"
    assert figure(12345.6) == "12346"
    assert figure(float("nan")) == "-"
    assert figure("93%") == "93%"
    assert Update("x", 3, 4, partial=0.5).fraction == 0.875
