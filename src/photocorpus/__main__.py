"""``python -m photocorpus`` runs the CLI."""

from photocorpus.cli import main

main()
