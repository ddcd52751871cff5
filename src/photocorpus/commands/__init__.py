"""CLI commands, one module per stage; each registers its commands on ``photocorpus.cli_app.app``."""
