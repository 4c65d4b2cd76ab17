"""``probepilot analyze FILE...`` and ``probepilot replay RUN``: the analyzers on recorded data.

Both take the analyzers (and their options) from a config file, the built-in defaults, or
``--analyzer`` on the command line; frames are handed over in order, each with the ones before
it as history, as a run would (so ``drift`` measures between consecutive files). With
``--json`` each file (``analyze``) or frame (``replay``) is one line holding one JSON object
with every finding, for other tools.

Only click is imported at module level; the readers and analyzers load when a command runs.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import click

from probepilot.errors import ConfigError, ProbepilotError
from probepilot.model import Finding, Frame

#: Earlier frames handed to the analyzers as history.
HISTORY = 16

_ANALYZER_OPTION = click.option(
    "--analyzer",
    "-a",
    "names",
    multiple=True,
    help="Analyzer to run (repeat for several; default: the config's `analyzers`).",
)
_CONFIG_OPTION = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Config file selecting and configuring the analyzers (default: built-in defaults).",
)


class Analysis:
    """The selected analyzers, built once, and the frames seen so far."""

    def __init__(self, names: Sequence[str], config_file: Path | None) -> None:
        from probepilot.config import load_config
        from probepilot.options import build

        config, manager = load_config(config_file)
        self.manager = manager
        chosen = list(names) or list(config.analyzers)
        if not chosen:
            raise ConfigError(
                "no analyzer is selected",
                source=config.source,
                key="analyzers",
                hint="list some in the config or pass --analyzer NAME",
            )
        registry = manager.registry("analyzer")
        self.analyzers: list[Any] = []
        for name in chosen:
            entry = registry.get(name)
            options = config.options("analyzer", name)
            if options is None and entry.options is not None:
                options = build(entry.options, {}, source=config.source, key=f"analyzers.{name}")
            self.analyzers.append(entry.factory(options))
        self.history: list[Frame] = []

    def run(self, frame: Frame) -> list[Finding]:
        findings = [f for a in self.analyzers for f in a.analyze(frame, list(self.history))]
        self.history = [*self.history, frame][-HISTORY:]
        return findings

    def formats(self) -> list[Any]:
        from probepilot.store.formats import installed_formats

        registry = self.manager.registry("format")
        return installed_formats(registry, lambda line: click.echo(line, err=True))


def finding_record(finding: Finding, **extra: object) -> dict[str, object]:
    """A finding as plain JSON-ready data (non-finite numbers as null)."""
    record = dataclasses.asdict(finding)
    record["values"] = {k: _plain(v) for k, v in dict(finding.values).items()}
    record["lines"] = list(finding.lines)
    record["confidence"] = _plain(finding.confidence)
    record.update(extra)
    return record


def _plain(value: object) -> object:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def _frames_of(data: object) -> list[Frame]:
    if isinstance(data, Frame):
        return [data]
    if isinstance(data, list):
        return [item for item in data if isinstance(item, Frame)]
    return []


def _echo_findings(findings: Iterable[dict[str, object]], indent: str = "  ") -> None:
    for record in findings:
        frame = f"[{record['frame']}] " if "frame" in record else ""
        confidence = record["confidence"]
        shown = f"{confidence:.2f}" if isinstance(confidence, float) else "-"
        click.echo(f"{indent}{frame}{record['analyzer']:<12} {shown}  {record['message']}")


def _emit(record: dict[str, object]) -> None:
    click.echo(json.dumps(record, allow_nan=False))


@click.command("analyze")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file, one per line.")
@_ANALYZER_OPTION
@_CONFIG_OPTION
def analyze(
    files: tuple[Path, ...], as_json: bool, names: tuple[str, ...], config_file: Path | None
) -> None:
    """Run the analyzers on image files (.sxm, MATRIX ...), in the order given.

    Each frame is analysed with the frames of the files before it as history, so `drift`
    measures between consecutive scans of the same area. Files that cannot be read are
    reported and skipped (exit status 1).
    """
    from probepilot.store.formats import find_format

    analysis = Analysis(names, config_file)
    formats = analysis.formats()
    failed = False
    for path in files:
        record: dict[str, object] = {"file": str(path)}
        try:
            fmt = find_format(path, formats)
            record["format"] = fmt.name
            frames = _frames_of(fmt.read(path))
        except (ProbepilotError, OSError) as exc:
            failed = True
            record["error"] = str(exc)
            if as_json:
                _emit(record)
            else:
                click.echo(f"{path}: error: {exc}", err=True)
            continue
        findings = [
            finding_record(f, frame=index)
            for index, frame in enumerate(frames, start=1)
            for f in analysis.run(frame)
        ]
        record["frames"] = len(frames)
        record["findings"] = findings
        if not frames:
            record["note"] = "no image in this file (a spectrum or a grid)"
        if as_json:
            _emit(record)
        else:
            kind = f"{len(frames)} frame(s)" if frames else str(record["note"])
            click.echo(f"{path} ({fmt.name}): {kind}")
            _echo_findings(findings if len(frames) > 1 else _without_frame(findings))
    if failed:
        raise SystemExit(1)


def _without_frame(findings: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{k: v for k, v in f.items() if k != "frame"} for f in findings]


@click.command("replay")
@click.argument("run", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per frame, one per line.")
@_ANALYZER_OPTION
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Config file for the analyzers (default: the run's own config.toml).",
)
def replay(run: Path, as_json: bool, names: tuple[str, ...], config_file: Path | None) -> None:
    """Run the analyzers again over the frames a run recorded, in order.

    Uses the analyzers and options of the run's config.toml unless --analyzer or --config
    says otherwise; prints the verdict the run recorded beside the new findings. Nothing in
    the run folder is changed.
    """
    from probepilot import events as ev
    from probepilot.errors import FormatError
    from probepilot.store.formats import find_format
    from probepilot.store.journal import read_journal
    from probepilot.store.runfolder import CONFIG_FILE, JOURNAL_FILE, is_run_folder

    if not is_run_folder(run):
        raise FormatError(f"{run}: not a run folder (it has no {JOURNAL_FILE})")
    if config_file is None and (run / CONFIG_FILE).is_file():
        config_file = run / CONFIG_FILE
    try:
        analysis = Analysis(names, config_file)
    except ConfigError as exc:
        if config_file != run / CONFIG_FILE:
            raise
        click.echo(f"warning: the run's config cannot be used ({exc}); using defaults", err=True)
        analysis = Analysis(names, None)
    formats = analysis.formats()
    events = read_journal(run / JOURNAL_FILE).events
    recorded = {
        str(e.data.get("frame")): str(e.data.get("tip_state"))
        for e in events
        if e.type == ev.FRAME_ANALYSED
    }
    persisted = [e for e in events if e.type == ev.FRAME_PERSISTED]
    if not persisted and not as_json:
        click.echo(f"{run}: no frames recorded")
    for event in persisted:
        name = str(event.data.get("file"))
        record: dict[str, object] = {
            "run": str(run),
            "frame": name,
            "index": event.data.get("index"),
        }
        if name in recorded:
            record["recorded_tip_state"] = recorded[name]
        path = run / name
        try:
            frames = _frames_of(find_format(path, formats).read(path))
        except (ProbepilotError, OSError) as exc:
            record["error"] = str(exc)
            if as_json:
                _emit(record)
            else:
                click.echo(f"{name}: error: {exc}", err=True)
            continue
        record["findings"] = [finding_record(f) for frame in frames for f in analysis.run(frame)]
        if as_json:
            _emit(record)
        else:
            was = f" (recorded: {recorded[name]})" if name in recorded else ""
            click.echo(f"{name}{was}")
            findings = record["findings"]
            assert isinstance(findings, list)
            _echo_findings(findings)
