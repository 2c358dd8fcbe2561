#!/usr/bin/env bash
# Make sure a Chromium (Debian packages `chromium` and `chromium-driver`) is available for the
# browser tests of the web UI (`dojo app`), which drive it with Playwright for Python
# (tests/browser.py). Playwright's own browser download is not used: it cannot be reached from
# every machine, and Debian's build works with Playwright's executable_path.
# Idempotent and never fails the build: it always exits 0. Without Chromium those tests skip.
# $DOJO_CHROMIUM, when set, names the browser to use instead of /usr/bin/chromium.

# shellcheck source=scripts/apt_install.sh
source "$(dirname "$0")/apt_install.sh"

say() { echo "install_browser: $*"; }

CHROMIUM="${DOJO_CHROMIUM:-/usr/bin/chromium}"

report_found() {
    say "Chromium found at $CHROMIUM: $("$CHROMIUM" --version 2>/dev/null || echo 'version unknown')"
}

japanese_font() {
    # The Japanese pages' screenshots need a font with Japanese glyphs (IPA Gothic, ~12 MB); a missing font
    # only makes boxes in screenshots, so failing to install it is reported and ignored.
    if command -v fc-list >/dev/null 2>&1 && [ -n "$(fc-list :lang=ja 2>/dev/null)" ]; then
        return 0
    fi
    if [ "${EUID:-$(id -u)}" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends fonts-ipafont-gothic >/dev/null \
            && say "installed fonts-ipafont-gothic (Japanese glyphs for the screenshots)" \
            || say "could not install fonts-ipafont-gothic; Japanese text shows as boxes in screenshots"
    fi
}

main() {
    if [ -x "$CHROMIUM" ]; then
        report_found
        japanese_font
        return 0
    fi
    if [ -n "${DOJO_CHROMIUM:-}" ]; then
        say "DOJO_CHROMIUM=$DOJO_CHROMIUM is not an executable file; the browser tests will be skipped."
        return 0
    fi

    apt_install browser chromium chromium-driver || return 0

    if [ -x "$CHROMIUM" ]; then
        report_found
        japanese_font
    else
        say "chromium was installed but $CHROMIUM was not found; the browser tests will be skipped."
    fi
    return 0
}

main "$@"
exit 0
