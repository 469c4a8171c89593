#!/usr/bin/env bash
# Fails when a symbol listed in capi/abi/symbols.txt is missing from the built
# library (an ABI break), unless SNP_ABI_VERSION was raised past the version
# recorded in abi/version.txt. New symbols are reported so the list can be
# updated.
set -euo pipefail
cd "$(dirname "$0")/.."
lib=${1:-../target/release/libsoftnet_persistence.so}
exported=$(nm -D --defined-only "$lib" | awk '$2=="T" && $3 ~ /^snp_/ {print $3}' | sort)
listed=$(grep -v '^#' abi/symbols.txt | sort)
missing=$(comm -23 <(echo "$listed") <(echo "$exported"))
added=$(comm -13 <(echo "$listed") <(echo "$exported"))
recorded=$(cat abi/version.txt)
current=$(sed -n 's/^#define SNP_ABI_VERSION \([0-9]*\).*/\1/p' include/softnet_persistence.h)
status=0
if [ -n "$missing" ]; then
  if [ "$current" -gt "$recorded" ]; then
    echo "abi: removed symbols with SNP_ABI_VERSION raised to $current (recorded $recorded): update abi/symbols.txt and abi/version.txt"
  else
    echo "abi: these symbols disappeared without an ABI version bump (SNP_ABI_VERSION $current):"
    echo "$missing" | sed 's/^/  /'
  fi
  status=1
fi
if [ -n "$added" ]; then
  echo "abi: new symbols not yet in abi/symbols.txt (add them):"
  echo "$added" | sed 's/^/  /'
  status=1
fi
[ "$status" = 0 ] && echo "abi: $(echo "$exported" | wc -l) symbols, all listed, ABI version $current"
exit $status
