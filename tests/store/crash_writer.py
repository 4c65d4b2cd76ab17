"""A run that never ends, for the crash test, which kills it with SIGKILL at a random moment.

``python crash_writer.py ROOT RUN_ID``: creates ``ROOT/RUN_ID``, prints ``ready``, then writes
frames (each one's content follows from its index, see :func:`frame_for`), journals a state
change and a verdict per frame and a spectrum every third frame, as fast as it can.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from store_helpers import synthetic_frame, synthetic_spectrum

from probepilot.events import FRAME_ANALYSED, POLICY_DECIDED, STATE_CHANGED
from probepilot.model import Finding, Frame, Pulse, Spectrum
from probepilot.store.runfolder import RunFolder


def frame_for(index: int) -> Frame:
    """Frame number ``index`` of a crash-test run (a partial one now and then)."""
    return synthetic_frame(
        lines=48, pixels=64, seed=index, lines_done=30 if index % 5 == 0 else None
    )


def spectrum_for(index: int) -> Spectrum:
    """Spectrum number ``index`` of a crash-test run."""
    return synthetic_spectrum(points=128, seed=index)


def main() -> None:
    root, run_id = sys.argv[1], sys.argv[2]
    run = RunFolder.create(root, None, run_id=run_id, flush_interval=0.1)
    print("ready", flush=True)
    index = 0
    while True:
        index += 1
        run.emit(STATE_CHANGED, {"state": "scan"})
        persisted = run.add_frame(frame_for(index))
        run.emit(STATE_CHANGED, {"state": "analyse"})
        verdict = Finding("toy", "tip_state", 0.9, {"state": "good"})
        run.emit(
            FRAME_ANALYSED,
            {"frame": persisted.data["file"], "tip_state": "good", "findings": [verdict]},
        )
        run.emit(POLICY_DECIDED, {"action": Pulse(voltage=2.5, width=0.2)})
        if index % 3 == 0:
            run.add_spectrum(spectrum_for(index // 3))  # spectrum number index // 3


if __name__ == "__main__":
    main()
