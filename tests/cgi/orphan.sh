#!/bin/sh
# Leaves an orphan behind, as a CGI program that starts a daemon does: the
# subshell exits at once, so its `sleep` is re-parented to the nearest subreaper.
( sleep 0.3 & )
printf 'Content-Type: text/plain\n\norphaned a sleep\n'
