#!/usr/bin/env bash
# Install Debian's chromium for the Playwright browser tests (tests/browser/).
#
# `playwright install` downloads its own browser builds, which cannot be fetched
# here; the tests launch /usr/bin/chromium through Playwright's
# `executable_path` instead. Idempotent; prints the browser's version.
#
#   bash .ci/browser.sh
set -euo pipefail
if [ ! -x /usr/bin/chromium ]; then
  echo "browser.sh: installing chromium with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
fi
/usr/bin/chromium --version
