#!/bin/sh
# Starts a daemon and answers: the subshell exits at once, so its `sleep`
# outlives the request, re-parented to the nearest subreaper. Like a real
# daemon it lets go of stdout, or the response would never end.
( sleep 30 </dev/null >/dev/null 2>&1 & )
printf 'Content-Type: text/plain\n\nstarted a daemon\n'
