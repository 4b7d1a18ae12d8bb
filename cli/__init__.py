"""The `dispatcher` command: validate the registry, send events, plan capacity (and, from their own
modules, the local runtime's commands). Each subcommand lives in its own module; see cli/main.py."""
