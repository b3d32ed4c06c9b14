"""Plans: the stages of a job over partitions and how their small results merge.

`plan/difficulty.py` is the partitioned difficulty plan (the math it runs is `core/difficulty.py`);
`plan/sizing.py` sizes the partitions from the memory limit.
"""
