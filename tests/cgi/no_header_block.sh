#!/bin/sh
# Output that is not a CGI response: no header field before the empty line.
printf 'this is not a header\n\nbody\n'
