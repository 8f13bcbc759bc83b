#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, only those missing, so it is cheap to run
# every time: openssl (the Azure Key Vault emulator and the PostgreSQL tests make test CAs with
# it), postgresql (the store tests start a temporary cluster from its server binaries under
# /usr/lib/postgresql/*/bin; they never use the cluster the package may create), systemd (only
# for systemd-analyze, which checks deploy/systemd offline; nothing needs systemd running),
# strace (the same test traces the daemon to hold it against the unit's sandbox) and prometheus
# for its promtool (the alerting rules and dashboard tests run `promtool check rules` and
# `promtool test rules`; Debian has no package of promtool alone, and the tests never use the
# Prometheus server the package also installs), softhsm2 (the pkcs11 provider's tests create
# their own token in a temporary directory with softhsm2-util and load its PKCS#11 module) and
# opensc for pkcs11-tool (those tests generate the token's AES key with it, as the README tells
# operators to; opensc-pkcs11 comes with it as a dependency and is not used), and python3, whose
# fcntl locks make a SoftHSM2 token hang for the provider's timeout tests.
set -euo pipefail
needed=()
command -v openssl >/dev/null 2>&1 || needed+=(openssl)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || needed+=(postgresql)
command -v systemd-analyze >/dev/null 2>&1 || needed+=(systemd)
command -v strace >/dev/null 2>&1 || needed+=(strace)
command -v promtool >/dev/null 2>&1 || needed+=(prometheus)
command -v softhsm2-util >/dev/null 2>&1 || needed+=(softhsm2)
command -v pkcs11-tool >/dev/null 2>&1 || needed+=(opensc)
command -v python3 >/dev/null 2>&1 || needed+=(python3)
if [ ${#needed[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${needed[@]}"
fi
