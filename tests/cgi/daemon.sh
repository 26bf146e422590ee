#!/bin/sh
# Leaves a daemon behind per request, as a CGI program that starts a background
# service does: the subshell exits at once, so its long `sleep` is re-parented
# away from the server (to the nearest subreaper). Its argument `30.TAG` (TAG:
# the digits of QUERY_STRING) lets a test find exactly its own daemons.
case "$QUERY_STRING" in
'' | *[!0-9]*) tag=0 ;;
*) tag=$QUERY_STRING ;;
esac
( sleep "30.$tag" </dev/null >/dev/null 2>&1 & )
printf 'Content-Type: text/plain\n\nleft a daemon behind\n'
