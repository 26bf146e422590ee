#!/bin/sh
# A header line holding a bare CR: relayed, it would split the response head
# differently for different readers.
printf 'Content-Type: text/plain\rX-Injected: yes\r\n\r\nbody\n'
