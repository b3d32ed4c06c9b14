"""kscore's version: one place, imported by the package face and by every module that records it."""

__version__ = "0.8.18"
