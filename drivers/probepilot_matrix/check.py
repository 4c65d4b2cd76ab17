"""``probepilot matrix-check``: which of the driver's MATRIX names this MATRIX knows.

It only reads: every property of :mod:`probepilot_matrix.names` (with the type the driver
assumes), the views of the configured channels, and ``XYScanner.max`` of the width and height.
Nothing is written, nothing moves, no function that acts is called, so it is safe to run with the
tip in tunnelling. The report (text, or JSON with ``--json``) is what to send back when the
driver is tried on a new MATRIX installation (see the README).
"""

from __future__ import annotations

import ctypes
import platform
import sys
from pathlib import Path
from typing import Any

import click

from probepilot.errors import DriverError, ProbepilotError
from probepilot_matrix import names
from probepilot_matrix.options import MatrixOptions
from probepilot_matrix.transport import MatrixTransport, ValueType


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [float(v) for v in value]
    if isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def _probe(transport: MatrixTransport, options: MatrixOptions) -> list[dict[str, Any]]:
    experiment = options.experiment
    views = [
        f"View.{channel}_{trace}"
        for channel in (options.z_channel, options.current_channel)
        for trace in ("Fw", "Bw")
    ] + [f"View.{options.current_channel}_{sweep}_Spec" for sweep in ("V", "Z")]
    wanted = [(p.name, p.kind) for p in names.PROPERTIES.values()]
    wanted += [(f"{view}.Deliver_Data", ValueType.BOOLEAN) for view in views]
    rows: list[dict[str, Any]] = []
    for name, kind in wanted:
        row: dict[str, Any] = {"name": name, "type": kind.name}
        try:
            row.update(status="ok", value=_plain(transport.get(names.full(experiment, name), kind)))
        except DriverError as exc:
            row.update(status="error", code=getattr(exc, "code", None), error=str(exc))
        rows.append(row)
    for prop in ("Width", "Height"):
        row = {"name": f"XYScanner.max({prop})", "type": "function"}
        try:
            value = transport.call(names.full(experiment, "XYScanner.max"), prop)
            row.update(status="ok", value=_plain(value))
        except DriverError as exc:
            row.update(status="error", code=getattr(exc, "code", None), error=str(exc))
        rows.append(row)
    return rows


def check(options: MatrixOptions, transport: MatrixTransport | None = None) -> dict[str, Any]:
    """The report: the platform, the transport and one row per name."""
    from probepilot_matrix.driver import make_transport

    transport = transport if transport is not None else make_transport(options)
    report: dict[str, Any] = {
        "python": sys.version.split()[0],
        "python_bits": 8 * ctypes.sizeof(ctypes.c_void_p),
        "platform": platform.platform(),
        "transport": transport.description,
        "experiment": options.experiment,
    }
    try:
        transport.open()
    except DriverError as exc:
        report.update(connected=False, error=str(exc), names=[])
        return report
    try:
        report.update(connected=True, names=_probe(transport, options))
    finally:
        transport.close()
    return report


@click.command("matrix-check")
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="probepilot config whose [drivers.matrix] table says how to reach MATRIX.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def matrix_check(config_file: Path | None, as_json: bool) -> None:
    """Read every MATRIX name the driver uses and report which this MATRIX knows (no writes)."""
    import json

    from probepilot.config import load_config
    from probepilot.options import build

    try:
        config, _ = load_config(config_file)
        options = config.options("driver", "matrix")
        if options is None:
            options = build(MatrixOptions, {}, source=config.source, key="drivers.matrix")
        report = check(options)
    except ProbepilotError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report, indent=1))
    else:
        click.echo(
            f"MATRIX check: {report['transport']}, experiment {report['experiment']!r}, "
            f"Python {report['python']} ({report['python_bits']}-bit) on {report['platform']}"
        )
        if not report["connected"]:
            click.echo(f"not connected: {report['error']}")
        for row in report["names"]:
            shown = row["value"] if row["status"] == "ok" else row["error"]
            click.echo(f"{row['status']:5} {row['name']} ({row['type']}): {shown}")
    if not report["connected"] or any(r["status"] != "ok" for r in report["names"]):
        raise SystemExit(1)
