"""The pure math: frames and arrays in, frames, arrays or mergeable results out.

A new score goes here. Nothing in this layer knows which engine runs it, writes a file, or prints;
the jobs (`kscore.jobs`) read the inputs and call it. `core/difficulty.py` is the difficulty math;
`plan/difficulty.py` runs it over partitions; `jobs/difficulty.py` is the command's job.
"""
