#!/bin/sh
# Sleeps as many seconds as the query string says (`GET /?2`), then answers:
# children that end at chosen moments.
sleep "${QUERY_STRING:-0}"
printf 'Content-Type: text/plain\n\nslept %s\n' "${QUERY_STRING:-0}"
