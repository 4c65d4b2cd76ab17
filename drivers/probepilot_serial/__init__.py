"""Auxiliary instruments on serial lines (pyserial): the attocube ANC300 coarse positioner
controller (``instruments = ["anc300"]``) and the SRS SR570 current preamplifier
(``instruments = ["sr570"]``), each with a simulated twin on a pseudo-terminal
(``port = "sim"``)."""
