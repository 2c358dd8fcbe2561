# Sourced by scripts/install_*.sh: install Debian packages the tests need, never failing the build.
# apt_install WHAT PACKAGE... — as root with apt-get: install (retrying once after `apt-get update`) and return 0;
# otherwise say why the WHAT tests will be skipped and return 1. The caller defines `say`.

apt_install() {
    local what="$1"
    shift
    if [ "${EUID:-$(id -u)}" != "0" ]; then
        say "not running as root; cannot install $*. The $what tests will be skipped (sudo apt-get install $*)."
        return 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        say "apt-get is not available; cannot install $*. The $what tests will be skipped."
        return 1
    fi
    local install=(apt-get install -y --no-install-recommends "$@")
    say "installing the Debian package(s) $*: ${install[*]}"
    if DEBIAN_FRONTEND=noninteractive "${install[@]}"; then
        return 0
    fi
    say "install failed; running apt-get update and trying again"
    DEBIAN_FRONTEND=noninteractive apt-get update || say "apt-get update failed"
    if DEBIAN_FRONTEND=noninteractive "${install[@]}"; then
        return 0
    fi
    say "could not install $*; the $what tests will be skipped."
    return 1
}
