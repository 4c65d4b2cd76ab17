"""probepilot's tip-conditioning policies (a built-in plugin)."""
