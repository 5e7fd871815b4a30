"""Argument parsing for every sub-command; each calls into the runtime (`pipeline`) or the tools."""
