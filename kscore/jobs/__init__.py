"""The jobs, one module per command: read the inputs, plan, run, write, summarise.

A new command gets a module here and one function on the package (`kscore/__init__.py`); the
command line (`kscore/cli`) only parses its options and prints what that function returns.
"""
