"""Run the CLI as `python -m ecom`."""

from ecom.cli import main

main()
