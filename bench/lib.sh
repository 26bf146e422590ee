# Shared helpers of the benchmark scripts (sourced, not run).
# Every process a script starts is stopped by pid in its EXIT trap.

# Installs Debian packages that are missing (benchmarks only; tests never need them).
bench_need() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# Starts nginx from bench/nginx.conf.in on 127.0.0.1:$1 under a temp prefix;
# sets NGINX_PID. Needs the nginx package (bench_need nginx).
bench_start_nginx() {
  local port=$1 here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  NGINX_PREFIX=$(mktemp -d)
  sed -e "s#@PREFIX@#$NGINX_PREFIX#g" -e "s#@PORT@#$port#g" "$here/nginx.conf.in" >"$NGINX_PREFIX/nginx.conf"
  nginx -p "$NGINX_PREFIX" -c "$NGINX_PREFIX/nginx.conf" &
  NGINX_PID=$!
  bench_wait_port "$port"
}

# Waits (at most 10 s) until 127.0.0.1:$1 accepts a connection.
bench_wait_port() {
  local i
  for i in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1" >&2
  return 1
}

# Median of the numbers on stdin, one per line.
bench_median() {
  sort -g | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'
}

# Builds bench/timeit.c (the timer: "wall cpu" in microseconds of one run of a
# command) as $1/timeit.
bench_timeit() {
  cc -O2 -o "$1/timeit" "$(dirname "${BASH_SOURCE[0]}")/timeit.c"
}
