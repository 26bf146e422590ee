#!/bin/sh
# Runs long with a child of its own; leaves both pids for the test.
sleep 30 &
echo "$$ $!" > "$LSBAWS_TEST_PIDFILE"
wait
