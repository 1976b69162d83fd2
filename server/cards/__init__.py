"""The strong card tier at the command line."""
