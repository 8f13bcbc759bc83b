#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, only those missing, so it is cheap to run
# every time: openssl (the Azure Key Vault emulator makes its test CA with it).
set -euo pipefail
needed=()
command -v openssl >/dev/null 2>&1 || needed+=(openssl)
if [ ${#needed[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${needed[@]}"
fi
