#!/bin/sh
# Writes 20 MB (more than lsbaws buffers) before reading its request body: a
# server that feeds the body and reads the output in the wrong order deadlocks.
printf 'Content-Type: application/octet-stream\n\n'
head -c 20000000 /dev/zero
cat > /dev/null
