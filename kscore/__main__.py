"""`python -m kscore`."""

from kscore.cli import main

if __name__ == "__main__":
    main()
