#!/usr/bin/env python3
"""Prints the environment it was given, NAME=value per line, for the tests to
read. Python, not sh: a shell drops variables whose names are not valid shell
names before a command sees them, and the tests must see every one."""
import os
import sys

sys.stdout.write("Content-Type: text/plain\n\n")
for name in sorted(os.environ):
    sys.stdout.write(f"{name}={os.environ[name]}\n")
