"""`python -m kscore`."""

from kscore.cli import run

if __name__ == "__main__":
    run()
