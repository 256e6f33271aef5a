"""Where built-in tools run (layer 1): one sandbox per session behind a small interface."""
