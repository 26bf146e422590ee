#!/bin/sh
echo "this file has no exec bit, on purpose"
