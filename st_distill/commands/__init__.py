"""One module per ``st-distill`` sub-command: ``HELP``, ``add_arguments(parser)``, ``run(args)``."""
