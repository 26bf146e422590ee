#!/bin/sh
# 4 MB of output: a client that resets mid-way makes the child's writes fail.
printf 'Content-Type: application/octet-stream\n\n'
head -c 4000000 /dev/zero
