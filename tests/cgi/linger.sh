#!/bin/sh
# Answers, closes its stdout, then lingers: the answer must not wait for it, and
# it must still be killed at --cgi-timeout. Leaves its pid for the test.
echo "$$" > "$LSBAWS_TEST_PIDFILE"
printf 'Content-Type: text/plain\n\ndone early\n'
exec >&-
sleep 30
