#!/bin/sh
printf 'Location: /x\n\n'
