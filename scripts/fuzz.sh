#!/usr/bin/env bash
# fuzz.sh runs every fuzz target in the module for FUZZTIME each.
#
# Go 1.26's fuzz coordinator can report a bare "context deadline exceeded"
# at the -fuzztime boundary without finding anything (golang/go#75804,
# fixed in Go 1.27). A real finding always writes a reproducer and prints
# "Failing input written to"; so a run that fails with only the deadline
# message is retried once, and anything else fails at once.
set -uo pipefail
FUZZTIME="${FUZZTIME:-20s}"
GO="${GO:-go}"
status=0
targets=0
pkgs=$($GO list ./...) || { echo "FAIL: go list"; exit 1; }
for pkg in $pkgs; do
  list=$($GO test -list '^Fuzz' "$pkg") || { echo "$list"; echo "FAIL: listing the fuzz targets of $pkg"; status=1; continue; }
  for f in $(grep '^Fuzz' <<<"$list" || true); do
    targets=$((targets + 1))
    for attempt in 1 2; do
      echo "fuzz $pkg $f (attempt $attempt)"
      out=$($GO test -run '^$' -fuzz "^$f\$" -fuzztime "$FUZZTIME" "$pkg" 2>&1)
      rc=$?
      echo "$out" | tail -n 4
      if [ $rc -eq 0 ]; then
        break
      fi
      if [ $attempt -eq 1 ] && grep -q 'context deadline exceeded' <<<"$out" &&
        ! grep -qE 'Failing input written|panic:|_test\.go:[0-9]+:' <<<"$out"; then
        echo "fuzz: $f hit the Go 1.26 fuzztime-boundary race (golang/go#75804), no input found; retrying once"
        continue
      fi
      echo "$out"
      echo "FAIL: fuzz target $pkg $f"
      status=1
      break
    done
  done
done
if [ $targets -eq 0 ]; then
  echo "FAIL: no fuzz targets found"
  exit 1
fi
echo "fuzz: $targets targets"
exit $status
