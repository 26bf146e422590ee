#!/bin/sh
# Outlives any sane --cgi-timeout; leaves its pid (and its child's) for the test.
sleep 30 &
echo "$$ $!" > "$LSBAWS_TEST_PIDFILE"
wait
