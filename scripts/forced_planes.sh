#!/bin/sh
# make test's second and third passes: the equivalence suites with every client forced onto gRPC, and again
# onto shared memory (tests/conftest.py checks the plane the calls took). The two passes run at once, each
# with its own servers on ports picked at run time: on this 2-core host they wait on their servers more
# than they compute (211 s for both at once, against 216 + 234 s one after the other). Each pass's output
# is printed whole when both are done; the exit status is non-zero if either failed.
#
# Usage: scripts/forced_planes.sh PYTHON TEST_PATH...
set -u
python=$1
shift
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
for plane in grpc shm; do
  TFA_POLICY_DATA_PLANE=$plane "$python" -m pytest -q -p no:cacheprovider "$@" > "$logs/$plane.log" 2>&1 &
  echo $! > "$logs/$plane.pid"
done
status=0
for plane in grpc shm; do
  wait "$(cat "$logs/$plane.pid")" || status=1
done
for plane in grpc shm; do
  echo "==== the equivalence suites with TFA_POLICY_DATA_PLANE=$plane"
  cat "$logs/$plane.log"
done
exit $status
