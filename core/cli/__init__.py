"""The ``flow`` command line (click). Subcommands are imported only when invoked, to keep start-up fast."""
