"""Allow `python -m micronas`."""
from micronas.cli import main

main()
