"""Where a plan's tasks run. `local`: this machine's cores (loky processes, threads)."""
