"""Auxiliary instruments over VISA (pyvisa): the SR830-class lock-in amplifier
(``instruments = ["sr830"]``), with its simulated twin for pyvisa-sim shipped in this package
(``backend = "@sim"``)."""
