#!/usr/bin/env python3
"""Runs a command once and prints its peak resident set size in KiB (the largest of the
process and its waited-for children, from getrusage). Usage: bench/peak_rss.py CMD [ARG...]"""
import resource
import subprocess
import sys

subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
